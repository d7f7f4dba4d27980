"""The fault proxy itself (tests/support/faultproxy.py), against a small aiohttp server that keeps
connections alive (moto closes every connection after one request)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.support.faultproxy import Fault, FaultProxy


@pytest.fixture
async def echo_proxy() -> AsyncIterator[FaultProxy]:
    """A proxy in front of an aiohttp server answering ``len:<body length>``; big GETs stream."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/big":
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(64):
                await resp.write(b"x" * 65536)
                await asyncio.sleep(0.005)
            await resp.write_eof()
            return resp
        body = await request.read()
        return web.Response(text=f"len:{len(body)}")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with FaultProxy("127.0.0.1", port) as proxy:
            yield proxy
    finally:
        await runner.cleanup()


async def test_pass_keeps_connections_alive_and_frames_bodies(echo_proxy: FaultProxy) -> None:
    """Requests with fixed and chunked bodies pass unchanged over one kept-alive connection."""

    async def chunked() -> AsyncIterator[bytes]:
        for n in (1, 1000, 70000):
            yield b"c" * n

    async with aiohttp.ClientSession(echo_proxy.url) as http:
        for body in (b"", b"abc", b"z" * 300_000):
            async with http.post("/p", data=body) as r:
                assert await r.text() == f"len:{len(body)}"
        async with http.post("/p", data=chunked()) as r:
            assert await r.text() == "len:71001"
    assert echo_proxy.requests == 4
    assert len(echo_proxy.connections) == 1
    assert echo_proxy.counts["pass"] == 4


async def test_503_for_n_requests_then_pass(echo_proxy: FaultProxy) -> None:
    """``503`` answers an S3-style SlowDown error (the body is read and dropped, the connection
    stays usable) for the next N requests only."""
    echo_proxy.set_mode("503", requests=2)
    async with aiohttp.ClientSession(echo_proxy.url) as http:
        for _ in range(2):
            async with http.put("/k", data=b"q" * 100_000) as r:
                assert r.status == 503
                text = await r.text()
                assert "<Code>SlowDown</Code>" in text
        async with http.head("/k") as r:
            assert r.status == 200
        async with http.put("/k", data=b"q") as r:
            assert await r.text() == "len:1"
    assert echo_proxy.counts["503"] == 2
    assert len(echo_proxy.connections) == 1


async def test_503_with_expect_continue_closes(echo_proxy: FaultProxy) -> None:
    """With ``Expect: 100-continue`` the body is never sent; the reply closes the connection."""
    echo_proxy.set_mode("503")
    async with aiohttp.ClientSession(echo_proxy.url) as http:
        async with http.put("/k", data=b"q" * 1000, expect100=True) as r:
            assert r.status == 503
        echo_proxy.pass_through()
        async with http.put("/k", data=b"q" * 1000, expect100=True) as r:
            assert await r.text() == "len:1000"


async def test_reset_blackhole_latency(echo_proxy: FaultProxy) -> None:
    """reset aborts, blackhole never answers, latency delays; all switchable live."""
    timeout = aiohttp.ClientTimeout(sock_read=0.3)
    async with aiohttp.ClientSession(echo_proxy.url, timeout=timeout) as http:
        async with http.get("/a") as r:
            await r.read()
        echo_proxy.set_mode("reset")
        with pytest.raises(aiohttp.ClientError):
            async with http.get("/a") as r:
                await r.read()
        echo_proxy.set_mode("blackhole")
        with pytest.raises(asyncio.TimeoutError):
            async with http.get("/a") as r:
                await r.read()
        echo_proxy.set_mode("latency", seconds=0.2)
        started = time.monotonic()
        async with http.get("/a") as r:
            await r.read()
        assert time.monotonic() - started >= 0.2
        echo_proxy.pass_through()
        async with http.get("/a") as r:
            assert await r.text() == "len:0"
    # aiohttp retries an idempotent request once by itself after a reset.
    assert echo_proxy.counts["reset"] in (1, 2) and echo_proxy.counts["blackhole"] == 1


async def test_persistent_modes_act_on_streaming_responses(echo_proxy: FaultProxy) -> None:
    """A response already streaming stalls under ``blackhole`` (and resumes after), and is cut
    by ``reset``; a per-connection mode affects only its connection."""
    async with aiohttp.ClientSession(echo_proxy.url) as http:
        async with http.get("/big") as r:
            await r.content.readexactly(65536)
            echo_proxy.set_mode("blackhole")
            with pytest.raises(asyncio.TimeoutError):
                async with asyncio.timeout(0.5):
                    await r.content.read()
            echo_proxy.pass_through()
            rest = await r.content.read()
            assert 65536 + len(rest) == 64 * 65536
        async with http.get("/big") as r:
            await r.content.readexactly(65536)
            (conn,) = [c for c in echo_proxy.connections if not c.closed]
            conn.mode = Fault("reset")
            with pytest.raises(aiohttp.ClientError):
                await r.content.read()
        async with http.get("/a") as r:
            assert await r.text() == "len:0"


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault("sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault("latency", -1)
