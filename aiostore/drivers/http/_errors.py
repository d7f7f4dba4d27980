"""The driver's one error table: aiohttp exceptions and HTTP answers → aiostore errors.

Requests raise what went wrong as it is — an aiohttp exception, a ``TimeoutError``, or one of the
small exceptions below for answers the driver refuses — and each public operation translates
it once, at its edge, with :data:`ERRORS`. :func:`retryable` tells the retry policy which of
them are worth another request.
"""

from __future__ import annotations

from typing import Final

import aiohttp
from yarl import URL

from ...errors import BackendUnavailable, ChecksumMismatch, NotFound, OperationTimeout, StoreError
from ...sdk import Capability, ErrorContext, ErrorMap

__all__ = ["ERRORS", "BadStatus", "BodyEnded", "ObjectChanged", "describe", "retryable", "shown"]

_GONE: Final = frozenset({404, 410})


class BadStatus(Exception):
    """An HTTP answer that is not the object: a 4xx/5xx status."""

    def __init__(self, status: int, reason: str | None) -> None:
        super().__init__(f"HTTP {status} {reason or ''}".rstrip())
        self.status = status


class BodyEnded(Exception):
    """The body ended before the bytes its headers promised."""

    def __init__(self, got: int, size: int) -> None:
        super().__init__(f"the response ended after {got} of {size} bytes")


class ObjectChanged(Exception):
    """A resumed read found another version of the object than the one it started on."""


def retryable(exc: BaseException) -> bool:
    """Worth another request: a 5xx/429 answer, a dropped connection, a body cut short.
    Not a timeout (the caller's deadline), not a TLS failure, not an answer that broke the
    protocol."""
    if isinstance(exc, BadStatus):
        return exc.status >= 500 or exc.status == 429
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError | aiohttp.ClientSSLError):
        return False  # a certificate that failed verification will fail again
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | BodyEnded)


def shown(url: URL) -> str:
    """A URL for messages: never a query (it may carry a token)."""
    return str(url.with_query(None).with_fragment(None))


def describe(exc: BaseException) -> str:
    """A failure in words, for messages and retry logs (no header value ever appears)."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS failed ({exc}); verify_tls = false accepts any certificate"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return str(exc) or type(exc).__name__


def _doing(ctx: ErrorContext) -> str:
    return f"{ctx.operation}: " if ctx.operation else ""


def _status(exc: BaseException, ctx: ErrorContext) -> StoreError:
    assert isinstance(exc, BadStatus)
    status = exc.status
    if status in _GONE:
        return NotFound(f"no such object ({exc})", key=ctx.key)
    if status >= 500:
        # Proves a backend fault (a passive signal); 429 is the server pacing us.
        return BackendUnavailable(
            f"{_doing(ctx)}{exc}", key=ctx.key, revokes=Capability.READ_ACCESS
        )
    if status == 429:
        return BackendUnavailable(f"{_doing(ctx)}{exc}", key=ctx.key)
    if status in (401, 403):
        return StoreError(
            f"the server refused access ({exc}); check the store's headers", key=ctx.key
        )
    return StoreError(f"unexpected answer from the server ({exc})", key=ctx.key)


def _timeout(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return OperationTimeout(f"{_doing(ctx)}timed out", key=ctx.key)


def _broke_off(exc: BaseException, ctx: ErrorContext) -> StoreError:
    # The body broke off mid-way: the server may be fine; the probe will tell.
    return BackendUnavailable(f"{_doing(ctx)}the response body broke off ({exc})", key=ctx.key)


def _ended(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return BackendUnavailable(str(exc), key=ctx.key)


def _invalid(exc: BaseException, ctx: ErrorContext) -> StoreError:
    assert isinstance(exc, aiohttp.ClientResponseError)
    return BackendUnavailable(f"{_doing(ctx)}invalid HTTP response ({exc.message})", key=ctx.key)


def _connection(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return BackendUnavailable(
        f"{_doing(ctx)}{describe(exc)}", key=ctx.key, revokes=Capability.READ_ACCESS
    )


def _changed(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return ChecksumMismatch(f"the object changed while it was read: {exc}", key=ctx.key)


def _other(exc: BaseException, ctx: ErrorContext) -> StoreError:
    return StoreError(f"{_doing(ctx)}{type(exc).__name__}: {exc}", key=ctx.key)


#: The most specific class of an exception's MRO wins: aiohttp's timeouts are also connection
#: errors, and its connection errors are also OSErrors.
ERRORS: Final = ErrorMap(
    {
        BadStatus: _status,
        BodyEnded: _ended,
        ObjectChanged: _changed,
        TimeoutError: _timeout,
        aiohttp.ServerTimeoutError: _timeout,
        aiohttp.ClientPayloadError: _broke_off,
        aiohttp.ClientResponseError: _invalid,
        aiohttp.ClientConnectionError: _connection,
        OSError: _connection,
        aiohttp.ClientError: _other,
    }
)
