"""Error mapping at a driver's I/O edge: one table per driver, applied in one place.

Like httpcore's ``map_exceptions``: a driver states, once, which backend exception becomes which
:mod:`aiostore.errors` error, and wraps its I/O in ``with errors.mapping(...)``. The store layer
then only adds context (store, key) and reacts to passive signals.

A table maps an exception class to a factory ``(exc, context) -> StoreError``; the most specific
class in the exception's MRO wins. :class:`~aiostore.errors.StoreError` and cancellation always
pass through unchanged; an exception no entry matches passes through too (the store layer turns
what is left into ``BackendUnavailable``).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from .errors import (
    BackendUnavailable,
    NotFound,
    OperationTimeout,
    StorageFull,
    StorageWriteDenied,
    StoreError,
)

__all__ = ["ErrorContext", "ErrorMap", "map_os_error", "os_error_map"]


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What the factories of an :class:`ErrorMap` know about the failed call."""

    key: str | None = None
    operation: str = ""
    write: bool = False


#: ``(exc, context) -> StoreError``
ErrorFactory = Callable[[BaseException, ErrorContext], StoreError]

_WRITE_OPERATIONS: Final = frozenset({"put", "write", "delete"})


class ErrorMap:
    """A driver's table from backend exceptions to aiostore errors.

    ``with table.mapping(key=key, operation="put"):`` raises the mapped error ``from`` the
    original. :meth:`translate` does the same for an exception already caught.
    """

    __slots__ = ("_catch", "_table")

    def __init__(self, table: Mapping[type[BaseException], ErrorFactory]) -> None:
        self._table = dict(table)
        self._catch = tuple(self._table)

    def __or__(self, other: ErrorMap) -> ErrorMap:
        """A table with ``other``'s entries added (they win on the same class)."""
        return ErrorMap({**self._table, **other._table})

    def translate(
        self, exc: BaseException, *, key: str | None = None, operation: str = ""
    ) -> BaseException:
        """The aiostore error for ``exc`` (with ``__cause__`` set), or ``exc`` itself when no
        entry matches or it already is a StoreError."""
        if isinstance(exc, StoreError) or not isinstance(exc, self._catch):
            return exc
        for cls in type(exc).__mro__:
            factory = self._table.get(cls)
            if factory is not None:
                ctx = ErrorContext(key, operation, operation in _WRITE_OPERATIONS)
                err = factory(exc, ctx)
                err.__cause__ = exc
                return err.with_context(key=key)
        return exc  # pragma: no cover - isinstance() above found a class of the MRO

    def mapping(self, *, key: str | None = None, operation: str = "") -> _Mapping:
        """A context manager translating what escapes it (sync and async code alike)."""
        return _Mapping(self, key, operation)


class _Mapping:
    __slots__ = ("_key", "_map", "_operation")

    def __init__(self, table: ErrorMap, key: str | None, operation: str) -> None:
        self._map = table
        self._key = key
        self._operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        err = self._map.translate(exc, key=self._key, operation=self._operation)
        if err is not exc:
            raise err

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


# -- the OSError table, used by the file driver, the core's stream and fault injection ----------

_FULL: Final = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED: Final = {errno.EACCES, errno.EPERM, errno.EROFS}
_NOT_FOUND: Final = {errno.ENOENT, errno.ENOTDIR}


def map_os_error(
    exc: OSError, *, key: str | None = None, write: bool = False, what: str = ""
) -> StoreError:
    """Translate an OSError into the contract's error (chain it with ``raise ... from exc``).

    Write-side faults (full, denied) revoke WRITE_ACCESS; a denied *read* is BackendUnavailable.
    """
    code = exc.errno
    text = exc.strerror or str(exc)
    doing = f"{what}: " if what else ""
    if code in _FULL:
        return StorageFull(f"{doing}{text} (errno {errno.errorcode.get(code, code)})", key=key)
    if code in _DENIED:
        name = errno.errorcode.get(code, str(code))
        if write:
            return StorageWriteDenied(f"{doing}{text} (errno {name})", key=key)
        return BackendUnavailable(f"{doing}{text} (errno {name})", key=key)
    if code in _NOT_FOUND:
        return NotFound(f"{doing}no such object", key=key)
    if isinstance(exc, TimeoutError):
        return OperationTimeout(f"{doing}timed out", key=key)
    return BackendUnavailable(f"{doing}{text}", key=key)


def _from_os_error(exc: BaseException, ctx: ErrorContext) -> StoreError:
    assert isinstance(exc, OSError)
    return map_os_error(exc, key=ctx.key, write=ctx.write, what=ctx.operation)


def _from_timeout(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return OperationTimeout(f"{ctx.operation or 'the operation'} timed out", key=ctx.key)


#: OSError (and TimeoutError, an OSError) → the contract's errors. Drivers extend it with ``|``.
os_error_map: Final = ErrorMap({OSError: _from_os_error, TimeoutError: _from_timeout})
