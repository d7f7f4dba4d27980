"""The gcs driver's error table and retry predicate: aiohttp exceptions → aiostore errors.

gcloud-aio-storage raises :class:`aiohttp.ClientResponseError` for every answer ≥ 400 (with
Google's JSON error text as the message); the driver's own requests do the same. 412 on a write
is a create-only put that found the object (``ifGenerationMatch=0``), on a read an object
replaced under a pinned read. Connection failures, timeouts, 429 and 5xx revoke what the
operation needed (WRITE_ACCESS for writes, READ_ACCESS for reads); so does a missing bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import aiohttp

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

__all__ = ["build_error_map", "describe", "retryable"]

_BUCKET_LEVEL: Final = frozenset({"get bucket", "list", "put", "start upload"})


def describe(exc: BaseException) -> str:
    """One line about ``exc`` (status and Google's message, without the JSON around it)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        message = (exc.message or "").split(":", 1)[0].strip()
        return f"HTTP {exc.status} {message}".rstrip()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retryable(exc: BaseException) -> bool:
    """Connection failures, timeouts, throttling and 5xx: worth another attempt."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status >= 500 or exc.status in (408, 429)
    return isinstance(
        exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError
    )


def build_error_map(scrub: Callable[[str], str], endpoint: str) -> ErrorMap:
    """The driver's table; ``scrub`` removes credentials from any text it shows."""

    def lost(ctx: ErrorContext) -> Capability:
        return Capability.WRITE_ACCESS if ctx.write else Capability.READ_ACCESS

    def said(exc: BaseException, ctx: ErrorContext) -> str:
        return scrub(f"GCS {ctx.operation or 'request'}: {describe(exc)}")

    def response(exc: BaseException, ctx: ErrorContext) -> StoreError:
        assert isinstance(exc, aiohttp.ClientResponseError)
        status = exc.status
        if status == 404:
            # Only a missing bucket makes a bucket request, a listing or an upload 404.
            if ctx.operation in _BUCKET_LEVEL or "bucket" in (exc.message or "").lower():
                return BackendUnavailable(
                    f"{said(exc, ctx)}: the bucket does not exist", revokes=lost(ctx)
                )
            if ctx.operation == "resume":
                return ChecksumMismatch("the object was replaced while it was being read")
            return NotFound("no such object")
        if status == 412:
            if ctx.write:
                return Duplicate("an object with this key exists")
            return ChecksumMismatch("the object changed while it was being read")
        if status in (401, 403):
            if ctx.write:
                return StorageWriteDenied(said(exc, ctx))
            return BackendUnavailable(said(exc, ctx), revokes=lost(ctx))
        if status == 413:
            return StorageFull(said(exc, ctx), revokes=Capability.NONE)
        if status == 400 and "metadata" in (exc.message or "").lower():
            return InvalidMetadata(said(exc, ctx))
        if status >= 500 or status in (408, 429):
            return BackendUnavailable(said(exc, ctx), revokes=lost(ctx))
        return StoreError(said(exc, ctx))

    return transport_error_map("GCS", endpoint, scrub=scrub, describe=describe) | ErrorMap(
        {aiohttp.ClientResponseError: response}
    )
