"""Run-time discovery: Range support and reachability follow the real server, both ways."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import anyio
import pytest
from aiohttp import web

from aiostore import (
    BackendUnavailable,
    Capability,
    StoreGetNotSupported,
    StoreManager,
    StoreRandomGetNotSupported,
)
from aiostore.drivers.http import ATTEMPTS, HTTPSession

from .support import FAST_PROBE, HELLO, WebServer, http_store, store_config

READ_ACCESS = Capability.READ_ACCESS
READ_RANDOM = Capability.READ_RANDOM


async def test_range_support_is_revoked_and_restored(server: WebServer) -> None:
    """A server that starts ignoring Range loses READ_RANDOM by probing; it comes back."""
    async with http_store(server.base_url, FAST_PROBE, probe_path="hello.txt") as store:
        assert store.is_capable(READ_RANDOM)
        server.honour_range = False
        with anyio.fail_after(5):
            await store.wait_for(READ_RANDOM, present=False)
        assert READ_ACCESS in store.capabilities
        assert store.health.capabilities["READ_RANDOM"].reason == "server ignores Range"

        with pytest.raises(StoreRandomGetNotSupported) as err:
            await store.read("hello.txt", offset=1)
        assert err.value.transient is True
        assert "server ignores Range" in str(err.value)
        with pytest.raises(StoreRandomGetNotSupported):
            store.open("hello.txt", length=3)
        assert await store.read("hello.txt") == HELLO  # whole reads still work

        server.honour_range = True
        with anyio.fail_after(5):
            await store.wait_for(READ_RANDOM, present=True)
        assert await store.read("hello.txt", offset=7, length=5) == HELLO[7:12]


async def test_a_ranged_read_answered_200_is_a_passive_signal(server: WebServer) -> None:
    """No probe needed: the read that got 200 raises (no wrong bytes) and revokes at once."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert store.is_capable(READ_RANDOM)
        server.honour_range = False
        with pytest.raises(StoreRandomGetNotSupported) as err:
            await store.read("hello.txt", offset=7, length=5)
        assert err.value.transient is True
        assert err.value.revokes == READ_RANDOM
        assert err.value.store == "web"
        assert err.value.key == "hello.txt"
        assert READ_RANDOM not in store.capabilities
        assert READ_ACCESS in store.capabilities
        assert "ignores Range" in store.health.capabilities["READ_RANDOM"].reason
        # open() takes the same path.
        server.honour_range = True
        await store.probe(immediate=True)
        assert store.is_capable(READ_RANDOM)
        server.honour_range = False
        with pytest.raises(StoreRandomGetNotSupported):
            async with store.open("big.bin", offset=10):
                pass
        assert READ_RANDOM not in store.capabilities


async def test_server_down_revokes_read_access_and_back_restores_it(server: WebServer) -> None:
    """Stopped: probes revoke READ_ACCESS and reads fail fast. Restarted on the same port:
    READ_ACCESS and READ_RANDOM come back and reads work again."""
    async with http_store(server.base_url, FAST_PROBE, probe_path="hello.txt") as store:
        assert await store.read("hello.txt") == HELLO
        port = server.port
        await server.stop()
        with anyio.fail_after(5):
            await store.wait_for(READ_ACCESS, present=False)
        assert "cannot connect" in store.health.capabilities["READ_ACCESS"].reason

        started = time.monotonic()
        for call in (
            lambda: store.read("hello.txt"),
            lambda: store.stat("hello.txt"),
            lambda: store.exists("hello.txt"),
        ):
            with pytest.raises(StoreGetNotSupported) as err:
                await call()
            assert err.value.transient is True
        assert time.monotonic() - started < 0.1  # the check routine, no network

        await server.start()
        assert server.port == port
        with anyio.fail_after(5):
            await store.wait_for(READ_ACCESS, present=True)
        with anyio.fail_after(5):
            await store.wait_for(READ_RANDOM, present=True)
        assert await store.read("hello.txt", offset=7) == HELLO[7:]


async def test_connection_refused_in_an_operation_revokes_at_once(server: WebServer) -> None:
    """With no background probe: the failing read retries, then raises BackendUnavailable
    chained to aiohttp's error and revokes READ_ACCESS; later reads fail fast."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("hello.txt") == HELLO
        await server.stop()
        with pytest.raises(BackendUnavailable) as err:
            await store.read("hello.txt")
        assert isinstance(err.value.__cause__, aiohttp.ClientConnectionError)
        assert err.value.revokes == READ_ACCESS
        assert READ_ACCESS not in store.capabilities
        with pytest.raises(StoreGetNotSupported) as fast:
            await store.read("hello.txt")
        assert fast.value.transient is True


async def test_5xx_is_retried_then_revokes(server: WebServer) -> None:
    """GETs that meet 503 are retried (bounded); a server that recovers in time is fine, one
    that keeps failing raises BackendUnavailable and revokes READ_ACCESS."""
    answers = [503, 200]

    async def flaky(request: web.Request) -> web.StreamResponse:
        status = answers.pop(0) if answers else 503
        if status == 200:
            return web.Response(body=HELLO)
        return web.Response(status=status)

    server.routes["/data/flaky.txt"] = flaky
    server.routes["/data/down.txt"] = lambda request: flaky(request)
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("flaky.txt") == HELLO
        assert len(server.seen("/data/flaky.txt")) == 2
        with pytest.raises(BackendUnavailable) as err:
            await store.read("down.txt")
        assert "HTTP 503" in str(err.value)
        assert len(server.seen("/data/down.txt")) == ATTEMPTS
        assert READ_ACCESS not in store.capabilities


async def test_probe_verdicts(server: WebServer) -> None:
    """The probe's verdict per server behaviour, read straight from a driver session."""

    async def verdicts(**options: object) -> dict[Capability, tuple[bool, str]]:
        config = store_config(server.base_url, {"initial": False}, **options)
        async with StoreManager(config) as manager, manager.session("web") as session:
            assert isinstance(session, HTTPSession)
            result = await session.probe()
        return {cap: (v.healthy, v.reason) for cap, v in result.items()}

    ok = await verdicts(probe_path="hello.txt")
    assert ok == {
        READ_ACCESS: (True, "server answers (HTTP 206)"),
        READ_RANDOM: (True, "server honours Range"),
    }
    assert (await verdicts(probe_path="empty.bin"))[READ_RANDOM][0] is True  # 416
    # A probe object that does not exist proves the server is up, but not whether it honours
    # Range: READ_RANDOM is left alone.
    assert await verdicts(probe_path="nope") == {READ_ACCESS: (True, "server answers (HTTP 404)")}

    server.honour_range = False
    ignored = await verdicts(probe_path="hello.txt")
    assert ignored[READ_ACCESS][0] is True
    assert ignored[READ_RANDOM] == (False, "server ignores Range")
    server.honour_range = True

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=502)

    server.routes["/data/broken"] = broken
    bad = await verdicts(probe_path="broken")
    assert bad[READ_ACCESS][0] is False and "HTTP 502" in bad[READ_ACCESS][1]
    assert bad[READ_RANDOM][0] is False

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.15)
        return web.FileResponse(server.root / "data" / "hello.txt")

    server.routes["/data/slow.txt"] = slow
    degraded = await verdicts(probe_path="slow.txt", degraded_latency=0.05)
    assert degraded[READ_ACCESS][0] is True
    assert degraded[READ_RANDOM][0] is False
    took = re.fullmatch(
        r"degraded: the probe took ([\d.]+)s \(degraded_latency 0.05s\)", degraded[READ_RANDOM][1]
    )
    assert took is not None and float(took[1]) >= 0.15
    assert (await verdicts(probe_path="slow.txt", degraded_latency=2.0))[READ_RANDOM][0] is True

    await server.stop()
    down = await verdicts(probe_path="hello.txt")
    assert down[READ_ACCESS][0] is False and "cannot connect" in down[READ_ACCESS][1]
    assert down[READ_RANDOM][0] is False


async def test_probe_timeout_revokes_read_access(server: WebServer) -> None:
    """A probe object that never answers: READ_ACCESS is revoked with a timeout reason."""

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    server.routes["/data/hang"] = hang
    probe = {"interval": 0.05, "timeout": 0.2, "failures_to_revoke": 1}
    async with http_store(server.base_url, probe, probe_path="hang") as store:
        assert READ_ACCESS not in store.capabilities
        assert "timed out" in store.health.capabilities["READ_ACCESS"].reason


async def test_degraded_latency_revokes_only_random_reads(server: WebServer) -> None:
    """Slow probes revoke READ_RANDOM ("degraded"); whole reads stay allowed."""
    delay = {"seconds": 0.15}

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(delay["seconds"])
        return web.FileResponse(server.root / "data" / "hello.txt")

    server.routes["/data/slow.txt"] = slow
    async with http_store(
        server.base_url, FAST_PROBE, probe_path="slow.txt", degraded_latency=0.1
    ) as store:
        assert READ_RANDOM not in store.capabilities
        assert READ_ACCESS in store.capabilities
        assert store.health.capabilities["READ_RANDOM"].reason.startswith("degraded")
        assert await store.read("hello.txt") == HELLO
        delay["seconds"] = 0.0
        with anyio.fail_after(5):
            await store.wait_for(READ_RANDOM, present=True)
