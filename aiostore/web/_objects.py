"""The object handlers: PUT, GET (one read, one version), HEAD and DELETE."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import StreamReader, hdrs, web
from aiohttp.http import HttpVersion11

from .._store import ObjectReader, Store
from .._types import ObjectInfo
from ..capabilities.flags import Capability
from ..errors import Duplicate, StoreError
from ._auth import refusal
from ._errors import (
    BadArgument,
    bad_request,
    error_response,
    http_error_response,
    json_response,
)
from ._keys import TOKENS
from ._range import ByteRange, RangeSpec, Unsatisfiable, if_range_matches, parse_spec
from ._request import (
    META_HEADER,
    RouteSettings,
    declared_size,
    flag,
    key_of,
    metadata_of,
    store_of,
)

__all__ = [
    "delete_object",
    "expect_put",
    "get_object",
    "head_object",
    "info_dict",
    "put_object",
]

log = logging.getLogger("aiostore.web")

#: Opens of one GET: a suffix range (``bytes=-n``) whose object changed size between the look and
#: the open is opened again; the last try ignores the range (200, the whole object: RFC 9110
#: lets a server ignore Range), so a GET always succeeds in a bounded number of opens.
_TRIES: Final = 3


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


def info_dict(info: ObjectInfo) -> dict[str, Any]:
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


async def _last_word(request: web.Request, resp: web.Response) -> web.Response:
    """Send ``resp`` and close the connection: the rest of the request body (a stalled upload, one
    more than the server takes) is not worth reading. Without this aiohttp would linger up to
    10 s reading and discarding it."""
    resp.force_close()
    await resp.prepare(request)
    await resp.write_eof()
    if request.transport is not None:
        request.transport.close()  # after the buffered response is flushed
    return resp


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
        return http_error_response(
            web.HTTPExpectationFailed(text=f"unknown Expect: {expect}"), request
        )
    store: Store | None = None
    try:
        store = store_of(request)
        key = key_of(request, store.name)
        overwrite = flag(request, "overwrite")
        declared_size(request, store.name, key)
        metadata_of(request, store.name, key)
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
    store = store_of(request)
    key = key_of(request, store.name)
    overwrite = flag(request, "overwrite")
    size = declared_size(request, store.name, key)
    metadata = metadata_of(request, store.name, key)
    hash_algo = request.query.get("hash_algo", "sha256")
    if settings.uploads >= settings.max_uploads:
        return await _last_word(request, _busy(settings))
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
        return await _last_word(request, resp)
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
    store = store_of(request)
    info = await store.stat(key_of(request, store.name))
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
    store = store_of(request)
    key = key_of(request, store.name)
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
    store = store_of(request)
    await store.delete(key_of(request, store.name))
    return web.Response(status=204)
