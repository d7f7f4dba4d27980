"""The S3 driver's one error table: S3 error codes, botocore and aiohttp exceptions → aiostore
errors, with the passive signal each failure proves; and which failures are worth a retry.

The table is an :class:`~aiostore.sdk.ErrorMap` (the most specific class of the exception wins),
one per driver, seen from reads (a failure revokes READ_ACCESS) and from writes (WRITE_ACCESS).
The ``operation`` given to it is the S3 operation (``PutObject``), with the number of attempts
made when there was more than one (see :func:`operation`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import botocore.exceptions as bce

from ...errors import (
    BackendUnavailable,
    ChecksumMismatch,
    Duplicate,
    InvalidMetadata,
    NotFound,
    OperationTimeout,
    StorageFull,
    StorageWriteDenied,
    StoreError,
)
from ...sdk import Capability, ErrorContext, ErrorMap, map_os_error

__all__ = ["ErrorTables", "client_error", "describe", "operation", "transient", "unsent"]

_THROTTLED: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
    }
)
_TRANSIENT: Final = _THROTTLED | {
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
}
_NOT_FOUND: Final = frozenset({"NoSuchKey", "NotFound", "404"})
_PRECONDITION: Final = frozenset({"PreconditionFailed", "412"})
_CREDENTIALS: Final = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "RequestTimeTooSkewed",
    }
)
_DENIED: Final = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_FULL: Final = frozenset(
    {"QuotaExceeded", "UserQuotaExceeded", "InsufficientStorage", "XMinioStorageFull"}
)
_TOO_LARGE: Final = frozenset({"EntityTooLarge"})
_SEP: Final = "\x00"


def operation(op: str, attempts: int = 1) -> str:
    """The ``operation`` to give the table: the S3 operation and the attempts it took."""
    return f"{op}{_SEP}{attempts}" if attempts > 1 else op


def _said(ctx: ErrorContext) -> tuple[str, str]:
    op, _, attempts = ctx.operation.partition(_SEP)
    return op, f" after {attempts} attempts" if attempts else ""


def client_error(exc: bce.ClientError) -> tuple[str, int, str]:
    """(code, HTTP status, message) of a ClientError."""
    response: Mapping[str, Any] = exc.response or {}
    error = response.get("Error") or {}
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    code = str(error.get("Code") or status or "Unknown")
    return code, status, str(error.get("Message") or "")


def error_code(exc: BaseException | None) -> str | None:
    """The S3 error code behind ``exc`` (a ClientError, or a StoreError chained to one)."""
    if isinstance(exc, StoreError):
        exc = exc.__cause__
    return client_error(exc)[0] if isinstance(exc, bce.ClientError) else None


def transient(exc: BaseException) -> bool:
    """Throttling, 5xx, connection failures and timeouts: worth another attempt."""
    if isinstance(exc, bce.ClientError):
        code, status, _ = client_error(exc)
        return status >= 500 or status == 429 or code in _TRANSIENT
    if isinstance(exc, bce.SSLError):
        return False
    return isinstance(
        exc,
        bce.ConnectionError
        | bce.HTTPClientError
        | bce.IncompleteReadError
        | aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | TimeoutError,
    )


def unsent(exc: BaseException) -> bool:
    """Transient, and proven to have had no effect: the server answered with an error, or no
    connection was made. For steps that must not run twice (CreateMultipartUpload)."""
    if isinstance(exc, bce.ClientError):
        return transient(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):  # the lean transport
        return not isinstance(exc, aiohttp.ClientSSLError)
    return isinstance(exc, bce.ConnectionError) and not isinstance(exc, bce.SSLError)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cause(exc: BaseException) -> str:
    """The low-level reason of a connection failure, without botocore's repetition of the URL:
    "Connection refused", "ServerDisconnectedError: Server disconnected"."""
    inner = getattr(exc, "kwargs", {}).get("error") if isinstance(exc, bce.BotoCoreError) else None
    if isinstance(inner, BaseException):
        os_error = getattr(inner, "os_error", None)
        if isinstance(os_error, OSError) and os_error.errno:
            return os.strerror(os_error.errno)
        return describe(inner)
    return describe(exc)


Factory = Callable[[BaseException, ErrorContext], StoreError]


def _lost(ctx: ErrorContext) -> Capability:
    """What a failure that proves the backend unusable revokes."""
    return Capability.WRITE_ACCESS if ctx.write else Capability.READ_ACCESS


@dataclass(frozen=True, slots=True)
class ErrorTables:
    """The driver's table (what its messages name) for reads and for writes: S3 operation
    names (``PutObject``) do not tell the table which side a call is on."""

    read: ErrorMap
    write: ErrorMap

    @classmethod
    def build(
        cls,
        *,
        scrub: Callable[[str], str],
        endpoint: str,
        bucket: str,
        connect_timeout: float,
        read_timeout: float,
    ) -> ErrorTables:
        table = ErrorMap(_Site(scrub, endpoint, bucket, connect_timeout, read_timeout).table())
        return cls(table.with_write(False), table.with_write(True))

    def __call__(self, write: bool) -> ErrorMap:
        return self.write if write else self.read


@dataclass(frozen=True, slots=True)
class _Site:
    scrub: Callable[[str], str]
    endpoint: str
    bucket: str
    connect_timeout: float
    read_timeout: float

    def table(self) -> dict[type[BaseException], Factory]:
        scrub = self.scrub

        def answered(exc: BaseException, ctx: ErrorContext) -> StoreError:
            assert isinstance(exc, bce.ClientError)
            key = ctx.key
            op, tried = _said(ctx)
            code, status, message = client_error(exc)
            lost = _lost(ctx)
            said = scrub(f"S3 {op} answered {status} {code}{tried}: {message}".rstrip(": "))
            if code == "NoSuchBucket" or (op == "HeadBucket" and status == 404):
                return BackendUnavailable(
                    f"S3 {op}: the bucket {self.bucket!r} does not exist", key=key, revokes=lost
                )
            if code == "NoSuchUpload":
                return StoreError(f"{said} (the multipart upload was aborted elsewhere)", key=key)
            if code in _NOT_FOUND or (status == 404 and not code.startswith("NoSuch")):
                return NotFound("no such object", key=key)
            if code in _PRECONDITION or status == 412:
                if ctx.write:
                    return Duplicate("an object with this key exists", key=key)
                return ChecksumMismatch("the object changed while it was being read", key=key)
            if code in _TOO_LARGE:
                # One object too large for the backend: not a sign that the store is full.
                return StorageFull(said, key=key, revokes=Capability.NONE)
            if code in _FULL or status == 507:
                return StorageFull(said, key=key)
            if code == "MetadataTooLarge":
                return InvalidMetadata(said, key=key)
            if code in _CREDENTIALS:
                if ctx.write:
                    return StorageWriteDenied(said, key=key)
                return BackendUnavailable(said, key=key, revokes=lost)
            if code in _DENIED or status == 403:
                if ctx.write:
                    return StorageWriteDenied(said, key=key)
                # A denied read may concern one object only: no passive revoke.
                return BackendUnavailable(said, key=key)
            if transient(exc):
                return BackendUnavailable(said, key=key, revokes=lost)
            return StoreError(said, key=key)

        def connect_timeout(exc: BaseException, ctx: ErrorContext) -> StoreError:
            op, tried = _said(ctx)
            return BackendUnavailable(
                f"S3 {op}: cannot connect to {self.endpoint}{tried}: timed out after"
                f" {self.connect_timeout:g} s",
                key=ctx.key,
                revokes=_lost(ctx),
            )

        def read_timeout(exc: BaseException, ctx: ErrorContext) -> StoreError:
            op, tried = _said(ctx)
            return OperationTimeout(
                f"S3 {op}: no answer within read_timeout={self.read_timeout:g} s{tried}",
                key=ctx.key,
                revokes=_lost(ctx),
            )

        def cannot_connect(exc: BaseException, ctx: ErrorContext) -> StoreError:
            op, tried = _said(ctx)
            return BackendUnavailable(
                f"S3 {op}: cannot connect to {self.endpoint}{tried}: {scrub(_cause(exc))}",
                key=ctx.key,
                revokes=_lost(ctx),
            )

        def broken(exc: BaseException, ctx: ErrorContext) -> StoreError:
            op, tried = _said(ctx)
            return BackendUnavailable(
                f"S3 {op}: connection failed{tried}: {scrub(_cause(exc))}",
                key=ctx.key,
                revokes=_lost(ctx),
            )

        def checksum(exc: BaseException, ctx: ErrorContext) -> StoreError:
            op, _ = _said(ctx)
            return ChecksumMismatch(f"S3 {op}: {scrub(str(exc))}", key=ctx.key)

        def no_credentials(exc: BaseException, ctx: ErrorContext) -> StoreError:
            op, _ = _said(ctx)
            return BackendUnavailable(
                f"S3 {op}: no usable AWS credentials: {scrub(str(exc))}",
                key=ctx.key,
                revokes=_lost(ctx),
            )

        def os_error(exc: BaseException, ctx: ErrorContext) -> StoreError:
            assert isinstance(exc, OSError)
            op, _ = _said(ctx)
            return map_os_error(exc, key=ctx.key, write=ctx.write, what=f"S3 {op}")

        def other(exc: BaseException, ctx: ErrorContext) -> StoreError:
            op, _ = _said(ctx)
            return StoreError(f"S3 {op} failed: {scrub(describe(exc))}", key=ctx.key)

        table: dict[type[BaseException], Factory] = {
            bce.ClientError: answered,
            bce.ConnectTimeoutError: connect_timeout,
            bce.ReadTimeoutError: read_timeout,
            aiohttp.ServerTimeoutError: read_timeout,
            TimeoutError: read_timeout,
            bce.ConnectionError: cannot_connect,
            aiohttp.ClientConnectorError: cannot_connect,
            bce.HTTPClientError: broken,
            bce.IncompleteReadError: broken,
            aiohttp.ClientError: broken,
            bce.FlexibleChecksumError: checksum,
            bce.NoCredentialsError: no_credentials,
            bce.PartialCredentialsError: no_credentials,
            bce.CredentialRetrievalError: no_credentials,
            bce.BotoCoreError: other,
            OSError: os_error,
        }
        connecting = getattr(aiohttp, "ConnectionTimeoutError", None)  # aiohttp ≥ 3.10
        if connecting is not None:
            table[connecting] = connect_timeout
        return table
