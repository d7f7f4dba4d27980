"""changes(): one event per change to every subscriber, weakly held, bounded buffers."""

from __future__ import annotations

import asyncio
import gc
import json
import time

from aiostore import Capability as C
from aiostore import CapabilityChange, Store, StoreManager
from aiostore.capabilities.state import DEFAULT_BUFFER, ChangeHub

from .support import ALL, FakeDriver, fake_store

FLIP = {"enabled": False, "failures_to_revoke": 1, "successes_to_restore": 1}


def _manager(*names: str) -> StoreManager:
    return StoreManager({"probe": FLIP, "stores": {n: fake_store() for n in names}})


async def _flip(store: Store) -> None:
    """One probe that changes the store's capabilities (revokes or restores WRITE_ACCESS)."""
    driver = store.driver
    assert isinstance(driver, FakeDriver)
    if C.WRITE_ACCESS in store.capabilities:
        driver.unhealthy[C.WRITE_ACCESS] = "flip"
    else:
        driver.unhealthy.clear()
    await store.probe()


async def test_one_event_per_change_to_every_subscriber() -> None:
    async with _manager("a", "b") as manager:
        a, b = manager["a"], manager["b"]
        subs = [a.changes() for _ in range(3)]
        everything = manager.changes()
        other = b.changes()
        for _ in range(5):
            await _flip(a)
        await a.probe()  # no change: no event
        await _flip(b)
        for sub in subs:
            got = [sub.get_nowait() for _ in range(5)]
            assert sub.get_nowait() is None
            assert [ch.store for ch in got if ch] == ["a"] * 5
            assert [(ch.old, ch.new) for ch in got if ch] == [
                (ALL, ALL.revoke(C.WRITE_ACCESS)),
                (ALL.revoke(C.WRITE_ACCESS), ALL),
            ] * 2 + [(ALL, ALL.revoke(C.WRITE_ACCESS))]
        assert subs[0].pending() == 0
        all_events = [everything.get_nowait() for _ in range(6)]
        assert everything.get_nowait() is None
        assert [ch.store for ch in all_events if ch] == ["a"] * 5 + ["b"]
        assert other.pending() == 1
        first = all_events[0]
        assert first is not None
        assert "WRITE_ACCESS revoked: flip" in first.reason
        assert first.revoked == C.WRITE_RANDOM and first.restored == C.NONE
        assert abs(first.at - time.time()) < 5
        json.dumps(first.to_dict())
        assert first.to_dict()["revoked"] == [
            "WRITE_ACCESS",
            "WRITE_OFFSET",
            "WRITE_CHUNK",
            "WRITE_RANDOM",
        ]


async def test_async_iteration_wakes_waiting_subscribers() -> None:
    async with _manager("a") as manager:
        store = manager["a"]
        received: list[list[CapabilityChange]] = [[], []]

        async def consume(i: int, n: int) -> None:
            async for change in store.changes() if i == 0 else manager.changes():
                received[i].append(change)
                if len(received[i]) == n:
                    return

        tasks = [asyncio.ensure_future(consume(i, 3)) for i in range(2)]
        await asyncio.sleep(0)
        for _ in range(3):
            await _flip(store)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        assert received[0] == received[1]
        assert len(received[0]) == 3


async def test_close_ends_a_pending_iteration() -> None:
    async with _manager("a") as manager:
        sub = manager["a"].changes()

        async def consume() -> list[CapabilityChange]:
            return [c async for c in sub]

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.01)
        assert not task.done()
        sub.close()
        assert await asyncio.wait_for(task, 1) == []
        assert len(manager["a"]._state.hub) == 0


async def test_abandoned_subscriber_is_forgotten() -> None:
    async with _manager("a") as manager:
        store = manager["a"]
        hub = store._state.hub
        keep = store.changes()
        drop = [store.changes() for _ in range(10)]
        mgr_sub = manager.changes()
        assert len(hub) == 11
        assert len(manager._hub) == 1
        del drop, mgr_sub
        gc.collect()
        assert len(hub) == 1
        assert len(manager._hub) == 0
        # a subscriber abandoned while a task was waiting on it
        waiting = store.changes()
        task = asyncio.ensure_future(waiting.__anext__())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
        del waiting, task
        gc.collect()
        assert len(hub) == 1
        await _flip(store)
        assert keep.pending() == 1


async def test_slow_subscriber_is_bounded_and_never_blocks_the_producer() -> None:
    async with _manager("a") as manager:
        store = manager["a"]
        slow = store.changes()
        fast_seen = 0
        fast = store.changes()
        n = DEFAULT_BUFFER + 100
        started = time.monotonic()
        for _ in range(n):
            await _flip(store)
            while fast.get_nowait() is not None:
                fast_seen += 1
        elapsed = time.monotonic() - started
        assert fast_seen == n
        assert slow.pending() == DEFAULT_BUFFER
        assert slow.dropped == n - DEFAULT_BUFFER
        assert fast.dropped == 0
        assert elapsed < 5
        # the oldest were dropped: what is left are the newest, in order
        left = [slow.get_nowait() for _ in range(DEFAULT_BUFFER)]
        assert all(c is not None for c in left)
        versions = [c.at for c in left if c is not None]
        assert versions == sorted(versions)
        assert store._state.snapshot.version == n


def test_hub_with_small_buffers() -> None:
    hub = ChangeHub()
    small = hub.subscribe(maxlen=2)
    big = hub.subscribe(maxlen=10)
    for i in range(5):
        hub.publish(CapabilityChange("s", C.NONE, C.READ_ACCESS, str(i)))
    assert [small.get_nowait().reason for _ in range(2)] == ["3", "4"]  # type: ignore[union-attr]
    assert small.dropped == 3
    assert big.pending() == 5 and big.dropped == 0
    hub.close()
    assert len(hub) == 0


async def test_wait_for_and_wait_healthy() -> None:
    async with _manager("a") as manager:
        store = manager["a"]
        waiter = asyncio.ensure_future(store.wait_for(C.WRITE_ACCESS, present=False))
        healthy = asyncio.ensure_future(store.wait_healthy())
        await asyncio.sleep(0.01)
        assert healthy.done()  # already healthy
        assert not waiter.done()
        await _flip(store)
        await asyncio.wait_for(waiter, 1)
        healthy = asyncio.ensure_future(store.wait_healthy())
        await asyncio.sleep(0.01)
        assert not healthy.done()
        await _flip(store)
        await asyncio.wait_for(healthy, 1)
        assert len(store._state.hub) == 0, "the waits unsubscribed"
