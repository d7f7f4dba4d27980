"""The gcs driver's process-wide name guard (the create-only fallback): one holder per name at
a time across event loops and threads; cancelled waiters leave no trace."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aiostore.drivers.gcs._guard import NameGuard


def test_one_holder_per_name_across_loops_and_threads() -> None:
    guard = NameGuard()
    lock = threading.Lock()
    holders = {"k": 0, "other": 0}
    most = {"k": 0, "other": 0}

    async def hold(name: str) -> None:
        async with guard.hold(name):
            with lock:
                holders[name] += 1
                most[name] = max(most[name], holders[name])
            await asyncio.sleep(0.002)
            with lock:
                holders[name] -= 1

    async def many() -> None:
        await asyncio.gather(*(hold(n) for _ in range(20) for n in ("k", "other")))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a waiter was never woken"
    assert most == {"k": 1, "other": 1}
    assert guard.held() == 0


async def test_cancelled_waiters_leave_no_trace() -> None:
    guard = NameGuard()
    release = asyncio.Event()

    async def owner() -> None:
        async with guard.hold("k"):
            await release.wait()

    first = asyncio.create_task(owner())
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(owner()) for _ in range(3)]
    await asyncio.sleep(0.01)
    for w in waiters:
        w.cancel()
    for w in waiters:
        with pytest.raises(asyncio.CancelledError):
            await w
    release.set()
    await first
    assert guard.held() == 0
    async with asyncio.timeout(1), guard.hold("k"):
        pass
