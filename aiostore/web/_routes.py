"""The REST surface, the Server-Sent-Events stream and the dashboard page."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from .._keys import validate_key
from .._manager import StoreManager
from .._store import Store
from .._types import ObjectInfo
from ..capabilities.flags import NAMED, Capability
from ..errors import Duplicate, InvalidMetadata, SizeMismatch, StoreError
from ._app import EVENT_STREAMS, STORES
from ._errors import bad_request, error_response, json_response
from ._range import ByteRange, Unsatisfiable, if_range_matches, parse_range

__all__ = ["META_HEADER", "object_routes"]

log = logging.getLogger("aiostore.web")

#: JSON object metadata on PUT (request) and GET/HEAD (response). ASCII JSON (``\\u`` escapes).
META_HEADER: Final = "X-Aiostore-Meta"
#: The dashboard's files, served from the package (no build step, nothing from a CDN).
_ASSETS: Final = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}
_MAX_LIST: Final = 10_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadArgument(Exception):
    """A query argument the handler cannot use (answered 400 before the store is asked)."""


def _manager(request: web.Request) -> StoreManager:
    try:
        return request.config_dict[STORES]
    except KeyError:
        raise RuntimeError(
            "no StoreManager in this application: call aiostore.web.setup(app, ...) first"
        ) from None


def _store_of(request: web.Request) -> Store | None:
    manager = request.config_dict.get(STORES)
    name = request.match_info.get("store")
    if manager is None or name is None or name not in manager:
        return None
    return manager[name]


def _json_errors(handler: Handler) -> Handler:
    """Turn store errors into the JSON error responses of the contract."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreError as exc:
            return error_response(exc, _store_of(request))
        except _BadArgument as exc:
            return bad_request(str(exc))

    return wrapper


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise _BadArgument(f"query argument {name!r} must be true or false, not {raw!r}")


def _int_arg(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not lo <= int(raw) <= hi:
        raise _BadArgument(
            f"query argument {name!r} must be a whole number {lo}..{hi}, not {raw!r}"
        )
    return int(raw)


def _declared_size(request: web.Request, store: str, key: str) -> int | None:
    # Content-Length is what the client promised: a body that ends early never commits. A
    # chunked upload may declare its size with ?size=.
    query_size = _int_arg(request, "size", None, 0, 1 << 62)
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
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidMetadata(
            f"{META_HEADER} is not valid JSON: {exc}", store=store, key=key
        ) from exc


def _etag(info: ObjectInfo) -> str | None:
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


def _sse(event: str, data: Any) -> bytes:
    # json.dumps never emits a newline, so the data fits one "data:" line.
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


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


def _snapshot_event(manager: StoreManager) -> dict[str, Any]:
    snap = manager.snapshot()
    # The dashboard takes its 13 columns (and their bits) from here: one source of truth.
    snap["capabilities"] = [{"name": c.name, "value": int(c)} for c in NAMED]
    return snap


async def _expect_put(request: web.Request) -> web.StreamResponse | None:
    """Answer ``Expect: 100-continue`` with the error a PUT would get before its body is sent.

    curl sends it for bodies over 1 MiB: a read-only store, an unknown store, a bad key or an
    existing key (without ``?overwrite``) then costs no upload. The put itself still checks
    everything again.
    """
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    store: Store | None = None
    try:
        store = _manager(request)[request.match_info["store"]]
        key = validate_key(request.match_info["key"], store.name)
        overwrite = _flag(request, "overwrite")
        _declared_size(request, store.name, key)
        store._check("put", key)
        if not overwrite:
            try:
                exists = await store.exists(key)
            except StoreError:
                exists = False  # cannot tell (not readable, backend hiccup): let the put decide
            if exists:
                raise Duplicate("an object with this key exists", store=store.name, key=key)
    except StoreError as exc:
        return error_response(exc, store)
    except _BadArgument as exc:
        return bad_request(str(exc))
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


def object_routes(*, dashboard: bool = True, heartbeat: float = 15.0) -> web.RouteTableDef:
    """The REST object service, the ``/events`` stream and (optionally) the dashboard.

    ``app.add_routes(aiostore.web.object_routes())`` after :func:`aiostore.web.setup`; the routes
    also work in a sub-application of the app that was set up.

    Routes:
        - ``GET /stores``: ``manager.snapshot()`` as JSON; ``GET /stores/{store}``: one store.
        - ``POST /stores/{store}/probe``: probe now; the store's snapshot afterwards.
        - ``GET /stores/{store}/objects?prefix=&limit=1000``: a listing.
        - ``PUT /stores/{store}/objects/{key}``: streams the body into ``store.put`` (never
          buffered). ``Content-Length`` (or ``?size=``) is the expected size; ``?overwrite=true``
          replaces; ``?hash_algo=`` picks the multihash; ``X-Aiostore-Meta`` carries JSON
          metadata. 201 with the stored object as JSON.
        - ``GET /stores/{store}/objects/{key}``: streamed; one ``Range`` (``bytes=a-b``,
          ``bytes=a-``, ``bytes=-n``, honouring ``If-Range``) gives 206; an unsatisfiable one
          416 with ``Content-Range: bytes */size``; a malformed or multi-range ``Range`` is
          ignored (200, RFC 9110 section 14.2).
        - ``HEAD`` the same: size, ``Last-Modified``, ``ETag``, ``Accept-Ranges``, metadata.
        - ``DELETE``: 204.
        - ``GET /events``: Server-Sent Events: ``event: snapshot`` first, then one
          ``event: capability`` per change (data: ``CapabilityChange.to_dict()``), and a
          ``: ping`` comment every ``heartbeat`` seconds.
        - ``GET /``: the dashboard (when ``dashboard`` is true).

    Errors are JSON ``{"error": class name, "message": ...}``: Duplicate 409, NotFound 404,
    StorageFull 507, SizeMismatch/InvalidKey/InvalidRange/InvalidMetadata 400, unknown store 404,
    a transient capability error 503 with ``Retry-After`` (the store's probe interval),
    a permanent one 405 with ``Allow`` (or 501 for ranges), BackendUnavailable 503,
    OperationTimeout 504.

    Args:
        dashboard: also serve ``GET /`` and its assets under ``/dashboard/``.
        heartbeat: seconds between ``: ping`` comments on ``/events``.
    """
    if not heartbeat > 0:
        raise ValueError(f"heartbeat must be > 0 seconds, not {heartbeat!r}")
    routes = web.RouteTableDef()

    @routes.get("/stores")
    async def list_stores(request: web.Request) -> web.StreamResponse:
        return json_response(_manager(request).snapshot())

    @routes.get("/stores/{store}")
    @_json_errors
    async def get_store(request: web.Request) -> web.StreamResponse:
        manager = _manager(request)
        store = manager[request.match_info["store"]]
        return json_response(manager.snapshot()["stores"][store.name])

    @routes.post("/stores/{store}/probe")
    @_json_errors
    async def probe_store(request: web.Request) -> web.StreamResponse:
        manager = _manager(request)
        store = manager[request.match_info["store"]]
        await store.probe()
        return json_response(manager.snapshot()["stores"][store.name])

    @routes.get("/stores/{store}/objects")
    @_json_errors
    async def list_objects(request: web.Request) -> web.StreamResponse:
        store = _manager(request)[request.match_info["store"]]
        prefix = request.query.get("prefix", "")
        limit = _int_arg(request, "limit", 1000, 1, _MAX_LIST)
        assert limit is not None
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

    @routes.put("/stores/{store}/objects/{key:.+}", expect_handler=_expect_put)
    @_json_errors
    async def put_object(request: web.Request) -> web.StreamResponse:
        store = _manager(request)[request.match_info["store"]]
        key = request.match_info["key"]
        overwrite = _flag(request, "overwrite")
        size = _declared_size(request, store.name, key)
        metadata = _metadata(request, store.name, key)
        hash_algo = request.query.get("hash_algo", "sha256")
        # The StreamReader goes straight in: PutStream pulls chunks as the driver writes them.
        obj = await store.put(
            key,
            request.content,
            size=size,
            overwrite=overwrite,
            metadata=metadata,
            hash_algo=hash_algo,
        )
        body = {
            "store": obj.store,
            "key": obj.key,
            "location": obj.location,
            "size": obj.size,
            "checksum": obj.checksum,
            "multihash": obj.multihash,
            "hash_algo": obj.hash_algo,
            "metadata": dict(obj.metadata),
        }
        return json_response(body, status=201, headers={hdrs.LOCATION: request.path})

    @routes.head("/stores/{store}/objects/{key:.+}")
    @_json_errors
    async def head_object(request: web.Request) -> web.StreamResponse:
        store = _manager(request)[request.match_info["store"]]
        info = await store.stat(request.match_info["key"])
        resp = web.StreamResponse(headers=_object_headers(store, info))
        resp.content_length = info.size
        await resp.prepare(request)
        await resp.write_eof()
        return resp

    @routes.get("/stores/{store}/objects/{key:.+}", allow_head=False)
    @_json_errors
    async def get_object(request: web.Request) -> web.StreamResponse:
        store = _manager(request)[request.match_info["store"]]
        key = request.match_info["key"]
        info = await store.stat(key)
        headers = _object_headers(store, info)
        rng: ByteRange | None = None
        range_header = request.headers.get(hdrs.RANGE)
        if_range = request.headers.get(hdrs.IF_RANGE)
        if range_header is not None and (
            if_range is None or if_range_matches(if_range, headers.get(hdrs.ETAG), info.modified)
        ):
            try:
                rng = parse_range(range_header, info.size)
            except Unsatisfiable:
                return _unsatisfiable(store, key, range_header, info.size)
        offset, length = 0, None
        if rng is not None and not rng.covers(info.size):
            # Ask only for what the range needs: up to the end needs READ_OFFSET, not READ_CHUNK.
            offset = rng.start
            length = None if rng.end == info.size - 1 else rng.length
        resp = web.StreamResponse(status=200 if rng is None else 206, headers=headers)
        async with store.open(key, offset=offset, length=length) as reader:
            n = reader.size
            if rng is not None:
                if n == 0:  # replaced by a shorter object since the stat
                    return _unsatisfiable(store, key, range_header or "", 0)
                resp.headers[hdrs.CONTENT_RANGE] = f"bytes {offset}-{offset + n - 1}/{info.size}"
            resp.content_length = n
            await resp.prepare(request)
            sent = 0
            try:
                async for chunk in reader:
                    await resp.write(chunk)
                    sent += len(chunk)
            except StoreError as exc:
                # The status line is out: all that is left is to cut the connection, so the
                # client sees a short body rather than a complete-looking one.
                log.warning(
                    "GET %s %r failed after %d of %d bytes: %s", store.name, key, sent, n, exc
                )
                if request.transport is not None:
                    request.transport.close()
                return resp
        await resp.write_eof()
        return resp

    @routes.delete("/stores/{store}/objects/{key:.+}")
    @_json_errors
    async def delete_object(request: web.Request) -> web.StreamResponse:
        store = _manager(request)[request.match_info["store"]]
        await store.delete(request.match_info["key"])
        return web.Response(status=204)

    @routes.get("/events")
    async def events(request: web.Request) -> web.StreamResponse:
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
            await resp.write(b"retry: 2000\n\n" + _sse("snapshot", _snapshot_event(manager)))
            dropped = sub.dropped
            while True:
                try:
                    async with asyncio.timeout(heartbeat):
                        change = await sub.__anext__()
                except TimeoutError:
                    await resp.write(b": ping\n\n")
                    continue
                except StopAsyncIteration:
                    break  # the app is shutting down
                await resp.write(_sse("capability", change.to_dict()))
                if sub.dropped != dropped:
                    # This client fell behind and lost changes: repaint it from scratch.
                    dropped = sub.dropped
                    await resp.write(_sse("snapshot", _snapshot_event(manager)))
        except ConnectionResetError:
            pass  # the client went away
        finally:
            streams.discard(sub)
            sub.close()
        return resp

    if dashboard:
        # Read once, here: a few KiB, and no file I/O on the event loop per request.
        static = files("aiostore.web") / "static"
        page = (static / "index.html").read_bytes()
        assets = {name: (static / name).read_bytes() for name in _ASSETS}

        @routes.get("/")
        async def index(request: web.Request) -> web.StreamResponse:
            return web.Response(
                body=page,
                content_type="text/html",
                charset="utf-8",
                headers={hdrs.CACHE_CONTROL: "no-cache"},
            )

        @routes.get("/dashboard/{asset}")
        async def asset(request: web.Request) -> web.StreamResponse:
            name = request.match_info["asset"]
            if name not in assets:
                raise web.HTTPNotFound()
            return web.Response(
                body=assets[name],
                content_type=_ASSETS[name],
                charset="utf-8",
                headers={hdrs.CACHE_CONTROL: "no-cache"},
            )

    return routes
