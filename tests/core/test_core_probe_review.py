"""Review of the probe workers and the probe timeout (``Prober``, ``_Bounded``): shutdown with a
probe that swallows the cancellation, a worker cancelled before its first step, the cancel
accounting of an expired probe, and what must keep working (a caller's cancel at the moment the
timeout fires, a driver's own cancel scopes inside its probe)."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from aiostore import StoreManager
from aiostore.capabilities.probe import ProbeConfig, Prober

from .support import FakeDriver, fake_store


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def _workers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "aiostore-probe-worker"]


def _fake(manager: StoreManager, name: str) -> FakeDriver:
    driver = manager[name].driver
    assert isinstance(driver, FakeDriver)
    return driver


async def test_exit_does_not_hang_when_a_probe_swallows_the_exit_cancellation() -> None:
    config = {
        "probe": {"interval": 0.05, "timeout": 30.0, "initial": False},
        "stores": {"s0": fake_store()},
    }
    manager = StoreManager(config)
    await manager.__aenter__()
    driver = _fake(manager, "s0")
    driver.probe_delay = 30.0
    driver.probe_ignores_cancel = True  # answers when cancelled (once), as a sloppy driver may
    await _until(lambda: driver.calls["probe"] >= 1)
    closing = asyncio.ensure_future(manager.aclose())
    done, _ = await asyncio.wait([closing], timeout=5.0)
    if not done:
        for task in _workers():  # unblock the hang so that the test itself ends
            task.cancel()
        await closing
    assert done, "manager.aclose() hung: the worker outlived its single cancellation"


async def test_a_worker_cancelled_before_its_first_step_does_not_count_after_a_restart() -> None:
    runs = {"s": 0, "t": 0}

    def runner(name: str) -> Callable[[], Any]:
        async def run() -> None:
            runs[name] += 1

        return run

    prober = Prober(max_concurrent=1)
    for name in runs:  # first due somewhere in the first 100 s: only early probes run here
        prober.add(name, ProbeConfig(interval=100.0, initial=False), runner(name))
    loop = asyncio.get_running_loop()

    async with anyio.create_task_group() as tg:
        prober.start(tg)
        await _until(lambda: prober.request("s"))
        # The early probe's timer and the stop land in one loop turn, the stop first: the
        # scheduler is cancelled, then the timer creates a worker, which the scheduler's exit
        # cancels before it ever ran.
        assert prober.request("s") is False  # (rate-limited: the one above is the one)
        loop.call_soon(tg.cancel_scope.cancel)
        await asyncio.sleep(5)
    prober.stop()

    async with anyio.create_task_group() as tg:  # the manager re-entered: probing again
        prober.start(tg)
        await _until(lambda: prober.request("t"))
        with anyio.move_on_after(3.0):
            await _until(lambda: runs["t"] >= 1, timeout=60.0)
        tg.cancel_scope.cancel()
    prober.stop()
    assert runs["t"] >= 1, "the early probe granted after the restart never ran"


async def test_an_expired_probe_that_raises_something_else_leaves_no_cancel_request() -> None:
    config = {
        "probe": {"interval": 0.1, "timeout": 0.05, "initial": False, "max_concurrent_probes": 1},
        "stores": {"s0": fake_store()},
    }
    async with StoreManager(config) as manager:
        driver = _fake(manager, "s0")
        driver.probe_delay = 1.0

        def torn_down(exc: asyncio.CancelledError) -> None:
            # A client library that turns the cancellation of its request into its own error.
            raise ConnectionResetError("request aborted")

        driver.probe_on_cancel = torn_down
        before = manager["s0"].health.probes
        await _until(lambda: manager["s0"].health.probes >= before + 2)
        report = manager["s0"].health
        assert report.last_error is not None and "request aborted" in report.last_error
        # From now on every probe answers at once (no timer): once the one in flight is over,
        # whatever cancel request the worker still carries is a leftover.
        driver.probe_delay = 0.0
        settled = manager["s0"].health.probes
        await _until(lambda: manager["s0"].health.probes >= settled + 2)
        workers = _workers()
        assert len(workers) == 1
        assert workers[0].cancelling() == 0, f"cancelling() = {workers[0].cancelling()}"


async def test_a_callers_cancel_at_the_moment_of_the_timeout_stays_a_cancellation() -> None:
    """The timer fires and, before the probe has unwound, the caller is cancelled too: the
    caller sees CancelledError (not TimeoutError), and no timed-out probe is recorded."""
    config = {
        "probe": {"interval": 1000.0, "timeout": 0.05, "initial": False},
        "stores": {"s0": fake_store()},
    }
    async with StoreManager(config) as manager:
        driver = _fake(manager, "s0")
        driver.probe_delay = 5.0
        await manager.probe("s0")  # a fast one first (opens the shared session)
        probes = manager["s0"].health.probes
        caller: asyncio.Task[Any] | None = None

        def cancel_caller_too(exc: asyncio.CancelledError) -> None:
            assert caller is not None
            caller.cancel()

        driver.probe_on_cancel = cancel_caller_too
        caller = asyncio.ensure_future(manager.probe("s0"))
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert caller.cancelled()
        assert manager["s0"].health.probes == probes
        # Both cancellations acknowledged, nothing left over for the next probe.
        driver.probe_on_cancel = None
        driver.probe_delay = 0.0
        report = await manager.probe("s0")
        assert report.last_error is None


async def test_a_drivers_own_cancel_scopes_inside_its_probe_keep_working() -> None:
    """Scopes entered in the probe's inline first step and left after it waited (anyio's
    move_on_after / fail_after, asyncio.timeout): from a worker and from manager.probe()."""
    seen: list[str] = []

    async def scopes() -> None:
        with anyio.move_on_after(0.01) as scope:
            await asyncio.sleep(1)
        assert scope.cancelled_caught
        with anyio.fail_after(5):
            await asyncio.sleep(0.001)
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
        except TimeoutError:
            pass
        else:
            raise AssertionError("asyncio.timeout did not fire")
        task = asyncio.current_task()
        assert task is not None
        seen.append(task.get_name())

    config = {
        "probe": {"interval": 0.1, "timeout": 5.0, "initial": False, "max_concurrent_probes": 2},
        "stores": {"s0": fake_store(), "s1": fake_store()},
    }
    async with StoreManager(config) as manager:
        for name in ("s0", "s1"):
            _fake(manager, name).probe_hook = scopes
        await _until(lambda: seen.count("aiostore-probe-worker") >= 4)
        for name in ("s0", "s1"):
            report = manager[name].health
            assert report.last_error is None, report.last_error
        # The scopes cancel the worker while they expire: look once no hooked probe can run.
        counts = {name: manager[name].health.probes for name in ("s0", "s1")}
        for name in ("s0", "s1"):
            _fake(manager, name).probe_hook = None
        await _until(lambda: all(manager[n].health.probes >= counts[n] + 2 for n in counts))
        assert all(t.cancelling() == 0 for t in _workers())
        for name in ("s0", "s1"):
            _fake(manager, name).probe_hook = scopes
        me = asyncio.current_task()
        assert me is not None
        report = await manager["s0"].probe(immediate=True)  # runs in this task, joins nothing
        assert report.last_error is None
        assert me.cancelling() == 0


_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "review_request_id", default=None
)


async def test_probes_do_not_run_in_the_context_of_whoever_asked_for_an_early_probe() -> None:
    seen: list[str | None] = []

    async def record() -> None:
        seen.append(_REQUEST_ID.get())

    config = {
        "probe": {"interval": 1000.0, "initial": False},
        "stores": {"s0": fake_store(), "s1": fake_store()},
    }
    async with StoreManager(config) as manager:
        for name in ("s0", "s1"):
            _fake(manager, name).probe_hook = record

        async def user_operation() -> None:
            _REQUEST_ID.set("user-request-42")  # e.g. a web request's id, a tracing span
            await _until(lambda: manager["s0"].request_probe())

        await asyncio.create_task(user_operation())
        await _until(lambda: len(seen) >= 1)
        assert manager["s1"].request_probe()  # from here: no request id
        await _until(lambda: len(seen) >= 2)
    assert seen == [None, None]


async def test_a_probe_on_another_threads_loop_does_not_let_a_second_probe_overlap_here() -> None:
    config = {
        "probe": {"interval": 1000.0, "timeout": 10.0, "initial": False},
        "stores": {"s0": fake_store()},
    }
    async with StoreManager(config) as manager:
        driver = _fake(manager, "s0")
        driver.probe_delay = 1.0
        first = asyncio.ensure_future(manager.probe("s0"))
        await _until(lambda: driver.calls["probe"] == 1)
        driver.probe_delay = 0.01
        # Another thread, its own event loop: probes there (its own session), and ends first.
        await anyio.to_thread.run_sync(asyncio.run, manager["s0"].probe())
        assert driver.calls["probe"] == 2 and not first.done()
        second = asyncio.ensure_future(manager.probe("s0"))  # should join `first`
        await asyncio.gather(first, second)
        assert driver.calls["probe"] == 2, "a second probe overlapped the one in flight here"


_PROBING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "review_probing", default=None
)


async def test_workers_do_not_share_one_context() -> None:
    """Probes that set and reset a context variable around a wait (a tracing span, a decimal
    context, a logging context) must not see each other's values: each worker task needs a
    context of its own (a copy of the scheduler's), not the very same Context object."""
    mixed: list[tuple[str, str | None]] = []

    def hook_for(name: str) -> Callable[[], Any]:
        async def hook() -> None:
            token = _PROBING.set(name)
            try:
                await asyncio.sleep(0.02)
                if _PROBING.get() != name:
                    mixed.append((name, _PROBING.get()))
            finally:
                _PROBING.reset(token)

        return hook

    stores = {f"s{i}": fake_store() for i in range(4)}
    config = {"probe": {"interval": 0.05, "timeout": 5.0, "initial": False}, "stores": stores}
    async with StoreManager(config) as manager:
        for name in stores:
            _fake(manager, name).probe_hook = hook_for(name)
        await _until(lambda: all(manager[n].health.probes >= 3 for n in stores))
    assert mixed == [], f"probes saw each other's context values: {mixed[:5]}"


def test_a_probe_pending_on_a_stopped_loop_does_not_hold_up_the_next_loop_in_this_thread() -> None:
    config = {
        "probe": {"interval": 1000.0, "timeout": 30.0, "initial": False},
        "stores": {"s0": fake_store()},
    }
    manager = StoreManager(config)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(manager.__aenter__())
        driver = _fake(manager, "s0")
        driver.probe_delay = 5.0
        pending = first.create_task(manager.probe("s0"))
        first.run_until_complete(asyncio.sleep(0.05))  # the loop stops, the probe waits in it
        assert driver.calls["probe"] == 1 and not pending.done()
        driver.probe_delay = 0.0

        async def probe_here() -> bool:
            # Same thread, the next loop (asyncio.run twice is supported): probe here.
            try:
                await asyncio.wait_for(manager["s0"].probe(), 3.0)
            except TimeoutError:
                return False
            return True

        answered = asyncio.run(probe_here())
        pending.cancel()
        first.run_until_complete(asyncio.wait([pending]))
        first.run_until_complete(manager.aclose())
    finally:
        first.close()
    assert answered, "the probe on the second loop joined the one pending on the stopped loop"


async def test_an_early_probe_granted_while_queued_is_the_queued_probe() -> None:
    config = {
        "probe": {"timeout": 10.0, "initial": False, "max_concurrent_probes": 1},
        "stores": {
            "hung": fake_store(probe={"interval": 1000.0}),
            "s0": fake_store(probe={"interval": 4.0}),
        },
    }
    async with StoreManager(config) as manager:
        hung, s0 = _fake(manager, "hung"), _fake(manager, "s0")
        hung.probe_delay = 1.5
        await _until(lambda: manager["hung"].request_probe())
        await _until(lambda: hung.calls["probe"] == 1)  # it holds the only worker for 1.5 s
        s0_before = s0.calls["probe"]
        assert manager["s0"].request_probe()  # queued behind it
        await asyncio.sleep(1.1)  # (early probes: at most one per interval / 4 = 1 s)
        assert s0.calls["probe"] == s0_before
        assert manager["s0"].request_probe()  # granted: still queued, it has not started yet
        await _until(lambda: manager["hung"].health.probes == 1)
        await asyncio.sleep(0.4)  # s0's next regular probe is ≥ 2 s after the first request
        assert s0.calls["probe"] - s0_before == 1, "the queued probe ran twice back to back"
