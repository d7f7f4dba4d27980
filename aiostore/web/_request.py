"""What the handlers read from a request: the manager, the store, the key, query arguments,
metadata; and the settings a route table was built with."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from aiohttp import web

from .._keys import validate_key
from .._manager import StoreManager
from .._store import Store
from ..errors import InvalidKey, InvalidMetadata, SizeMismatch
from ._errors import BadArgument
from ._keys import STORES

__all__ = [
    "META_HEADER",
    "RouteSettings",
    "declared_size",
    "flag",
    "int_arg",
    "key_of",
    "manager_of",
    "metadata_of",
    "store_of",
]

#: JSON object metadata on PUT (request) and GET/HEAD (response). ASCII JSON (``\\u`` escapes).
META_HEADER: Final = "X-Aiostore-Meta"
#: The raw (still percent-encoded) key of an object path: everything after the first
#: ``/stores/{store}/objects/`` (store names never contain '/', keys may).
_RAW_KEY: Final = re.compile(r"/stores/[^/]+/objects/(.+)$", re.DOTALL)


@dataclass(slots=True)
class RouteSettings:
    """What one :func:`~aiostore.web.object_routes` table was configured with."""

    heartbeat: float
    body_timeout: float
    max_uploads: int
    #: PUTs running now (one event loop: a plain counter).
    uploads: int = 0


def manager_of(request: web.Request) -> StoreManager:
    try:
        return request.config_dict[STORES]
    except KeyError:
        raise RuntimeError(
            "no StoreManager in this application: call aiostore.web.setup(app, ...) first"
        ) from None


def store_of(request: web.Request) -> Store:
    return manager_of(request)[request.match_info["store"]]


def key_of(request: web.Request, store: str) -> str:
    """The object key, percent-decoded from the raw path as strict UTF-8.

    aiohttp's own decoding keeps bytes that are not UTF-8 as ``%XX`` text, so ``%ff`` and
    ``%25ff`` would name the same object: here the first is an InvalidKey.
    """
    match = _RAW_KEY.search(request.rel_url.raw_path)
    raw = match.group(1) if match else request.match_info["key"]
    try:
        key = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKey(
            f"the path's key {raw!r} does not percent-decode to UTF-8", store=store
        ) from None
    return validate_key(key, store)


def flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise BadArgument(f"query argument {name!r} must be true or false, not {raw!r}")


def int_arg(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not lo <= int(raw) <= hi:
        raise BadArgument(f"query argument {name!r} must be a whole number {lo}..{hi}, not {raw!r}")
    return int(raw)


def declared_size(request: web.Request, store: str, key: str) -> int | None:
    # Content-Length is what the client promised: a body that ends early never commits. A
    # chunked upload may declare its size with ?size=.
    query_size: int | None = int_arg(request, "size", -1, 0, 1 << 62)
    if query_size == -1:
        query_size = None
    length = request.content_length
    if query_size is not None and length is not None and query_size != length:
        raise SizeMismatch(
            f"?size={query_size} but the request declares Content-Length {length}",
            store=store,
            key=key,
        )
    return query_size if query_size is not None else length


def metadata_of(request: web.Request, store: str, key: str) -> Any:
    raw = request.headers.get(META_HEADER)
    if raw is None:
        return None
    try:
        # aiohttp keeps header bytes that are not UTF-8 as lone surrogates: refuse them here.
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMetadata(f"{META_HEADER} is not valid UTF-8", store=store, key=key) from None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidMetadata(
            f"{META_HEADER} is not valid JSON: {exc}", store=store, key=key
        ) from exc
    try:
        # A \\ud800 escape decodes to a lone surrogate: text no store can keep.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMetadata(
            f"{META_HEADER} holds text that is not valid Unicode (a lone surrogate)",
            store=store,
            key=key,
        ) from None
    return value
