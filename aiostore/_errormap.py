"""Error mapping at a driver's I/O edge: one table per driver, applied in one place.

Like httpcore's ``map_exceptions``: a driver states, once, which backend exception becomes which
:mod:`aiostore.errors` error, and wraps its I/O in ``with errors.mapping(...)``. The store layer
then only adds context (store, key) and reacts to passive signals.

A table maps an exception class to a factory ``(exc, context) -> StoreError``; the most specific
class in the exception's MRO wins. :class:`~aiostore.errors.StoreError` and cancellation always
pass through unchanged; an exception no entry matches passes through too (the store layer turns
what is left into ``BackendUnavailable``).

:func:`transport_error_map` is the table every HTTP driver on aiohttp starts from: timeouts,
refused connections and broken connections, each revoking what the operation needed.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from .capabilities.flags import Capability
from .errors import (
    BackendUnavailable,
    NotFound,
    OperationTimeout,
    StorageFull,
    StorageWriteDenied,
    StoreError,
)

__all__ = [
    "ErrorContext",
    "ErrorMap",
    "map_os_error",
    "os_error_map",
    "transport_error_map",
]


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
    ``ErrorContext.write`` says whether the operation writes: ``put``, ``write`` and ``delete``
    do, unless :meth:`with_write` fixed it for every call.
    """

    __slots__ = ("_catch", "_table", "_write")

    def __init__(self, table: Mapping[type[BaseException], ErrorFactory]) -> None:
        self._table = dict(table)
        self._catch = tuple(self._table)
        self._write: bool | None = None

    def __or__(self, other: ErrorMap) -> ErrorMap:
        """A table with ``other``'s entries added (they win on the same class)."""
        return ErrorMap({**self._table, **other._table}).with_write(self._write)

    def __getitem__(self, cls: type[BaseException]) -> ErrorFactory:
        """The factory that handles ``cls`` (the entry of the most specific class of its MRO),
        to give another class the same treatment or to call it from another factory."""
        for base in cls.__mro__:
            factory = self._table.get(base)
            if factory is not None:
                return factory
        raise KeyError(cls)

    def with_write(self, write: bool | None) -> ErrorMap:
        """The same table whose contexts say ``write`` for every operation (``None``: decided by
        the operation's name). For drivers whose operation names are the backend's own
        (``PutObject``), which the table cannot tell apart."""
        table = ErrorMap(self._table)
        table._write = write
        return table

    def translate(
        self, exc: BaseException, *, key: str | None = None, operation: str = ""
    ) -> BaseException:
        """The aiostore error for ``exc`` (with ``__cause__`` set), or ``exc`` itself when no
        entry matches or it already is a StoreError."""
        if isinstance(exc, StoreError) or not isinstance(exc, self._catch):
            return exc
        write = operation in _WRITE_OPERATIONS if self._write is None else self._write
        err = self[type(exc)](exc, ErrorContext(key, operation, write))
        err.__cause__ = exc
        return err.with_context(key=key)

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


# -- the aiohttp transport table, used by the HTTP drivers ----------------------------------------


def _describe(exc: BaseException) -> str:
    """``"ClassName: first line of the message"`` (the class name alone when there is none)."""
    text = str(exc)
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _lost(ctx: ErrorContext) -> Capability:
    return Capability.WRITE_ACCESS if ctx.write else Capability.READ_ACCESS


def transport_error_map(
    service: str,
    endpoint: str | None = None,
    *,
    scrub: Callable[[str], str] = str,
    describe: Callable[[BaseException], str] = _describe,
) -> ErrorMap:
    """The table of an HTTP driver's transport failures (aiohttp and the OS), to extend with
    ``|`` (the backend's answers, its SDK's exceptions):

    - ``TimeoutError``, ``aiohttp.ServerTimeoutError`` → ``OperationTimeout``
      (``"GCS put: timed out"``);
    - ``aiohttp.ClientConnectorError`` → ``BackendUnavailable``
      (``"GCS put: cannot reach <endpoint>: ..."``);
    - any other ``aiohttp.ClientError`` or ``OSError`` → ``BackendUnavailable``
      (``"GCS put: connection failed: ..."``).

    Each revokes what the operation needed: WRITE_ACCESS for a write, READ_ACCESS otherwise.
    ``describe`` words the exception; ``scrub`` removes credentials from every message.
    Reuse an entry for another class with ``table[aiohttp.ClientConnectorError]``.
    """
    import aiohttp  # here, so that importing aiostore does not import aiohttp

    where = endpoint or "the service"

    def said(ctx: ErrorContext, what: str) -> str:
        return scrub(f"{service} {ctx.operation or 'request'}: {what}")

    def timeout(exc: BaseException, ctx: ErrorContext) -> StoreError:
        detail = f" ({describe(exc)})" if str(exc) else ""
        return OperationTimeout(said(ctx, f"timed out{detail}"), revokes=_lost(ctx))

    def connect(exc: BaseException, ctx: ErrorContext) -> StoreError:
        return BackendUnavailable(
            said(ctx, f"cannot reach {where}: {describe(exc)}"), revokes=_lost(ctx)
        )

    def broken(exc: BaseException, ctx: ErrorContext) -> StoreError:
        return BackendUnavailable(
            said(ctx, f"connection failed: {describe(exc)}"), revokes=_lost(ctx)
        )

    return ErrorMap(
        {
            TimeoutError: timeout,
            aiohttp.ServerTimeoutError: timeout,
            aiohttp.ClientConnectorError: connect,
            aiohttp.ClientError: broken,
            OSError: broken,
        }
    )
