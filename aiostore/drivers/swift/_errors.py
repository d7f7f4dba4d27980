"""The swift driver's one error table: HTTP statuses and transport failures → aiostore errors."""

from __future__ import annotations

import aiohttp

from ...errors import (
    BackendUnavailable,
    ChecksumMismatch,
    Duplicate,
    NotFound,
    StorageFull,
    StorageWriteDenied,
    StoreError,
)
from ...sdk import Capability, ErrorContext, ErrorMap, transport_error_map

__all__ = ["AuthError", "SwiftStatus", "errors", "retryable"]


class AuthError(Exception):
    """The identity service refused the credentials or answered something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SwiftStatus(Exception):
    """An answer the driver did not expect: ``status`` and what was asked (no token, no query)."""

    def __init__(self, status: int, what: str, reason: str = "") -> None:
        super().__init__(f"{what}: HTTP {status} {reason}".rstrip())
        self.status = status
        self.what = what


def _lost(ctx: ErrorContext) -> Capability:
    """What a backend fault during this operation proves lost."""
    return Capability.WRITE_ACCESS if ctx.write else Capability.READ_ACCESS


def _from_status(exc: BaseException, ctx: ErrorContext) -> StoreError:
    assert isinstance(exc, SwiftStatus)
    status, text = exc.status, str(exc)
    if status == 404:
        return NotFound("no such object", key=ctx.key)
    if status == 412 and ctx.operation == "put":
        return Duplicate("an object already exists under this key", key=ctx.key)
    if status == 412 and ctx.operation == "read":  # a resumption pinned to another version
        return ChecksumMismatch("the object changed while it was being read", key=ctx.key)
    if status in (401, 403):
        if ctx.write:
            return StorageWriteDenied(f"access denied ({text})", key=ctx.key)
        return BackendUnavailable(f"access denied ({text})", key=ctx.key)
    if status in (413, 507) or (status == 403 and "quota" in text.lower()):
        return StorageFull(text, key=ctx.key)
    if status >= 500:
        return BackendUnavailable(text, key=ctx.key, revokes=_lost(ctx))
    return BackendUnavailable(text, key=ctx.key)


def _from_auth(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return BackendUnavailable(f"authentication failed: {exc}", key=ctx.key)


#: The driver's one table, applied at its I/O edge. Timeouts and transport failures revoke what
#: the operation needed, like every HTTP driver's.
errors = transport_error_map("Swift") | ErrorMap({SwiftStatus: _from_status, AuthError: _from_auth})


def retryable(exc: BaseException) -> bool:
    """A reset, a timeout, a 5xx or 429: worth another attempt."""
    if isinstance(exc, SwiftStatus):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, aiohttp.ClientError | OSError)
