"""Network faults between the azure driver and Azurite, through tests/support/faultproxy.py:
resets, 503 ServerBusy, a black hole, latency, and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

import pytest

from aiostore import (
    BackendUnavailable,
    Capability,
    ChecksumMismatch,
    OperationTimeout,
    Store,
    StoreAddDisabled,
    StoreManager,
)
from aiostore.drivers.azure import _session
from aiostore.testing import wait_for_capability
from tests.support.faultproxy import FaultProxy

from .conftest import ACCOUNT, BLOCK, BlobServiceClient, ConfigFactory, blobs

SMALL = os.urandom(4096)
#: Probes only when a test calls ``store.probe()``; verdicts act at once.
MANUAL_PROBE = {
    "enabled": False,
    "timeout": 5.0,
    "failures_to_revoke": 1,
    "successes_to_restore": 1,
}
#: Fast probes with the default hysteresis (2 failures to revoke, 2 successes to restore).
FAST_PROBE = {"interval": 0.2, "timeout": 2.0, "failures_to_revoke": 2, "successes_to_restore": 2}


@pytest.fixture
def via_proxy(azure_config: ConfigFactory, proxy: FaultProxy) -> ConfigFactory:
    def make(**options: object) -> dict[str, object]:
        options.setdefault("probe", dict(MANUAL_PROBE))
        return azure_config(
            account_url=f"{proxy.url}/{ACCOUNT}",
            max_attempts=3,
            read_timeout=0.5,
            connect_timeout=1.0,
            **options,
        )

    return make


@pytest.fixture
async def faulty(via_proxy: ConfigFactory) -> AsyncIterator[Store]:
    async with StoreManager(via_proxy()) as manager:
        store = manager["azure"]
        await store.put("small", SMALL)
        yield store


async def test_503_is_retried_within_one_budget(faulty: Store, proxy: FaultProxy) -> None:
    """Two 503s, then success: the put and the read succeed, nothing revoked. Persistent 503s:
    exactly max_attempts requests, then BackendUnavailable that revokes WRITE_ACCESS."""
    proxy.set_mode("503", requests=2)
    await faulty.put("k", SMALL)
    assert proxy.counts["503"] == 2
    proxy.set_mode("503", requests=2)
    assert await faulty.read("k") == SMALL
    assert faulty.health.healthy
    proxy.set_mode("503")
    before = proxy.counts["503"]
    with pytest.raises(BackendUnavailable) as info:
        await faulty.put("other", SMALL)
    assert proxy.counts["503"] - before == 3
    assert "503" in str(info.value)
    assert Capability.WRITE_ACCESS not in faulty.capabilities
    with pytest.raises(StoreAddDisabled):
        await faulty.put("other", SMALL)
    proxy.pass_through()
    assert (await faulty.probe()).healthy
    await faulty.put("other", SMALL)


async def test_reset_revokes_within_the_probe_settings_and_pass_restores(
    via_proxy: ConfigFactory, proxy: FaultProxy
) -> None:
    """Every connection reset: the probes (every 0.2 s, 2 failures) revoke read and write
    access within a few seconds; a put then fails at once with StoreAddDisabled; once traffic
    passes again two good probes restore everything."""
    async with StoreManager(via_proxy(probe=dict(FAST_PROBE))) as manager:
        store = manager["azure"]
        await store.put("k", SMALL)
        proxy.set_mode("reset")
        started = time.monotonic()
        await wait_for_capability(store, Capability.READ_ACCESS, present=False, timeout=10)
        await wait_for_capability(store, Capability.WRITE_ACCESS, present=False, timeout=10)
        assert time.monotonic() - started < 10
        started = time.monotonic()
        with pytest.raises(StoreAddDisabled) as info:
            await store.put("during", SMALL)
        assert time.monotonic() - started < 0.5
        assert info.value.transient
        proxy.pass_through()
        await wait_for_capability(store, Capability.RW_ACCESS | Capability.READ_RANDOM, timeout=10)
        assert store.health.healthy
        await store.put("after", SMALL)
        assert await store.read("k") == SMALL


async def test_put_during_an_outage_fails_fast_and_typed(faulty: Store, proxy: FaultProxy) -> None:
    """Before any probe noticed: a put against resets fails within its retries with
    BackendUnavailable (WRITE_ACCESS revoked); a read likewise revokes READ_ACCESS."""
    proxy.set_mode("reset")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await faulty.put("k", SMALL)
    assert time.monotonic() - started < 5
    assert Capability.WRITE_ACCESS not in faulty.capabilities
    with pytest.raises(BackendUnavailable):
        await faulty.read("small")
    assert Capability.READ_ACCESS not in faulty.capabilities
    proxy.pass_through()
    assert (await faulty.probe()).healthy
    assert await faulty.read("small") == SMALL


async def test_black_hole_times_out(faulty: Store, proxy: FaultProxy) -> None:
    """No answer at all: OperationTimeout after read_timeout per attempt, READ_ACCESS revoked."""
    proxy.set_mode("blackhole")
    started = time.monotonic()
    with pytest.raises((OperationTimeout, BackendUnavailable)):
        await faulty.stat("small")
    assert time.monotonic() - started < 10
    assert Capability.READ_ACCESS not in faulty.capabilities
    proxy.pass_through()
    assert (await faulty.probe()).healthy


async def test_timeout_while_the_final_request_is_held(faulty: Store, proxy: FaultProxy) -> None:
    """A put whose input is being consumed when the timeout fires commits nothing. Once its
    final request is on the wire, a cancellation waits for the answer: the object is then
    stored whole, never later and never torn."""

    async def slow() -> AsyncIterator[bytes]:
        yield SMALL
        await asyncio.sleep(3600)
        yield SMALL

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await faulty.put("slow", slow())
    proxy.set_mode("latency", seconds=0.4)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await faulty.put("held", SMALL)
    assert time.monotonic() - started >= 0.3  # waited for the commit's answer
    proxy.pass_through()
    assert await faulty.read("held") == SMALL
    assert not await faulty.exists("slow")


async def test_degraded_latency_revokes_read_random(
    via_proxy: ConfigFactory, proxy: FaultProxy
) -> None:
    """A probe slower than degraded_latency revokes READ_RANDOM only."""
    async with StoreManager(via_proxy(degraded_latency=0.2)) as manager:
        store = manager["azure"]
        proxy.set_mode("latency", seconds=0.1)
        report = await store.probe()
        assert Capability.READ_RANDOM not in store.capabilities, report
        assert Capability.RW_ACCESS in store.capabilities
        assert "degraded" in str(report)
        proxy.pass_through()
        assert (await store.probe()).healthy


async def test_read_resumes_after_a_reset_on_the_same_version(
    faulty: Store, proxy: FaultProxy, admin: BlobServiceClient, container: str
) -> None:
    """A connection reset mid-read resumes from where it broke (exact bytes); when the blob
    was replaced in between, the resumed range is refused (If-Match): ChecksumMismatch."""
    data = os.urandom(3 * _session.READ_CHUNK)
    await faulty.put("big", data)
    for replace in (False, True):
        got = bytearray()
        with pytest.raises(ChecksumMismatch) if replace else contextlib.nullcontext():
            async with faulty.open("big") as reader:
                got += await reader.__anext__()
                if replace:
                    admin.get_blob_client(container, "big").upload_blob(b"new", overwrite=True)
                proxy.set_mode("reset", requests=1)
                async for chunk in reader:
                    got += chunk
        if not replace:
            assert bytes(got) == data
            assert proxy.counts["reset"] == 1


@pytest.mark.parametrize("cancels", [1, 3])
async def test_cancel_while_blocks_are_in_flight(
    faulty: Store, proxy: FaultProxy, admin: BlobServiceClient, container: str, cancels: int
) -> None:
    """Cancelled while staged blocks are on a slow wire: the put returns at once (the block
    requests are abandoned, not awaited), and nothing is committed then or later."""
    data = os.urandom(4 * BLOCK)
    proxy.set_mode("latency", seconds=0.5)
    task = asyncio.create_task(faulty.put("slow", data))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.3
    proxy.pass_through()
    await asyncio.sleep(1.0)  # any request still held by the proxy has gone through by now
    assert "slow" not in blobs(admin, container)
    assert not await faulty.exists("slow")
