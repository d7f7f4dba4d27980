"""The probe scheduler's workers: no task per probe, no timer for a probe that answers at once,
a waiting probe hands the queue on, and a probe that swallows its timeout leaves no trace."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from aiostore import Capability, StoreManager

from .support import FakeDriver, fake_store


async def test_probes_that_answer_at_once_need_no_task_each() -> None:
    """300 memory stores probed every 0.2 s for 0.6 s: ~900 probes, a handful of tasks."""
    loop = asyncio.get_running_loop()
    created: list[str] = []
    previous = loop.get_task_factory()

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any]
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop)
        created.append(task.get_name())
        return task

    config = {
        "probe": {"interval": 0.2, "initial": False},
        "stores": {f"m{i}": {"driver": "memory"} for i in range(300)},
    }
    async with StoreManager(config) as manager:
        await asyncio.sleep(0.3)
        before = sum(s.health.probes for s in manager)
        loop.set_task_factory(factory)
        try:
            await asyncio.sleep(0.6)
        finally:
            loop.set_task_factory(previous)
        probes = sum(s.health.probes for s in manager) - before
    assert probes >= 450, probes
    assert len(created) <= 5, f"{len(created)} tasks for {probes} probes: {created[:5]}"


async def test_probes_that_answer_at_once_arm_no_timer() -> None:
    """The probe timeout's timer is armed only when a probe waits: none for memory stores."""
    loop = asyncio.get_running_loop()
    far: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if when > loop.time() + 20:
            far.append(when)
        return call_at(when, callback, *args, **kwargs)

    config = {
        "probe": {"interval": 0.1, "timeout": 30.0, "initial": False},
        "stores": {f"m{i}": {"driver": "memory"} for i in range(100)},
    }
    async with StoreManager(config) as manager:
        await asyncio.sleep(0.15)
        before = sum(s.health.probes for s in manager)
        loop.call_at = counting  # type: ignore[method-assign]
        try:
            await asyncio.sleep(0.3)
        finally:
            del loop.call_at  # type: ignore[method-assign]
        probes = sum(s.health.probes for s in manager) - before
    assert probes >= 150, probes
    assert far == [], f"{len(far)} timeout timers armed for {probes} probes"


async def test_a_probe_that_swallows_its_timeout_stands_and_leaves_no_cancel_behind() -> None:
    stores: dict[str, Any] = {f"s{i}": fake_store() for i in range(3)}
    config = {
        "probe": {"interval": 0.1, "timeout": 0.05, "initial": False, "max_concurrent_probes": 1},
        "stores": stores,
    }
    async with StoreManager(config) as manager:
        driver = manager["s0"].driver
        assert isinstance(driver, FakeDriver)
        driver.probe_delay = 0.2
        driver.probe_ignores_cancel = True
        await asyncio.sleep(1.0)
        counts = {n: manager[n].health.probes for n in stores}
        # Let s0's probes answer at once, and wait for two more of them: no timer of a
        # swallowing probe is about to fire while we look at the worker.
        driver.probe_delay = 0.0
        seen = manager["s0"].health.probes
        for _ in range(1000):
            if manager["s0"].health.probes >= seen + 2:
                break
            await asyncio.sleep(0.01)
        workers = [t for t in asyncio.all_tasks() if t.get_name() == "aiostore-probe-worker"]
        # One worker (max_concurrent_probes = 1) ran every probe; none is left cancelling.
        assert len(workers) == 1
        assert workers[0].cancelling() == 0
        assert not workers[0].done()
    # The swallowing probe answered healthy after its timer fired: that answer stands (the
    # driver chose to return), and the same worker went on probing the others.
    assert counts["s1"] >= 5 and counts["s2"] >= 5, counts
    assert Capability.WRITE_ACCESS in manager["s0"].capabilities


async def test_a_waiting_probe_hands_the_queue_to_another_worker() -> None:
    stores: dict[str, Any] = {f"s{i}": fake_store() for i in range(10)}
    config = {"probe": {"interval": 0.1, "timeout": 5.0, "initial": False}, "stores": stores}
    async with StoreManager(config) as manager:
        for name in ("s0", "s1"):
            driver = manager[name].driver
            assert isinstance(driver, FakeDriver)
            driver.probe_delay = 3.0  # each holds a worker for 3 s
        await asyncio.sleep(0.3)
        counts0 = {n: manager[n].health.probes for n in stores}
        await asyncio.sleep(0.6)
        counts = {n: manager[n].health.probes - counts0[n] for n in stores}
    for name in list(stores)[2:]:
        assert counts[name] >= 4, counts  # ~6 at 0.1 s
