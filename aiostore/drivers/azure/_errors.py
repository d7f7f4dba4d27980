"""The azure driver's error table and retry predicate: azure-core exceptions → aiostore errors.

Azure answers a create-only write that finds the blob with 409 ``BlobAlreadyExists`` (a plain
Put Blob with ``If-None-Match: *``) or 412 ``ConditionNotMet`` (a commit with that condition):
both are ``Duplicate``. A 412 on a read means the blob changed under a resumed read (If-Match on
the first response's ETag). Connection failures, timeouts and 5xx answers prove the service
unreachable and revoke what the operation needed (WRITE_ACCESS for writes, READ_ACCESS for
reads); a missing container does too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import aiohttp
from azure.core import exceptions as az

from ...errors import (
    BackendUnavailable,
    ChecksumMismatch,
    Duplicate,
    InvalidMetadata,
    NotFound,
    StorageFull,
    StorageWriteDenied,
    StoreError,
)
from ...sdk import Capability, ErrorContext, ErrorMap, transport_error_map

__all__ = ["build_error_map", "describe", "retryable", "status_of"]

_CONTAINER_GONE: Final = frozenset(
    {"ContainerNotFound", "ContainerBeingDeleted", "ContainerDisabled"}
)
_EXISTS: Final = frozenset({"BlobAlreadyExists", "ConditionNotMet", "TargetConditionNotMet"})
_FULL: Final = frozenset({"AccountLimitExceeded", "InsufficientAccountPermissions_Quota"})
_TOO_LARGE: Final = frozenset({"RequestBodyTooLarge", "BlockCountExceedsLimit"})
_METADATA: Final = frozenset({"InvalidMetadata", "MetadataTooLarge"})


def status_of(exc: BaseException) -> int:
    """The HTTP status of an azure-core response error (0 when there was no response)."""
    return int(getattr(exc, "status_code", None) or 0)


def code_of(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def describe(exc: BaseException) -> str:
    """A one-line description of ``exc`` (the service's first line, no XML body)."""
    if isinstance(exc, az.HttpResponseError):
        code = code_of(exc)
        message = (getattr(exc, "reason", None) or "").strip()
        return f"HTTP {status_of(exc)} {code or message}".rstrip()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retryable(exc: BaseException) -> bool:
    """Connection failures, timeouts, throttling and 5xx: worth another attempt."""
    if isinstance(exc, az.HttpResponseError) and not isinstance(exc, az.DecodeError):
        # No status: the SDK gave up re-reading a broken body (it wraps that failure).
        status = status_of(exc)
        return status == 0 or status >= 500 or status in (408, 429)
    return isinstance(
        exc,
        az.ServiceRequestError
        | az.ServiceResponseError
        | az.IncompleteReadError
        | aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | TimeoutError,
    )


def build_error_map(scrub: Callable[[str], str], endpoint: str) -> ErrorMap:
    """The driver's table; ``scrub`` removes credentials from any text it shows."""
    transport = transport_error_map("Azure", endpoint, scrub=scrub, describe=describe)
    timeout, broken = transport[TimeoutError], transport[aiohttp.ClientError]

    def lost(ctx: ErrorContext) -> Capability:
        return Capability.WRITE_ACCESS if ctx.write else Capability.READ_ACCESS

    def said(exc: BaseException, ctx: ErrorContext) -> str:
        return scrub(f"Azure {ctx.operation or 'request'}: {describe(exc)}")

    def not_found(exc: BaseException, ctx: ErrorContext) -> StoreError:
        if code_of(exc) in _CONTAINER_GONE:
            return BackendUnavailable(
                f"{said(exc, ctx)}: the container does not exist", revokes=lost(ctx)
            )
        if ctx.operation == "resume":
            return ChecksumMismatch("the blob was replaced while it was being read")
        return NotFound("no such object")

    def exists(exc: BaseException, ctx: ErrorContext) -> StoreError:
        if ctx.write:
            return Duplicate("an object with this key exists")
        return StoreError(said(exc, ctx))

    def modified(exc: BaseException, ctx: ErrorContext) -> StoreError:
        if ctx.write:
            return Duplicate("an object with this key exists")
        return ChecksumMismatch("the blob changed while it was being read")

    def denied(exc: BaseException, ctx: ErrorContext) -> StoreError:
        if ctx.write:
            return StorageWriteDenied(said(exc, ctx))
        return BackendUnavailable(said(exc, ctx), revokes=lost(ctx))

    def response(exc: BaseException, ctx: ErrorContext) -> StoreError:
        status, code = status_of(exc), code_of(exc)
        if status == 0:
            return broken(exc, ctx)
        if status == 412:
            return modified(exc, ctx)
        if status == 409 and code in _EXISTS:
            return exists(exc, ctx)
        if code in _METADATA:
            return InvalidMetadata(said(exc, ctx))
        if code in _TOO_LARGE or status == 413:
            # One object too large: not a sign that the account is full.
            return StorageFull(said(exc, ctx), revokes=Capability.NONE)
        if code in _FULL:
            return StorageFull(said(exc, ctx))
        if status == 403:
            return denied(exc, ctx)
        if status >= 500 or status in (408, 429):
            return BackendUnavailable(said(exc, ctx), revokes=lost(ctx))
        return StoreError(said(exc, ctx))

    return transport | ErrorMap(
        {
            az.ResourceNotFoundError: not_found,
            az.ResourceExistsError: response,
            az.ResourceModifiedError: modified,
            az.ClientAuthenticationError: denied,
            az.HttpResponseError: response,
            # azure-core wraps aiohttp's failures in its own classes.
            az.IncompleteReadError: broken,
            az.ServiceRequestTimeoutError: timeout,
            az.ServiceResponseTimeoutError: timeout,
            az.ServiceRequestError: transport[aiohttp.ClientConnectorError],
            az.ServiceResponseError: broken,
        }
    )
