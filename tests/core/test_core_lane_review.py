"""The lane under attack: a loop closed right after a call, queued calls cancelled while every
thread is held up, a call that raises what a future refuses, a pool that cannot start a thread,
and many file stores whose probes hang on one gate."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostore import StoreManager, _cancel, _lane
from aiostore._lane import lane, run_in_lane
from aiostore.drivers.file import _probe

from .test_core_lane import _drained


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a store's probe counters (they have no event to wait on)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached within 5 s")


def test_a_loop_closed_right_after_its_last_call_is_not_kept_alive() -> None:
    """The lane's timer is still armed when the loop closes (it runs every STUCK while calls
    wait): the lanes map's value must not hold the loop through it."""
    refs: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        assert await run_in_lane(pow, 3, 2) == 9

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    del loop
    for _ in range(500):  # the thread that ran the call returns to the pool
        gc.collect()
        if refs[0]() is None:
            return
        threading.Event().wait(0.01)
    raise AssertionError(
        "the closed loop is still referenced: " + repr(gc.get_referrers(refs[0]()))
    )


async def test_queued_calls_cancelled_while_every_thread_is_held_do_not_pile_up() -> None:
    """Every pool thread is held (hung calls elsewhere): the lane's thread waits for one. Calls
    queued meanwhile and cancelled (probes timing out, interval after interval) must not stay in
    the queue, nor keep the lane's timer running."""
    gate = threading.Event()
    held = [
        asyncio.ensure_future(_cancel.run_blocking(gate.wait, 30.0))
        for _ in range(_cancel.MAX_THREADS)
    ]
    ran: list[int] = []
    try:
        first = asyncio.ensure_future(run_in_lane(pow, 2, 2))
        await asyncio.sleep(_lane.STUCK * 2)  # the lane's thread is submitted, not running
        for round_ in range(20):
            calls = [asyncio.ensure_future(run_in_lane(ran.append, round_)) for _ in range(50)]
            await asyncio.sleep(0)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        # At most as many cancelled calls as waiting ones stay queued (one waits: ``first``).
        assert len(lane()._jobs) <= 2, len(lane()._jobs)
        assert not first.done()
    finally:
        gate.set()
    with anyio.fail_after(5):
        assert await first == 4
        await asyncio.gather(*held)
    await _drained()
    assert ran == []


async def test_a_call_raising_stopiteration_loses_no_other_result() -> None:
    """``Future.set_exception`` refuses StopIteration (TypeError): the callers of the results
    handed back with it must still get theirs, and its own caller an error."""
    go = threading.Event()
    entered = threading.Event()
    second_done = threading.Event()

    def stop() -> None:
        entered.set()
        go.wait(5)
        raise StopIteration

    def second() -> int:
        second_done.set()
        return 7

    a = asyncio.ensure_future(run_in_lane(stop))
    b = asyncio.ensure_future(run_in_lane(second))
    assert await asyncio.to_thread(entered.wait, 5)
    go.set()
    # Block the loop until both results are handed back: one collection delivers both.
    assert second_done.wait(5)
    with anyio.fail_after(5):
        assert await b == 7
        with pytest.raises(RuntimeError) as info:
            await a
    assert isinstance(info.value.__cause__, StopIteration)
    await _drained()


async def test_a_thread_that_cannot_start_fails_the_waiting_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool cannot start the lane's thread (no more threads, say): the calls waiting for it
    get that error instead of waiting forever; later calls are served once it can. A pool may
    have queued the call before failing to start a thread for it: run later, it is harmless."""
    pool = _cancel._executor()
    submit = pool.submit
    refused: list[tuple[Any, tuple[Any, ...]]] = []

    def refuse(fn: Any, /, *args: Any) -> Any:
        refused.append((fn, args))
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(pool, "submit", refuse)
    calls = [asyncio.ensure_future(run_in_lane(pow, i, 2)) for i in range(3)]
    with anyio.fail_after(5):
        results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results), results
    monkeypatch.setattr(pool, "submit", submit)
    with anyio.fail_after(5):
        assert await run_in_lane(pow, 5, 2) == 25
        await _drained()
        fn, args = refused[0]
        await asyncio.to_thread(fn, *args)  # the queued drain, run late: nothing left to do
    assert lane()._runners == []


async def test_many_file_stores_hung_on_one_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 healthy file stores, then every probe hangs on one gate (one stalled mount under
    all of them), probes timing out interval after interval: the lane's queue stays bounded by
    the stores, its threads by the pool; no store ever has two probe threads; once the gate
    opens every store probes again."""
    gate = threading.Event()
    hang = threading.Event()
    inside: dict[int, int] = {}
    twice: list[int] = []
    lock = threading.Lock()
    probe = _probe.Prober._probe

    def hung(self: _probe.Prober, sync: bool) -> Any:
        with lock:
            inside[id(self)] = inside.get(id(self), 0) + 1
            if inside[id(self)] > 1:
                twice.append(id(self))
        try:
            if hang.is_set():
                gate.wait(30)
            return probe(self, sync)
        finally:
            with lock:
                inside[id(self)] -= 1

    monkeypatch.setattr(_probe.Prober, "_probe", hung)
    stores = 200
    config = {
        # A probe has 0.25 s: 200 stores probing every 50 ms must all come out healthy on a
        # slow, busy machine too (0.02 s timed probes out before any gate was shut).
        "probe": {"interval": 0.05, "timeout": 0.25, "initial": False},
        "stores": {
            f"f{i}": {"driver": "file", "root": str(tmp_path / f"f{i}")} for i in range(stores)
        },
    }
    try:
        async with StoreManager(config) as manager:
            await _until(lambda: all(s.health.healthy and s.health.probes >= 2 for s in manager))
            hang.set()
            here = lane()
            longest = 0
            for _ in range(30):  # 1.5 s: about 5 timed-out probes per store
                await asyncio.sleep(0.05)
                longest = max(longest, len(here._jobs))
                assert len(here._runners) <= _cancel.MAX_THREADS + 1
            assert longest <= stores, f"{longest} calls queued for {stores} stores"
            gate.set()
            hang.clear()
            before = {s.name: s.health.probes for s in manager}
            await _until(lambda: all(s.health.probes > before[s.name] for s in manager))
    finally:
        gate.set()
    assert twice == []


async def test_slow_calls_do_not_queue_up_behind_each_other() -> None:
    """Calls a little shorter than STUCK each (a probe on a slow network file system): no thread
    counts as stuck, yet a call must not wait for every one ahead of it in turn (64 calls of
    0.8 STUCK would take 0.5 s one after another; with a thread per 64 in the pool, 8 ms)."""
    slow = _lane.STUCK * 0.8
    calls = 64
    start = time.monotonic()
    with anyio.fail_after(5):
        await asyncio.gather(*(run_in_lane(time.sleep, slow) for _ in range(calls)))
    took = time.monotonic() - start
    assert took < calls * slow / 2, f"{calls} calls of {slow * 1000:.0f} ms took {took:.3f} s"
    await _drained()


def test_a_keyboard_interrupt_while_starting_a_thread_forgets_no_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands in the lane's timer as it asks the pool for a thread: it leaves the loop,
    and when the program runs the loop on, the call still waiting gets its thread."""
    pool = _cancel._executor()
    submit = pool.submit

    def interrupted(fn: Any, /, *args: Any) -> Any:
        monkeypatch.setattr(pool, "submit", submit)
        raise KeyboardInterrupt

    async def call() -> int:
        return await run_in_lane(pow, 6, 2)

    async def finish(task: asyncio.Future[int]) -> int:
        with anyio.fail_after(5):
            return await task

    monkeypatch.setattr(pool, "submit", interrupted)
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(call())
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(task)
        assert loop.run_until_complete(finish(task)) == 36
    finally:
        loop.close()


def test_a_loop_closed_with_a_call_still_queued_is_not_kept_alive() -> None:
    """A loop stopped and closed while a call of a task it never finished waits for the lane's
    thread: the call never runs, and nothing of the lane keeps the closed loop (its task, the
    call's future) alive."""
    refs: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    ran: list[int] = []

    async def start() -> None:
        refs.append(weakref.ref(asyncio.get_running_loop()))
        pending = [asyncio.ensure_future(run_in_lane(ran.append, 1))]
        await asyncio.sleep(0)  # queued; the lane's timer (WINDOW) has not fired yet
        assert not pending[0].done()

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # "Task was destroyed but pending"
    loop.run_until_complete(start())
    loop.close()
    del loop
    gc.collect()
    assert refs[0]() is None, gc.get_referrers(refs[0]())
    assert ran == []


def test_a_loop_that_takes_no_attributes_still_has_one_lane() -> None:
    """Loops implemented in C (uvloop) may refuse the lane as an attribute: a map keeps it."""

    class Sealed(asyncio.SelectorEventLoop):
        def __setattr__(self, name: str, value: object) -> None:
            if name == _lane._ATTR:
                raise AttributeError(name)
            super().__setattr__(name, value)

    async def main() -> None:
        first = lane()
        assert await asyncio.gather(*(run_in_lane(pow, j, 2) for j in range(5))) == [
            j * j for j in range(5)
        ]
        assert lane() is first
        assert _lane._lanes.get(asyncio.get_running_loop()) is first
        await _drained()

    loop = Sealed()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
