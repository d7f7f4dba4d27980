"""Servers that lie or stall: never a wrong or extra byte, no hang, no raw aiohttp error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
import pytest
from aiohttp import web

from aiostore import BackendUnavailable, OperationTimeout, StoreError

from .support import HELLO, RawHandler, RawServer, WebServer, http_store, read_request_head

ALPHABET = bytes(range(65, 91)) * 4  # 104 bytes, each position recognisable

StartRaw = Callable[[RawHandler], Awaitable[RawServer]]


def partial(content_range: str, body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=206, body=body, headers={"Content-Range": content_range})

    return handler


async def test_more_bytes_than_the_range_are_never_yielded(server: WebServer) -> None:
    """A 206 whose body is longer than its Content-Range (and the request): only the range."""
    server.routes["/data/long"] = partial("bytes 10-19/104", ALPHABET[10:60])
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("long", offset=10, length=10) == ALPHABET[10:20]
        async with store.open("long", offset=10, length=10) as reader:
            assert reader.size == 10
            assert await reader.read() == ALPHABET[10:20]
        # A server that sends a wider range than asked for: cut to the request.
        server.routes["/data/wide"] = partial("bytes 10-59/104", ALPHABET[10:60])
        assert await store.read("wide", offset=10, length=5) == ALPHABET[10:15]
        assert await store.read("hello.txt") == HELLO  # the shared session still works


@pytest.mark.parametrize("junk_delay", [None, 0.05])
async def test_bodies_longer_than_content_length_are_cut(
    raw_server: StartRaw, junk_delay: float | None
) -> None:
    """A raw server sends 35 bytes more than 'Content-Length: 5'. In the same segment aiohttp's
    parser rejects the whole answer (a StoreError); sent later, the read yields exactly five
    bytes and the polluted connection does not spoil the next read. Never 40 bytes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request_head(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + ALPHABET[:5])
            if junk_delay is not None:
                await writer.drain()
                await asyncio.sleep(junk_delay)
            writer.write(ALPHABET[5:40])
            await writer.drain()

    srv = await raw_server(handler)
    async with http_store(srv.base_url, {"initial": False}) as store:
        for _ in range(2):
            try:
                got = await store.read("x")
            except StoreError as exc:
                # With a delay the junk usually arrives as a segment of its own; on a loaded
                # machine the client may still read both at once: then it is the same case.
                assert "invalid HTTP response" in str(exc)
                assert isinstance(exc.__cause__, aiohttp.ClientResponseError)
            else:
                assert got == ALPHABET[:5]
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("content_range", "why"),
    [
        ("bytes 0-9/104", "asked for bytes from 10"),  # wrong start
        ("bytes 10-14/104", "the server sent"),  # shorter than asked, the object goes on
        ("bytes 10-200/104", "the server sent"),  # ends beyond the object
        ("", "Content-Range ''"),  # no Content-Range at all
        ("bytes 10-19,30-39/104", "Content-Range"),  # not one range
    ],
)
async def test_lying_content_ranges_are_refused(
    server: WebServer, content_range: str, why: str
) -> None:
    """Anything but the range that was asked for raises instead of yielding bytes."""
    server.routes["/data/liar"] = partial(content_range, ALPHABET[10:20])
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        with pytest.raises(BackendUnavailable) as err:
            await store.read("liar", offset=10, length=10)
        assert why in str(err.value)


async def test_a_body_cut_short_raises(raw_server: StartRaw) -> None:
    """The connection closes after 10 of 100 declared bytes: BackendUnavailable, chained."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + ALPHABET[:10])
        await writer.drain()

    srv = await raw_server(handler)
    async with http_store(srv.base_url, {"initial": False}) as store:
        with pytest.raises(BackendUnavailable) as err:
            await store.read("x")
        assert isinstance(err.value.__cause__, aiohttp.ClientPayloadError)
        got = b""
        with pytest.raises(BackendUnavailable):
            async with store.open("x") as reader:
                async for chunk in reader:
                    got += chunk
        assert ALPHABET[:10].startswith(got)


async def test_a_chunked_range_that_ends_early_raises(server: WebServer) -> None:
    """No Content-Length to hold the server to: the driver counts against Content-Range."""

    async def short(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=206, headers={"Content-Range": "bytes 10-19/104"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(ALPHABET[10:15])
        await resp.write_eof()
        return resp

    server.routes["/data/short"] = short
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        with pytest.raises(BackendUnavailable) as err:
            await store.read("short", offset=10, length=10)
        assert "ended after 5 of 10 bytes" in str(err.value)


async def test_a_chunked_whole_object_has_unknown_size(server: WebServer) -> None:
    """Without Content-Length the reader's size is -1 and every byte is yielded."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(ALPHABET), 10):
            await resp.write(ALPHABET[i : i + 10])
        await resp.write_eof()
        return resp

    server.routes["/data/chunked"] = chunked
    async with (
        http_store(server.base_url, probe_path="hello.txt") as store,
        store.open("chunked") as reader,
    ):
        assert reader.size == -1
        assert await reader.read() == ALPHABET


async def test_headers_trickled_byte_by_byte_time_out(raw_server: StartRaw) -> None:
    """Slow loris: a status line and headers sent one byte every 20 ms never complete the
    answer within read_timeout: OperationTimeout, in bounded time."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"a" * 10_000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)

    srv = await raw_server(handler)
    opts = {"connect_timeout": 0.2, "read_timeout": 0.3}
    async with http_store(srv.base_url, {"initial": False}, **opts) as store:
        started = time.monotonic()
        with anyio.fail_after(3), pytest.raises(OperationTimeout) as err:
            await store.read("x")
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, elapsed
        assert isinstance(err.value.__cause__, TimeoutError)
        assert store.capabilities == store.configured_capabilities  # a timeout proves nothing


async def test_a_stalled_body_times_out(server: WebServer) -> None:
    """Headers, a few bytes, then silence: OperationTimeout after read_timeout."""

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "104"})
        await resp.prepare(request)
        await resp.write(ALPHABET[:4])
        await asyncio.sleep(30)
        return resp

    server.routes["/data/stall"] = stall
    async with http_store(server.base_url, probe_path="hello.txt", read_timeout=0.3) as store:
        started = time.monotonic()
        with anyio.fail_after(3), pytest.raises(OperationTimeout):
            await store.read("stall")
        assert time.monotonic() - started < 1.5
        got = b""
        with anyio.fail_after(3), pytest.raises(OperationTimeout):
            async with store.open("stall") as reader:
                async for chunk in reader:
                    got += chunk
        assert got == ALPHABET[:4]
        assert await store.read("hello.txt") == HELLO


async def test_garbage_instead_of_http_is_a_store_error(raw_server: StartRaw) -> None:
    """A peer that does not speak HTTP: a StoreError chained to aiohttp's, never aiohttp's."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    srv = await raw_server(handler)
    async with http_store(srv.base_url, {"initial": False}) as store:
        with pytest.raises(StoreError) as err:
            await store.read("x")
        assert isinstance(err.value.__cause__, aiohttp.ClientError)
