"""The request handlers of the object service, one function each.

Handlers raise; :func:`~aiostore.web._middleware.error_middleware` turns every error into its
JSON response. The few settings of a route table (heartbeat, body timeout, upload limit) come in
a :class:`RouteSettings` bound with :func:`functools.partial` by
:func:`~aiostore.web.object_routes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from aiohttp import StreamReader, hdrs, web
from aiohttp.http import HttpVersion11

from .._keys import validate_key
from .._manager import StoreManager
from .._store import ObjectReader, Store
from .._types import ObjectInfo
from ..capabilities.flags import NAMED, Capability
from ..errors import Duplicate, InvalidKey, InvalidMetadata, SizeMismatch, StoreError
from ._auth import refusal
from ._errors import BadArgument, bad_request, error_response, json_response
from ._events import snapshot_event, sse
from ._keys import EVENT_STREAMS, STORES, TOKENS
from ._range import ByteRange, RangeSpec, Unsatisfiable, if_range_matches, parse_spec

__all__ = ["META_HEADER", "RouteSettings"]

log = logging.getLogger("aiostore.web")

#: JSON object metadata on PUT (request) and GET/HEAD (response). ASCII JSON (``\\u`` escapes).
META_HEADER: Final = "X-Aiostore-Meta"
#: The dashboard's files, served from the package (no build step, nothing from a CDN).
ASSETS: Final = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}
_MAX_LIST: Final = 10_000
#: The raw (still percent-encoded) key of an object path: everything after the first
#: ``/stores/{store}/objects/`` (store names never contain '/', keys may).
_RAW_KEY: Final = re.compile(r"/stores/[^/]+/objects/(.+)$", re.DOTALL)
#: Opens of one GET: a suffix range (``bytes=-n``) whose object changed size between the look and
#: the open is opened again; the last try ignores the range (200, the whole object: RFC 9110
#: lets a server ignore Range), so a GET always succeeds in a bounded number of opens.
_TRIES: Final = 3


@dataclass(slots=True)
class RouteSettings:
    """What one :func:`~aiostore.web.object_routes` table was configured with."""

    heartbeat: float
    body_timeout: float
    max_uploads: int
    #: PUTs running now (one event loop: a plain counter).
    uploads: int = 0


# -- request parsing ----------------------------------------------------------------------------


def _manager(request: web.Request) -> StoreManager:
    try:
        return request.config_dict[STORES]
    except KeyError:
        raise RuntimeError(
            "no StoreManager in this application: call aiostore.web.setup(app, ...) first"
        ) from None


def _store(request: web.Request) -> Store:
    return _manager(request)[request.match_info["store"]]


def _key(request: web.Request, store: str) -> str:
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


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise BadArgument(f"query argument {name!r} must be true or false, not {raw!r}")


def _int_arg(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not lo <= int(raw) <= hi:
        raise BadArgument(f"query argument {name!r} must be a whole number {lo}..{hi}, not {raw!r}")
    return int(raw)


def _declared_size(request: web.Request, store: str, key: str) -> int | None:
    # Content-Length is what the client promised: a body that ends early never commits. A
    # chunked upload may declare its size with ?size=.
    query_size: int | None = _int_arg(request, "size", -1, 0, 1 << 62)
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


def _metadata(request: web.Request, store: str, key: str) -> Any:
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


# -- responses ----------------------------------------------------------------------------------


def _etag(info: ObjectInfo) -> str | None:
    if info.etag:
        # The driver's own version tag (an S3 ETag, a file's identity): quoted, ASCII only.
        tag = info.etag.strip('"')
        if tag.isascii() and tag.isprintable() and '"' not in tag:
            return f'"{tag}"'
    # Size and modification time, like nginx: cheap, and changes whenever the object is replaced.
    if info.modified is None:
        return None
    return f'"{info.size:x}-{round(info.modified * 1_000_000):x}"'


def _object_headers(store: Store, info: ObjectInfo) -> dict[str, str]:
    headers: dict[str, str] = {
        hdrs.CONTENT_TYPE: "application/octet-stream",
        hdrs.ACCEPT_RANGES: "bytes" if store.is_capable(Capability.READ_RANDOM) else "none",
    }
    if info.modified is not None:
        headers[hdrs.LAST_MODIFIED] = email.utils.formatdate(info.modified, usegmt=True)
    etag = _etag(info)
    if etag is not None:
        headers[hdrs.ETAG] = etag
    if info.metadata:
        headers[META_HEADER] = json.dumps(
            dict(info.metadata), ensure_ascii=True, separators=(",", ":")
        )
    return headers


def _info_dict(info: ObjectInfo) -> dict[str, Any]:
    return {
        "key": info.key,
        "size": info.size,
        "modified": info.modified,
        "metadata": dict(info.metadata),
    }


def _unsatisfiable(store: Store, key: str, range_header: str, size: int) -> web.Response:
    return json_response(
        {
            "error": "RangeNotSatisfiable",
            "message": f"store {store.name!r}, key {key!r}: {range_header!r} selects nothing of"
            f" {size} bytes",
        },
        status=416,
        headers={hdrs.CONTENT_RANGE: f"bytes */{size}"},
    )


def _busy(settings: RouteSettings) -> web.Response:
    return json_response(
        {
            "error": "TooManyUploads",
            "message": f"{settings.max_uploads} uploads are running; try again shortly",
        },
        status=503,
        headers={"Retry-After": "1"},
    )


# -- stores -------------------------------------------------------------------------------------


async def list_stores(request: web.Request) -> web.StreamResponse:
    """``GET /stores``: the manager's snapshot."""
    return json_response(_manager(request).snapshot())


async def get_store(request: web.Request) -> web.StreamResponse:
    """``GET /stores/{store}``: one store's snapshot entry."""
    manager = _manager(request)
    store = manager[request.match_info["store"]]
    return json_response(manager.snapshot()["stores"][store.name])


async def probe_store(request: web.Request) -> web.StreamResponse:
    """``POST /stores/{store}/probe``: probe now; the store's snapshot entry afterwards."""
    manager = _manager(request)
    store = manager[request.match_info["store"]]
    await store.probe()
    return json_response(manager.snapshot()["stores"][store.name])


async def list_objects(request: web.Request) -> web.StreamResponse:
    """``GET /stores/{store}/objects?prefix=&limit=``: up to ``limit`` objects."""
    store = _store(request)
    prefix = request.query.get("prefix", "")
    limit = _int_arg(request, "limit", 1000, 1, _MAX_LIST)
    objects: list[dict[str, Any]] = []
    truncated = False
    lister = store.list(prefix)
    try:
        async for info in lister:
            if len(objects) == limit:
                truncated = True
                break
            objects.append(_info_dict(info))
    finally:
        await lister.aclose()
    return json_response(
        {"store": store.name, "prefix": prefix, "objects": objects, "truncated": truncated}
    )


#: The longest operator reason kept (it shows in errors, the snapshot and the dashboard).
_MAX_REASON: Final = 500


def _capability_names(body: dict[str, Any], field: str) -> Capability:
    names = body[field]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BadArgument(f"{field!r} must be a non-empty list of capability names")
    known = {str(c.name): c for c in NAMED}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadArgument(
            f"unknown capabilities {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
        )
    caps = Capability.NONE
    for name in names:
        caps |= known[name]
    return caps


async def change_capabilities(request: web.Request) -> web.StreamResponse:
    """``POST /stores/{store}/capabilities``: an operator's override.

    ``{"unset": [names], "reason": "..."}`` turns capabilities off whatever probing says (the
    reason shows in errors, the snapshot and the dashboard); ``{"set": [names]}`` lifts that
    again (never above the configuration; what probing revoked stays revoked). 200 with the
    store's snapshot entry.
    """
    manager = _manager(request)
    store = manager[request.match_info["store"]]
    try:
        body = await request.json(loads=json.loads)
    except ValueError as exc:
        raise BadArgument(f"the body must be JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadArgument('the body must be {"unset": [...], "reason": "..."} or {"set": [...]}')
    extra = set(body) - {"unset", "set", "reason"}
    if extra or ("unset" in body) == ("set" in body):
        raise BadArgument(
            'the body must be {"unset": [...], "reason": "..."} or {"set": [...]}'
            + (f"; unknown fields: {', '.join(sorted(map(str, extra)))}" if extra else "")
        )
    if "set" in body:
        if "reason" in body:
            raise BadArgument("'reason' goes with 'unset' only")
        store.set_capabilities(_capability_names(body, "set"))
    else:
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > _MAX_REASON:
            raise BadArgument(f"'reason' must be a string of at most {_MAX_REASON} characters")
        caps = _capability_names(body, "unset")
        store.unset_capabilities(caps, reason=reason.strip() or "unset by an operator")
        log.info("store %s: %s unset by an operator: %s", store.name, caps.names, reason)
    return json_response(manager.snapshot()["stores"][store.name])


# -- objects ------------------------------------------------------------------------------------


class _Body:
    """The request body as chunks; a read that waits longer than ``timeout`` ends the upload."""

    def __init__(self, content: StreamReader, timeout: float) -> None:
        self.content = content
        self.timeout = timeout
        self.stalled = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    chunk: bytes = await self.content.readany()
            except TimeoutError:
                self.stalled = True
                raise
            if not chunk:
                return
            yield chunk


async def expect_put(settings: RouteSettings, request: web.Request) -> web.StreamResponse | None:
    """Answer ``Expect: 100-continue`` with the error a PUT would get before its body is sent.

    curl sends it for bodies over 1 MiB: a read-only store, an unknown store, a bad key, an
    existing key (without ``?overwrite``) or a full upload limit then costs no upload. The put
    itself still checks everything again. (aiohttp runs this before the middlewares, so it
    answers errors itself, with the same mapping.)
    """
    tokens = request.config_dict.get(TOKENS)
    if tokens is not None and (refused := refusal(request, tokens)) is not None:
        return refused  # no hint about stores or keys before the token is checked
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    store: Store | None = None
    try:
        store = _store(request)
        key = _key(request, store.name)
        overwrite = _flag(request, "overwrite")
        _declared_size(request, store.name, key)
        _metadata(request, store.name, key)
        store._check("put", key)
        if settings.uploads >= settings.max_uploads:
            return _busy(settings)
        if not overwrite:
            try:
                exists = await store.exists(key)
            except StoreError:
                exists = False  # cannot tell (not readable, backend hiccup): let the put decide
            if exists:
                raise Duplicate("an object with this key exists", store=store.name, key=key)
    except StoreError as exc:
        return error_response(exc, store)
    except BadArgument as exc:
        return bad_request(str(exc))
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


async def put_object(settings: RouteSettings, request: web.Request) -> web.StreamResponse:
    """``PUT /stores/{store}/objects/{key}``: the body streamed into ``store.put``."""
    store = _store(request)
    key = _key(request, store.name)
    overwrite = _flag(request, "overwrite")
    size = _declared_size(request, store.name, key)
    metadata = _metadata(request, store.name, key)
    hash_algo = request.query.get("hash_algo", "sha256")
    if settings.uploads >= settings.max_uploads:
        return _busy(settings)
    body = _Body(request.content, settings.body_timeout)
    settings.uploads += 1
    try:
        obj = await store.put(
            key,
            body.chunks(),
            size=size,
            overwrite=overwrite,
            metadata=metadata,
            hash_algo=hash_algo,
        )
    except Exception:
        if not body.stalled:
            raise
        # The put was abandoned (its temporary file removed) when the body stalled.
        log.info(
            "PUT %s %r: the body stalled for %g s; upload abandoned",
            store.name,
            key,
            settings.body_timeout,
        )
        resp = json_response(
            {
                "error": "RequestTimeout",
                "message": f"no byte of the body arrived for {settings.body_timeout:g} s;"
                " the upload was abandoned",
                "store": store.name,
                "key": key,
            },
            status=408,
        )
        resp.force_close()  # the rest of the body is not worth reading
        return resp
    finally:
        settings.uploads -= 1
    return json_response(
        {
            "store": obj.store,
            "key": obj.key,
            "location": obj.location,
            "size": obj.size,
            "checksum": obj.checksum,
            "multihash": obj.multihash,
            "hash_algo": obj.hash_algo,
            "metadata": dict(obj.metadata),
        },
        status=201,
        headers={hdrs.LOCATION: request.path},
    )


async def head_object(request: web.Request) -> web.StreamResponse:
    """``HEAD /stores/{store}/objects/{key}``: the headers of a GET, from one stat."""
    store = _store(request)
    info = await store.stat(_key(request, store.name))
    resp = web.StreamResponse(headers=_object_headers(store, info))
    resp.content_length = info.size
    await resp.prepare(request)
    await resp.write_eof()
    return resp


def _reader_info(reader: ObjectReader) -> ObjectInfo | None:
    """What the open reader says about the version it reads (None: the driver cannot tell)."""
    info = getattr(reader, "info", None)
    return info if isinstance(info, ObjectInfo) else None


async def _open(
    store: Store, key: str, spec: RangeSpec | None, size_hint: int | None
) -> tuple[ObjectReader, ObjectInfo | None]:
    """Open what ``spec`` asks for; the version's info comes from the open reader."""
    offset, length = 0, None
    if spec is not None:
        if spec.first is None:  # the last n bytes: where they start depends on the size
            if size_hint is not None and spec.last:
                offset = max(0, size_hint - spec.last)
        else:
            offset = spec.first
            length = None if spec.last is None else spec.last - spec.first + 1
    reader = store.open(key, offset=offset, length=length)
    try:
        await reader.__aenter__()
    except BaseException:
        await reader.aclose()
        raise
    return reader, _reader_info(reader)


async def get_object(request: web.Request) -> web.StreamResponse:
    """``GET /stores/{store}/objects/{key}``: the object streamed, one ``Range`` honoured.

    One read is one version: size, ETag, Last-Modified and metadata come from the open reader
    (``reader.info``), so they always describe the bytes sent, even while writers replace the
    object. A driver that cannot tell (no ``info``) falls back to a stat.
    """
    store = _store(request)
    key = _key(request, store.name)
    range_header = request.headers.get(hdrs.RANGE)
    if_range = request.headers.get(hdrs.IF_RANGE)
    spec = parse_spec(range_header) if range_header is not None else None

    size_hint: int | None = None
    if spec is not None and spec.first is None:
        size_hint = (await store.stat(key)).size
    for attempt in range(_TRIES):
        if attempt == _TRIES - 1 and spec is not None and spec.first is None:
            spec = None  # the object keeps changing size: serve it whole, as one version
        reader, info = await _open(store, key, spec, size_hint)
        try:
            if info is None:
                info = await store.stat(key)  # the fallback: a separate look at the object
            headers = _object_headers(store, info)
            if (
                spec is not None
                and if_range is not None
                and not if_range_matches(if_range, headers.get(hdrs.ETAG), info.modified)
            ):
                # Another version than the client has: the whole object, from a new read.
                await reader.aclose()
                spec = None
                continue
            rng: ByteRange | None = None
            if spec is not None:
                try:
                    rng = spec.resolve(info.size)
                except Unsatisfiable:
                    await reader.aclose()
                    return _unsatisfiable(store, key, range_header or "", info.size)
                if spec.first is None and rng.start != reader.offset:
                    # The object changed size between the look and the open: again.
                    await reader.aclose()
                    size_hint = info.size
                    continue
            return await _send(request, store, key, reader, headers, info, rng)
        finally:
            await reader.aclose()
    raise AssertionError("unreachable: the last try always sends")  # pragma: no cover


async def _send(
    request: web.Request,
    store: Store,
    key: str,
    reader: ObjectReader,
    headers: dict[str, str],
    info: ObjectInfo,
    rng: ByteRange | None,
) -> web.StreamResponse:
    n = reader.size
    resp = web.StreamResponse(status=200 if rng is None else 206, headers=headers)
    if rng is not None:
        if n == 0:  # the fallback's stat saw a longer object than the one opened
            return _unsatisfiable(store, key, request.headers.get(hdrs.RANGE, ""), 0)
        start = reader.offset
        resp.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{start + n - 1}/{info.size}"
    resp.content_length = n
    await resp.prepare(request)
    sent = 0
    try:
        async for chunk in reader:
            await resp.write(chunk)
            sent += len(chunk)
    except StoreError as exc:  # before ConnectionError: BackendUnavailable is one too
        # The status line is out: all that is left is to cut the connection, so the client
        # sees a short body rather than a complete-looking one.
        log.warning("GET %s %r failed after %d of %d bytes: %s", store.name, key, sent, n, exc)
        if request.transport is not None:
            request.transport.close()
        return resp
    except ConnectionError as exc:  # aiohttp: ConnectionResetError, or "Connection lost"
        log.info(
            "GET %s %r: the client went away after %d of %d bytes (%s)",
            store.name,
            key,
            sent,
            n,
            exc,
        )
        return resp
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


async def delete_object(request: web.Request) -> web.StreamResponse:
    """``DELETE /stores/{store}/objects/{key}``: 204."""
    store = _store(request)
    await store.delete(_key(request, store.name))
    return web.Response(status=204)


# -- events and the dashboard -------------------------------------------------------------------


async def events(settings: RouteSettings, request: web.Request) -> web.StreamResponse:
    """``GET /events``: a snapshot, then each capability change, as Server-Sent Events."""
    manager = _manager(request)
    streams = request.config_dict[EVENT_STREAMS]
    resp = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
            hdrs.CACHE_CONTROL: "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    # Subscribe before the snapshot, so nothing between the two is lost (at worst a change
    # arrives that the snapshot already shows: applying it again changes nothing).
    sub = manager.changes()
    streams.add(sub)
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 2000\n\n" + sse("snapshot", snapshot_event(manager)))
        dropped = sub.dropped
        while True:
            try:
                async with asyncio.timeout(settings.heartbeat):
                    change = await sub.__anext__()
            except TimeoutError:
                await resp.write(b": ping\n\n")
                continue
            except StopAsyncIteration:
                break  # the app is shutting down
            await resp.write(sse("capability", change.to_dict()))
            if sub.dropped != dropped:
                # This client fell behind and lost changes: repaint it from scratch.
                dropped = sub.dropped
                await resp.write(sse("snapshot", snapshot_event(manager)))
    except ConnectionError:
        log.debug("GET /events: the client went away")
    finally:
        streams.discard(sub)
        sub.close()
    return resp


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The dashboard's page and assets, read once from the package (a few KiB)."""

    page: bytes
    assets: dict[str, bytes]

    @classmethod
    def load(cls) -> Dashboard:
        static = files("aiostore.web") / "static"
        return cls(
            page=(static / "index.html").read_bytes(),
            assets={name: (static / name).read_bytes() for name in ASSETS},
        )


async def index(dashboard: Dashboard, request: web.Request) -> web.StreamResponse:
    """``GET /``: the dashboard page."""
    return web.Response(
        body=dashboard.page,
        content_type="text/html",
        charset="utf-8",
        headers={hdrs.CACHE_CONTROL: "no-cache"},
    )


async def asset(dashboard: Dashboard, request: web.Request) -> web.StreamResponse:
    """``GET /dashboard/{asset}``: the page's script and style."""
    name = request.match_info["asset"]
    if name not in dashboard.assets:
        raise web.HTTPNotFound()
    return web.Response(
        body=dashboard.assets[name],
        content_type=ASSETS[name],
        charset="utf-8",
        headers={hdrs.CACHE_CONTROL: "no-cache"},
    )
