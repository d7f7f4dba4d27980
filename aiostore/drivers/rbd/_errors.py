"""The rbd driver's one error table, built from the bindings once they are loaded."""

from __future__ import annotations

from types import ModuleType

from ...errors import (
    BackendUnavailable,
    NotFound,
    OperationTimeout,
    StorageFull,
    StorageWriteDenied,
    StoreError,
)
from ...sdk import Capability, ErrorContext, ErrorMap, os_error_map

__all__ = ["build"]


def _lost(ctx: ErrorContext) -> Capability:
    return Capability.WRITE_ACCESS if ctx.write else Capability.READ_ACCESS


def _not_found(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return NotFound("no such object", key=ctx.key)


def _full(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return StorageFull(f"the pool is full or over quota ({exc})", key=ctx.key)


def _denied(exc: BaseException, ctx: ErrorContext) -> StoreError:
    if ctx.write:
        return StorageWriteDenied(f"permission denied ({exc})", key=ctx.key)
    return BackendUnavailable(f"permission denied ({exc})", key=ctx.key)


def _timeout(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return OperationTimeout(f"{ctx.operation or 'the call'} timed out", key=ctx.key,
                            revokes=_lost(ctx))  # fmt: skip


def _busy(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return BackendUnavailable(f"the image is in use ({exc})", key=ctx.key)


def _shutdown(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return BackendUnavailable(
        f"the cluster connection is gone ({type(exc).__name__})",
        key=ctx.key,
        revokes=_lost(ctx),
        session_broken=True,
    )


def _other(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return BackendUnavailable(
        f"{ctx.operation or 'call'}: {type(exc).__name__}: {exc}", key=ctx.key, revokes=_lost(ctx)
    )


def build(rados: ModuleType, rbd: ModuleType) -> ErrorMap:
    """librados/librbd exceptions → aiostore errors (OSError and TimeoutError as the SDK maps
    them)."""
    return os_error_map | ErrorMap(
        {
            rbd.ImageNotFound: _not_found,
            rados.ObjectNotFound: _not_found,
            rbd.NoSpace: _full,
            rbd.DiskQuotaExceeded: _full,
            rados.NoSpace: _full,
            rbd.PermissionError: _denied,
            rados.PermissionError: _denied,
            rbd.Timeout: _timeout,
            rados.TimedOut: _timeout,
            rbd.ImageBusy: _busy,
            rados.ObjectBusy: _busy,
            rbd.ConnectionShutdown: _shutdown,
            rados.ConnectionShutdown: _shutdown,
            rados.NotConnected: _shutdown,
            rados.IoctxStateError: _shutdown,
            rbd.Error: _other,
            rados.Error: _other,
        }
    )
