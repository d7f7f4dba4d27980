"""Faults toggled every few probe intervals while load runs: no acknowledged write is lost,
capability changes follow the fault timeline, memory stays flat."""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc

import pytest

import aiostore
from aiostore import (
    Capability,
    CapabilityChange,
    StorageWriteDenied,
    StoreAddDisabled,
    StoreDeleteNotSupported,
)

from .model import Model, payload

INTERVAL = 0.02


def _library_bytes() -> int:
    """Bytes allocated by aiostore itself (not the test's bookkeeping, not stored objects).

    The key check's cache (for keys off its fast path; bounded) is emptied first: every write
    here uses a new key, so it would fill up during the run by design.
    """
    aiostore._keys._explain.cache_clear()
    snap = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(True, "*/aiostore/*"),
            tracemalloc.Filter(False, "*/aiostore/drivers/memory.py"),
            tracemalloc.Filter(False, "*/tests/*"),
        ]
    )
    return sum(stat.size for stat in snap.statistics("filename"))


async def _flap(duration: float) -> dict[str, float]:
    config = {
        "probe": {
            "interval": INTERVAL,
            "timeout": 0.5,
            "failures_to_revoke": 2,
            "successes_to_restore": 2,
        },
        "stores": {"m": {"driver": "memory"}},
    }
    model = Model()
    timeline: list[tuple[float, bool]] = []  # (time, fault on?)
    changes: list[CapabilityChange] = []
    refused = 0
    async with aiostore.StoreManager(config) as manager:
        store = manager["m"]
        sub = store.changes()
        stop = asyncio.Event()

        async def toggler() -> None:
            on = False
            while not stop.is_set():
                await asyncio.sleep(INTERVAL * 6)
                on = not on
                store.faults.read_only = on
                timeline.append((time.time(), on))
            store.faults.read_only = False
            timeline.append((time.time(), False))

        async def writer(n: int) -> None:
            nonlocal refused
            i = 0
            while not stop.is_set():
                key = f"w{n}/{i}"
                model.start(key, i, 2000)
                try:
                    await store.put(key, payload(key, i, 2000))
                except (StoreAddDisabled, StorageWriteDenied):
                    model.fail(key, i)
                    refused += 1
                else:
                    model.ack(key, i)
                i += 1
                await asyncio.sleep(0.002)
                # keep memory flat: delete what we verified
                if i % 50 == 0:
                    for j in range(i - 50, i):
                        k = f"w{n}/{j}"
                        if j in model.acked.get(k, set()):
                            model.check_whole(k, await store.read(k), final=True)
                            try:
                                await store.delete(k)
                            except (StoreDeleteNotSupported, StorageWriteDenied):
                                continue  # a fault period: keep it, it is checked at the end
                            del model.started[k]
                            model.acked.pop(k, None)

        async def collect() -> None:
            async for change in sub:
                changes.append(change)

        tracemalloc.start()
        collector = asyncio.create_task(collect())
        tasks = [asyncio.create_task(writer(n)) for n in range(8)]
        tasks.append(asyncio.create_task(toggler()))
        await asyncio.sleep(duration / 2)
        mid = _library_bytes()
        await asyncio.sleep(duration / 2)
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.wait_for(store.wait_healthy(), 2)
        end = _library_bytes()
        tracemalloc.stop()
        collector.cancel()
        # every acknowledged write still present and whole
        for key, versions in model.acked.items():
            for v in versions:
                model.check_whole(key, await store.read(key), final=True)
                assert v in model.acked[key]
    assert model.violations == []
    revokes = [c for c in changes if Capability.WRITE_ACCESS in c.revoked]
    restores = [c for c in changes if Capability.WRITE_ACCESS in c.restored]
    faults_on = sum(1 for _, on in timeline if on)
    assert revokes and restores
    # never more revocations than fault periods (no flapping inside a period)
    assert len(revokes) <= faults_on
    for change in revokes:
        # a revocation happens while a fault is on (or within one probe of it turning off)
        state = [on for t, on in timeline if t <= change.at]
        assert state and (
            state[-1] or change.at - max(t for t, _ in timeline if t <= change.at) < 0.1
        )
    for change in restores:
        state = [on for t, on in timeline if t <= change.at]
        assert state and not state[-1], "restored while the fault was on"
    return {
        "writes_acked": float(sum(len(v) for v in model.acked.values())),
        "refused": float(refused),
        "faults": float(faults_on),
        "revokes": float(len(revokes)),
        "restores": float(len(restores)),
        "growth": float(end - mid),
        "ops": float(model.ops),
    }


async def test_fault_flapping_under_load() -> None:
    """A short flapping run (CI): ~3 s, about 12 fault periods."""
    stats = await _flap(3.0)
    assert stats["growth"] < 200_000, stats
    print(f"\n[reliability] flapping: {stats}")


@pytest.mark.soak
async def test_fault_flapping_soak() -> None:
    """The long soak (``nox -s soak``): minutes of flapping."""
    stats = await _flap(float(os.environ.get("AIOSTORE_SOAK_SECONDS", "180")))
    assert stats["growth"] < 500_000, stats
    print(f"\n[reliability] soak: {stats}")
