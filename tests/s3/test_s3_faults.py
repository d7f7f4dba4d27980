"""Network faults between the driver and a real S3 server, through tests/support/faultproxy.py:
503 SlowDown, connection resets, a black hole, added latency, a server that is not there."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest

from aiostore import (
    BackendUnavailable,
    Capability,
    OperationTimeout,
    Store,
    StoreAddDisabled,
    StoreGetNotSupported,
    StoreManager,
    StoreRandomGetNotSupported,
)
from tests.support.faultproxy import Fault, FaultProxy, ProxyConnection

from .conftest import PART, ConfigFactory

#: Probes only when a test calls ``store.probe()``; verdicts act at once.
MANUAL_PROBE = {
    "enabled": False,
    "timeout": 5.0,
    "failures_to_revoke": 1,
    "successes_to_restore": 1,
}
SMALL = os.urandom(4096)


@pytest.fixture
async def faulty(s3_config: ConfigFactory, proxy: FaultProxy) -> AsyncIterator[Store]:
    """An s3 store whose endpoint is the fault proxy; 3 attempts, short timeouts."""
    config = s3_config(
        endpoint_url=proxy.url,
        max_attempts=3,
        read_timeout=0.5,
        connect_timeout=1.0,
        degraded_latency=0.5,
        probe=dict(MANUAL_PROBE),
    )
    async with StoreManager(config) as manager:
        store = manager["s3"]
        await store.put("small", SMALL)
        yield store


def healthy(store: Store) -> bool:
    return store.capabilities == store.configured_capabilities


async def test_503_is_retried(faulty: Store, proxy: FaultProxy) -> None:
    """Two 503 SlowDown answers, then success: the put and the read succeed, nothing revoked."""
    proxy.set_mode("503", requests=2)
    await faulty.put("k", SMALL)
    assert proxy.counts["503"] == 2
    proxy.set_mode("503", requests=2)
    assert await faulty.read("k") == SMALL
    assert proxy.counts["503"] == 4
    assert healthy(faulty)


async def test_persistent_503_revokes_then_probes_restore(faulty: Store, proxy: FaultProxy) -> None:
    """503 on every attempt: BackendUnavailable after max_attempts, WRITE_ACCESS revoked by a
    failed put (READ_ACCESS kept), READ_ACCESS by a failed read; restored by a healthy probe."""
    proxy.set_mode("503")
    before = proxy.counts["503"]
    with pytest.raises(BackendUnavailable) as info:
        await faulty.put("k", SMALL)
    assert proxy.counts["503"] - before == 3
    assert "SlowDown" in str(info.value) and "after 3 attempts" in str(info.value)
    assert Capability.WRITE_ACCESS not in faulty.capabilities
    assert Capability.READ_RANDOM in faulty.capabilities
    with pytest.raises(StoreAddDisabled) as denied:
        await faulty.put("k", SMALL)
    assert denied.value.transient
    with pytest.raises(BackendUnavailable):
        await faulty.read("small")
    assert Capability.READ_ACCESS not in faulty.capabilities
    with pytest.raises(StoreGetNotSupported):
        await faulty.stat("small")
    report = await faulty.probe()
    assert not report.healthy
    proxy.pass_through()
    report = await faulty.probe()
    assert report.healthy, report
    await faulty.put("k", SMALL)
    assert await faulty.read("k") == SMALL


async def test_without_probe_write_writes_come_back_too(
    s3_config: ConfigFactory, proxy: FaultProxy
) -> None:
    """With ``probe_write = false`` a WRITE_ACCESS revoked by a failed put is restored once the
    bucket answers again (the probe then follows HeadBucket)."""
    config = s3_config(endpoint_url=proxy.url, probe_write=False, probe=dict(MANUAL_PROBE))
    async with StoreManager(config) as manager:
        store = manager["s3"]
        proxy.set_mode("503")
        with pytest.raises(BackendUnavailable):
            await store.put("k", SMALL)
        assert Capability.WRITE_ACCESS not in store.capabilities
        assert not (await store.probe()).healthy
        proxy.pass_through()
        puts = proxy.counts["pass"]
        assert (await store.probe()).healthy
        assert proxy.counts["pass"] - puts == 1  # one HeadBucket, nothing written
        await store.put("k", SMALL)


async def test_reset_is_retried(faulty: Store, proxy: FaultProxy) -> None:
    """One connection reset per operation is absorbed by the retries."""
    proxy.set_mode("reset", requests=1)
    await faulty.put("k", SMALL)
    proxy.set_mode("reset", requests=1)
    assert await faulty.read("k") == SMALL
    assert proxy.counts["reset"] == 2
    assert healthy(faulty)


async def test_persistent_reset_is_backend_unavailable(faulty: Store, proxy: FaultProxy) -> None:
    """Every connection reset: BackendUnavailable (chained, no vendor error escapes), revoked."""
    proxy.set_mode("reset")
    with pytest.raises(BackendUnavailable) as info:
        await faulty.put("k", SMALL)
    assert info.value.__cause__ is not None
    assert "attempts" in str(info.value)
    assert Capability.WRITE_ACCESS not in faulty.capabilities
    proxy.pass_through()
    assert (await faulty.probe()).healthy


async def test_black_hole_times_out(faulty: Store, proxy: FaultProxy) -> None:
    """A server that never answers: OperationTimeout after the read timeouts, READ revoked."""
    proxy.set_mode("blackhole")
    started = time.monotonic()
    with pytest.raises(OperationTimeout) as info:
        await faulty.read("small")
    elapsed = time.monotonic() - started
    assert 3 * 0.5 <= elapsed < 10, elapsed
    assert "read_timeout=0.5" in str(info.value)
    assert Capability.READ_ACCESS not in faulty.capabilities
    proxy.pass_through()
    assert (await faulty.probe()).healthy
    assert await faulty.read("small") == SMALL


def streaming_get(proxy: FaultProxy) -> ProxyConnection:
    """The proxy connection carrying the open GET."""
    (conn,) = [c for c in proxy.connections if c.last_request.startswith(b"GET ") and not c.closed]
    return conn


async def test_reset_mid_body_resumes_where_it_broke(faulty: Store, proxy: FaultProxy) -> None:
    """The connection of a streaming body is reset (a per-connection fault): the reader resumes
    with a ranged GET pinned to the ETag, on a new connection, and yields exactly the object."""
    data = os.urandom(3 * PART + 123)
    await faulty.put("big", data)
    requests = proxy.requests
    async with faulty.open("big", offset=7) as reader:
        first = await reader.__anext__()
        broken = streaming_get(proxy)
        broken.mode = Fault("reset")
        rest = [c async for c in reader]
    assert first + b"".join(rest) == data[7:]
    assert broken.closed
    assert proxy.requests - requests == 2  # the GET and its resumption
    assert proxy.connections[-1].mode is None
    assert healthy(faulty)


async def test_black_hole_mid_body_times_out(faulty: Store, proxy: FaultProxy) -> None:
    """A body that stops flowing ends in OperationTimeout, not a hang."""
    await faulty.put("big", os.urandom(3 * PART))
    async with faulty.open("big") as reader:
        await reader.__anext__()
        proxy.set_mode("blackhole")
        with pytest.raises(OperationTimeout):
            async with asyncio.timeout(10):
                async for _ in reader:
                    pass


async def test_latency_revokes_random_reads_only(faulty: Store, proxy: FaultProxy) -> None:
    """A slow backend (probe above degraded_latency) loses READ_RANDOM, keeps whole reads and
    writes, and gets READ_RANDOM back when it is fast again."""
    await faulty.probe()  # takes the fixture's put as proof: the next probe writes again
    proxy.set_mode("latency", seconds=0.2)  # the probe makes four requests: 0.8 s
    await faulty.probe()
    assert Capability.READ_OFFSET not in faulty.capabilities
    assert Capability.READ_ACCESS in faulty.capabilities
    assert Capability.WRITE_ACCESS in faulty.capabilities
    reason = faulty.health.capabilities["READ_RANDOM"].reason
    assert reason.startswith("degraded: probe took ") and reason.endswith(" s > 0.5 s"), reason
    with pytest.raises(StoreRandomGetNotSupported) as info:
        await faulty.read("small", offset=1)
    assert info.value.transient
    assert await faulty.read("small") == SMALL
    proxy.pass_through()
    await faulty.probe()
    assert healthy(faulty)
    assert await faulty.read("small", offset=1, length=2) == SMALL[1:3]


async def test_reader_closed_early_drops_its_connection(faulty: Store, proxy: FaultProxy) -> None:
    """Leaving a large body unread closes its connection (it cannot go back to the pool)."""
    await faulty.put("big", os.urandom(3 * PART))
    async with faulty.open("big") as reader:
        await reader.__anext__()
        (conn,) = [
            c for c in proxy.connections if c.last_request.startswith(b"GET ") and not c.closed
        ]
    for _ in range(100):
        if conn.closed:
            break
        await asyncio.sleep(0.01)
    assert conn.closed
    assert await faulty.read("small") == SMALL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_server_not_there(s3_config: ConfigFactory) -> None:
    """Connection refused: the manager still starts; the start-up probe revokes reading and
    writing; an operation fails with BackendUnavailable naming the endpoint."""
    url = f"http://127.0.0.1:{_free_port()}"
    config = s3_config(endpoint_url=url, max_attempts=2, probe={"interval": 3600.0})
    async with StoreManager(config) as manager:
        store = manager["s3"]
        assert Capability.READ_ACCESS not in store.capabilities
        assert Capability.WRITE_ACCESS not in store.capabilities
        assert "cannot connect" in store.health.capabilities["READ_ACCESS"].reason
        async with manager.session("s3") as session:
            with pytest.raises(BackendUnavailable) as info:
                await session.stat("k")
        assert url in str(info.value)


async def test_missing_bucket(s3_config: ConfigFactory) -> None:
    """A bucket that does not exist: the start-up probe says so and revokes everything."""
    config = s3_config(bucket="no-such-bucket-here", probe={"interval": 3600.0})
    async with StoreManager(config) as manager:
        store = manager["s3"]
        assert store.capabilities & Capability.RW_ACCESS == Capability.NONE
        assert "does not exist" in store.health.capabilities["READ_ACCESS"].reason
        assert "does not exist" in store.health.capabilities["WRITE_ACCESS"].reason
