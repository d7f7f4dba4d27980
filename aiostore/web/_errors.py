"""Errors to HTTP: one table, JSON bodies ``{"error": class name, "message": str(exc)}``."""

from __future__ import annotations

import json
import math
from typing import Any, Final

from aiohttp import web

from .._store import Store
from ..capabilities.flags import Capability
from ..errors import (
    BackendUnavailable,
    CapabilityError,
    ChecksumMismatch,
    Duplicate,
    InvalidKey,
    InvalidMetadata,
    InvalidRange,
    KeyConflict,
    MaxRedirectsExceeded,
    NotFound,
    OperationTimeout,
    SizeMismatch,
    StorageFull,
    StorageWriteDenied,
    StoreError,
    StoreRandomGetNotSupported,
    UnknownHashingAlgo,
    UnknownScheme,
    UnknownStore,
)

__all__ = [
    "BadArgument",
    "allowed_methods",
    "bad_request",
    "error_response",
    "http_error_response",
    "json_response",
    "status_for",
]


class BadArgument(Exception):
    """A request problem the store never sees (a bad query argument): answered 400."""


# First match wins, so subclasses come before their bases. CapabilityError is decided apart
# (transient or not, writes or ranges).
_STATUS: Final[tuple[tuple[type[StoreError], int], ...]] = (
    (UnknownStore, 404),
    (UnknownScheme, 404),
    (NotFound, 404),
    (Duplicate, 409),
    (KeyConflict, 409),
    (StorageFull, 507),
    (SizeMismatch, 400),
    (InvalidKey, 400),
    (InvalidRange, 400),
    (InvalidMetadata, 400),
    (UnknownHashingAlgo, 400),
    # The backend refused a write (read-only mount, permission): it also revoked WRITE_ACCESS,
    # so this is the same situation as a transient StoreAddDisabled, one request earlier.
    (StorageWriteDenied, 503),
    (BackendUnavailable, 503),
    (OperationTimeout, 504),
    # Bytes from the backend that do not match their checksum, or a redirect loop: upstream
    # faults, not the client's.
    (ChecksumMismatch, 502),
    (MaxRedirectsExceeded, 502),
)


def _dumps(data: Any) -> str:
    # default=str: driver options may hold paths or other simple objects.
    return json.dumps(data, default=str)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def allowed_methods(store: Store) -> str:
    """The methods an object of ``store`` can ever answer (the ``Allow`` of a 405)."""
    configured = store.configured_capabilities
    methods = []
    if Capability.READ_ACCESS in configured:
        methods += ["GET", "HEAD"]
    if Capability.WRITE_ACCESS in configured:
        methods += ["PUT", "DELETE"]
    return ", ".join(methods)


def status_for(exc: StoreError) -> int:
    """The HTTP status of ``exc`` (500 for anything unexpected)."""
    if isinstance(exc, CapabilityError):
        if exc.transient:
            return 503
        # Permanently missing: a range the store can never serve is 501; any other operation
        # the store can never do is 405 (with an Allow header).
        return 501 if isinstance(exc, StoreRandomGetNotSupported) else 405
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def retry_after(store: Store | None) -> str:
    """Seconds until the store's next regular probe: when a revoked capability may be back."""
    interval = store.probe_config.interval if store is not None else 10.0
    return str(max(1, math.ceil(interval)))


def error_response(exc: StoreError, store: Store | None = None) -> web.Response:
    """The JSON error response of ``exc``; ``store`` fills Retry-After and Allow."""
    status = status_for(exc)
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if exc.store is not None:
        body["store"] = exc.store
    if exc.key is not None:
        body["key"] = exc.key
    if isinstance(exc, CapabilityError):
        body["transient"] = exc.transient
        body["required"] = exc.required.names
        if exc.reason:
            body["reason"] = exc.reason
    headers: dict[str, str] = {}
    if status == 503:
        headers["Retry-After"] = retry_after(store)
    elif status == 405 and store is not None:
        headers["Allow"] = allowed_methods(store)
    return json_response(body, status=status, headers=headers)


def bad_request(message: str, error: str = "BadRequest") -> web.Response:
    """A 400 for request problems the store never sees (bad query arguments)."""
    return json_response({"error": error, "message": message}, status=400)


def http_error_response(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's own error (the router's 404 and 405, a handler's ``raise web.HTTPxxx``) as the
    JSON every other error is, keeping its status and headers (``Allow`` of a 405)."""
    name = type(exc).__name__.removeprefix("HTTP") or "HTTPError"
    text = exc.text or ""
    if text == f"{exc.status}: {exc.reason}":  # aiohttp's default body says nothing more
        if exc.status == 404:
            text = f"no such resource: {request.method} {request.path}"
        elif exc.status == 405:
            allowed = exc.headers.get("Allow", "")
            text = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        else:
            text = exc.reason
    headers = {
        k: v
        for k, v in exc.headers.items()
        if k.lower() not in ("content-type", "content-length", "content-encoding")
    }
    return json_response({"error": name, "message": text}, status=exc.status, headers=headers)
