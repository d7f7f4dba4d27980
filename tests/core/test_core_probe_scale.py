"""Probing at scale (issue 20): the evidence rule, a bounded and fair scheduler, spread starts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiostore import Capability, StoreManager
from aiostore.testing import FaultInjector

from .support import IN_FLIGHT, FakeDriver, fake_store

C = Capability


def _driver(manager: StoreManager, name: str) -> FakeDriver:
    driver = manager[name].driver
    assert isinstance(driver, FakeDriver)
    return driver


async def test_steady_put_traffic_runs_no_write_probes_yet_revokes_and_restores() -> None:
    interval = 0.05
    probe = {"interval": interval, "timeout": 0.5, "failures_to_revoke": 2}
    async with StoreManager({"probe": probe, "stores": {"s": fake_store()}}) as manager:
        store = manager["s"]
        driver = _driver(manager, "s")
        stop = asyncio.Event()

        async def traffic() -> None:
            i = 0
            while not stop.is_set():
                try:
                    await store.put(f"k{i}", b"x", overwrite=True)
                    await store.read(f"k{i}")
                except Exception:
                    pass
                i += 1
                await asyncio.sleep(interval / 10)

        task = asyncio.create_task(traffic())
        try:
            await asyncio.sleep(interval * 2)  # traffic is flowing
            writes0, probes0 = driver.calls["probe_write"], store.health.probes
            await asyncio.sleep(interval * 10)
            assert store.health.probes - probes0 >= 5, "probes still run on schedule"
            assert driver.calls["probe_write"] == writes0, "no write probes under put traffic"
            # The backend breaks: puts fail and revoke at once (the passive path).
            faults = FaultInjector(manager)
            broken = time.monotonic()
            handle = faults.read_only(store)
            await asyncio.wait_for(store.wait_for(C.WRITE_ACCESS, present=False), 5)
            assert time.monotonic() - broken <= interval * 2 + 0.5
            handle.undo()
            healed = time.monotonic()
            await asyncio.wait_for(store.wait_for(C.WRITE_ACCESS), 5)
            assert time.monotonic() - healed <= interval * 2 * 1.1 + 0.5 + 0.5
        finally:
            stop.set()
            await task


async def test_an_idle_store_is_probed_with_writes_on_schedule() -> None:
    probe = {"interval": 0.05, "initial": False}
    async with StoreManager({"probe": probe, "stores": {"s": fake_store()}}) as manager:
        await asyncio.sleep(0.4)
        driver = _driver(manager, "s")
        assert driver.calls["probe_write"] >= 4
        assert driver.calls["probe_write"] == driver.calls["probe"]


async def test_max_concurrent_probes_bounds_probes_in_flight() -> None:
    IN_FLIGHT[:] = [0, 0]
    stores: dict[str, Any] = {f"s{i}": fake_store() for i in range(20)}
    config = {
        "probe": {"interval": 0.05, "timeout": 1.0, "initial": False, "max_concurrent_probes": 3},
        "stores": stores,
    }
    async with StoreManager(config) as manager:
        for name in stores:
            _driver(manager, name).probe_delay = 0.03
        await asyncio.sleep(0.5)
        probed = sum(_driver(manager, n).calls["probe"] for n in stores)
    assert IN_FLIGHT[1] == 3, IN_FLIGHT
    assert probed >= 20, "every store got probed"


async def test_a_hung_probe_delays_no_other_store() -> None:
    interval = 0.1
    stores: dict[str, Any] = {f"s{i}": fake_store() for i in range(5)}
    config = {"probe": {"interval": interval, "timeout": 0.3, "initial": False}, "stores": stores}
    async with StoreManager(config) as manager:
        _driver(manager, "s0").probe_delay = 60.0  # hangs: each probe times out
        await asyncio.sleep(0.25)
        counts0 = {n: manager[n].health.probes for n in stores}
        await asyncio.sleep(1.0)
        counts = {n: manager[n].health.probes - counts0[n] for n in stores}
    for name in list(stores)[1:]:
        assert counts[name] >= 7, counts  # ~10 at 0.1 s ± 10 % jitter
    assert C.WRITE_ACCESS not in manager["s0"].capabilities or counts["s0"] <= 4


async def test_start_times_are_spread_over_the_interval() -> None:
    stores: dict[str, Any] = {f"s{i}": fake_store() for i in range(200)}
    config = {"probe": {"interval": 1.0, "initial": False}, "stores": stores}
    async with StoreManager(config) as manager:
        await asyncio.sleep(0.2)
        early = sum(1 for n in stores if manager[n].health.probes)
        await asyncio.sleep(1.0)
        later = sum(1 for n in stores if manager[n].health.probes)
    assert early <= 80, f"{early} of 200 stores probed in the first 0.2 s: a herd"
    assert later == 200


@pytest.mark.parametrize("bad", [0, -1, True, "4", 1.5])
def test_max_concurrent_probes_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(Exception, match="max_concurrent_probes"):
        StoreManager({"probe": {"max_concurrent_probes": bad}, "stores": {}})


def test_max_concurrent_probes_is_manager_wide() -> None:
    with pytest.raises(Exception, match="top-level"):
        StoreManager({"stores": {"s": fake_store(probe={"max_concurrent_probes": 2})}})
