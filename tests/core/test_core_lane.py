"""The lane: a burst of short blocking calls costs one thread hop, a hung call holds up nobody,
and a cancelled call that has not started never runs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostore import StoreManager, _cancel
from aiostore._lane import STUCK, lane, run_in_lane


@pytest.fixture
def submits(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """Every call handed to aiostore's worker pool (each one a thread hop)."""
    pool = _cancel._executor()
    seen: list[Callable[..., Any]] = []
    submit = pool.submit

    def counting(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        seen.append(fn)
        return submit(fn, *args, **kwargs)

    monkeypatch.setattr(pool, "submit", counting)
    return seen


async def _drained() -> None:
    """Wait until the running loop's lane has no thread left."""
    here = lane()
    for _ in range(500):
        if not here._runners:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the lane's threads did not return")


async def test_a_burst_of_file_probes_costs_a_few_thread_hops(
    tmp_path: Path, submits: list[Callable[..., Any]]
) -> None:
    """200 file stores probed every 0.2 s: the probes due together share thread hops (one each,
    before the lane: a hop costs more CPU than the probe's own system calls)."""
    config = {
        "probe": {"interval": 0.2, "initial": False},
        "stores": {
            f"f{i}": {"driver": "file", "root": str(tmp_path / f"f{i}")} for i in range(200)
        },
    }
    async with StoreManager(config) as manager:
        await asyncio.sleep(0.3)
        before = sum(s.health.probes for s in manager)
        del submits[:]
        await asyncio.sleep(0.8)
        probes = sum(s.health.probes for s in manager) - before
        hops = len(submits)
        healthy = all(s.health.healthy for s in manager)
    assert probes >= 400, probes
    assert healthy
    assert hops * 4 <= probes, f"{hops} thread hops for {probes} probes"


async def test_results_and_errors_reach_their_callers() -> None:
    def fail() -> None:
        raise OSError(5, "boom")

    results = await asyncio.gather(*(run_in_lane(pow, i, 2) for i in range(50)))
    assert results == [i * i for i in range(50)]
    with pytest.raises(OSError, match="boom"):
        await run_in_lane(fail)
    await _drained()


async def test_a_hung_call_holds_up_no_later_call() -> None:
    """Calls queued behind a hung one (before it counted as stuck, and after) all finish."""
    release = threading.Event()
    try:
        hung = asyncio.ensure_future(run_in_lane(release.wait, 30.0))
        await asyncio.sleep(0)  # queued first
        start = time.monotonic()
        early = [asyncio.ensure_future(run_in_lane(pow, i, 2)) for i in range(5)]
        with anyio.fail_after(5):
            assert await asyncio.gather(*early) == [i * i for i in range(5)]
        await asyncio.sleep(STUCK * 2)
        with anyio.fail_after(5):
            assert await run_in_lane(pow, 3, 3) == 27
        assert time.monotonic() - start < 3
        assert not hung.done()
    finally:
        release.set()
    assert await hung is True
    await _drained()


async def test_a_queued_call_cancelled_never_runs() -> None:
    """Cancelled once, twice, by a timeout, by a task group's cancellation: it never runs, and
    the caller gets control back while the call ahead of it still runs."""
    release = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(run_in_lane(release.wait, 30.0))
        await asyncio.sleep(0)

        once = asyncio.ensure_future(run_in_lane(ran.append, "once"))
        twice = asyncio.ensure_future(run_in_lane(ran.append, "twice"))
        await asyncio.sleep(0)
        once.cancel()
        twice.cancel()
        twice.cancel()
        for task in (once, twice):
            with pytest.raises(asyncio.CancelledError):
                await task

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.001):
                await run_in_lane(ran.append, "timeout")

        async with anyio.create_task_group() as tg:

            async def call() -> None:
                await run_in_lane(ran.append, "task group")

            tg.start_soon(call)
            await asyncio.sleep(0)
            tg.cancel_scope.cancel()
        assert not blocker.done()
    finally:
        release.set()
    await blocker
    await _drained()
    assert ran == []


async def test_a_caller_cancelled_while_its_call_runs_returns_at_once() -> None:
    """The thread finishes the call by itself; its result goes nowhere, and nothing is left."""
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(30.0)
        finished.set()
        return "late"

    task = asyncio.ensure_future(run_in_lane(slow))
    await asyncio.sleep(0.05)
    task.cancel()
    with anyio.fail_after(1):
        with pytest.raises(asyncio.CancelledError):
            await task
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)
    await _drained()


def test_a_call_that_ends_after_its_loop_closed_is_harmless() -> None:
    """The loop is gone when the thread finishes: no error, the thread returns to the pool."""
    release = threading.Event()
    finished = threading.Event()
    holder: list[Any] = []

    def slow() -> None:
        release.wait(30.0)
        finished.set()

    async def main() -> None:
        holder.append(lane())
        task = asyncio.ensure_future(run_in_lane(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    release.set()
    assert finished.wait(5)
    for _ in range(500):
        if not holder[0]._runners:
            break
        time.sleep(0.01)
    assert holder[0]._runners == []


def test_each_loop_has_its_own_lane() -> None:
    """Loops in other threads queue their calls on lanes of their own."""
    seen: dict[int, Any] = {}

    def in_thread(i: int) -> None:
        async def main() -> None:
            seen[i] = lane()
            assert await asyncio.gather(*(run_in_lane(pow, j, 2) for j in range(20))) == [
                j * j for j in range(20)
            ]

        asyncio.run(main())

    threads = [threading.Thread(target=in_thread, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({id(v) for v in seen.values()}) == 3


def test_a_finished_loop_is_not_kept_alive_by_its_lane() -> None:
    """The lanes are keyed by loop: a lane must not hold its loop (every loop that ever probed
    a file store would stay in memory)."""
    import gc
    import weakref

    refs: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        assert await asyncio.gather(*(run_in_lane(pow, j, 2) for j in range(5))) == [
            j * j for j in range(5)
        ]
        await _drained()
        await asyncio.sleep(STUCK * 2)  # the lane's timer has run out

    asyncio.run(main())
    gc.collect()
    assert refs[0]() is None
