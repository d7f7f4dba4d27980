"""Sessions: shared per loop for DRIVER_REUSABLE drivers, per use otherwise; broken ones
replaced."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from aiostore import BackendUnavailable, StoreError, StoreManager
from aiostore import Capability as C
from aiostore.drivers.base import DriverSession

from .support import ALL, NO_PROBE, FakeDriver, FakeSession, fake_store


def _manager(probe: dict[str, Any] | None = None, **store: Any) -> StoreManager:
    return StoreManager({"probe": probe or NO_PROBE, "stores": {"s": fake_store(**store)}})


def _driver(manager: StoreManager) -> FakeDriver:
    driver = manager["s"].driver
    assert isinstance(driver, FakeDriver)
    return driver


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_reusable_session_is_shared_by_100_concurrent_callers() -> None:
    manager = _manager(open_delay=0.02)
    async with manager:
        driver = _driver(manager)
        seen: list[DriverSession] = []
        inside = 0
        most_inside = 0

        async def user() -> None:
            nonlocal inside, most_inside
            async with manager.session("s") as session:
                inside += 1
                most_inside = max(most_inside, inside)
                seen.append(session)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(user() for _ in range(100)))
        assert len(seen) == 100
        assert len({id(s) for s in seen}) == 1
        assert most_inside > 1, "the callers really overlapped"
        assert driver.calls["open_session"] == 1
        assert driver.calls["close"] == 0, "the manager, not the callers, closes it"
        # store operations take the same path and the same session
        driver.objects["k"] = b"v"
        results = await asyncio.gather(*(manager["s"].read("k") for _ in range(100)))
        assert results == [b"v"] * 100
        assert driver.calls["open_session"] == 1
        stats = manager["s"].statistics()["sessions"]
        assert stats["shared"] is True and stats["open"] == 1 and stats["users"] == 0
    assert driver.calls["close"] == 1
    assert driver.open_sessions() == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _manager(caps=int(C.RW_RANDOM)), id="driver-not-reusable"),
        pytest.param(
            lambda: StoreManager({"probe": NO_PROBE, "stores": {"s": fake_store(reusable=False)}}),
            id="reusable-false",
        ),
    ],
)
@pytest.mark.parametrize("ending", ["normal", "raises", "cancelled"])
async def test_non_reusable_opens_and_closes_per_use(make: Any, ending: str) -> None:
    manager = make()
    async with manager:
        driver = _driver(manager)
        assert C.DRIVER_REUSABLE not in manager["s"].capabilities
        entered = asyncio.Event()
        seen: list[FakeSession] = []

        async def body() -> None:
            async with manager.session("s") as session:
                assert isinstance(session, FakeSession)
                seen.append(session)
                assert session.close_count == 0
                entered.set()
                if ending == "raises":
                    raise KeyError("boom")
                if ending == "cancelled":
                    await asyncio.sleep(3600)

        for round_ in range(1, 4):
            entered.clear()
            task = asyncio.ensure_future(body())
            await entered.wait()
            if ending == "cancelled":
                task.cancel()
            results = await asyncio.gather(task, return_exceptions=True)
            if ending == "raises":
                assert isinstance(results[0], KeyError)
            elif ending == "cancelled":
                assert isinstance(results[0], asyncio.CancelledError)
            assert driver.calls["open_session"] == round_
            assert driver.calls["close"] == round_
            assert seen[-1].close_count == 1
        assert len({id(s) for s in seen}) == 3
        # store operations open and close one session each as well
        driver.objects["k"] = b"v"
        for _ in range(5):
            assert await manager["s"].read("k") == b"v"
        assert driver.calls["open_session"] == driver.calls["close"] == 8
        assert all(s.close_count == 1 for s in driver.sessions)


async def test_session_broken_error_retires_and_closes_after_last_user() -> None:
    manager = _manager()
    async with manager:
        store = manager["s"]
        driver = _driver(manager)
        changes = store.changes()
        release_a = asyncio.Event()
        a_inside = asyncio.Event()

        async def user_a() -> DriverSession:
            async with manager.session("s") as session:
                a_inside.set()
                await release_a.wait()
                return session

        task_a = asyncio.ensure_future(user_a())
        await a_inside.wait()
        with pytest.raises(StoreError):
            async with manager.session("s") as s1:
                raise StoreError("connection reset", session_broken=True)
        assert isinstance(s1, FakeSession)
        assert s1.close_count == 0, "user A is still inside"
        assert C.DRIVER_REUSABLE not in store.capabilities, "revoked while retired"
        assert store.configured_capabilities == ALL
        async with manager.session("s") as s2:
            assert s2 is not s1
            assert C.DRIVER_REUSABLE in store.capabilities, "restored by a fresh shared one"
        assert driver.calls["open_session"] == 2
        release_a.set()
        assert await task_a is s1
        assert s1.close_count == 1
        assert s2.close_count == 0
        await asyncio.sleep(0.01)
        assert s1.close_count == 1
        events = [changes.get_nowait(), changes.get_nowait(), changes.get_nowait()]
        assert events[2] is None
        assert events[0] is not None and events[0].revoked == C.DRIVER_REUSABLE
        assert events[1] is not None and events[1].restored == C.DRIVER_REUSABLE
    assert s1.close_count == 1 and s2.close_count == 1


async def test_is_broken_session_is_replaced_and_closed_once() -> None:
    manager = _manager()
    async with manager:
        driver = _driver(manager)
        async with manager.session("s") as s1:
            pass
        assert isinstance(s1, FakeSession)
        s1.broken = True
        async with manager.session("s") as s2:
            assert s2 is not s1
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert s1.close_count == 1
        assert driver.calls["open_session"] == 2
        assert manager["s"].statistics()["sessions"]["retired"] == 1
    assert s1.close_count == 1
    assert isinstance(s2, FakeSession) and s2.close_count == 1
    assert not _other_tasks()


async def test_injected_broken_session_fault_is_replaced() -> None:
    manager = _manager()
    async with manager:
        store = manager["s"]
        driver = _driver(manager)
        driver.objects["k"] = b"v"
        assert await store.read("k") == b"v"
        store.faults.session_broken = True
        with pytest.raises(StoreError) as info:
            await store.read("k")
        assert info.value.session_broken and info.value.store == "s"
        assert await store.read("k") == b"v"
        assert driver.calls["open_session"] == 2
        assert driver.sessions[0].close_count == 1
        assert C.DRIVER_REUSABLE in store.capabilities


async def test_retired_session_with_no_users_is_closed_by_manager_exit() -> None:
    """The close of a retired idle session runs in a task; leaving the manager waits for it."""
    manager = _manager()
    async with manager:
        async with manager.session("s") as s1:
            pass
        assert isinstance(s1, FakeSession)
        s1.broken = True
        manager["s"]._pool.retire_current("test")
    assert s1.close_count == 1
    assert not _other_tasks()


async def test_cancelled_opener_does_not_cancel_the_waiters() -> None:
    manager = _manager()
    async with manager:
        driver = _driver(manager)
        driver.open_gate = gate = asyncio.Event()

        async def user() -> DriverSession:
            async with manager.session("s") as session:
                return session

        opener = asyncio.ensure_future(user())
        await asyncio.sleep(0)
        assert driver.calls["open_session"] == 1  # the opener waits inside open_session
        waiters = [asyncio.ensure_future(user()) for _ in range(5)]
        await asyncio.sleep(0)
        assert driver.calls["open_session"] == 1  # ... and the others wait for it
        opener.cancel()
        for _ in range(20):
            await asyncio.sleep(0)
        assert driver.calls["open_session"] == 2  # one waiter took over the opening
        gate.set()
        results = await asyncio.gather(*waiters)
        assert len({id(s) for s in results}) == 1
        assert opener.cancelled()
        assert driver.calls["open_session"] == 2


async def test_failed_open_reaches_every_waiter_and_the_next_caller_retries() -> None:
    manager = _manager(open_delay=0.02)
    async with manager:
        driver = _driver(manager)
        driver.open_error = BackendUnavailable("connection refused")

        async def user() -> DriverSession:
            async with manager.session("s") as session:
                return session

        results = await asyncio.gather(*(user() for _ in range(10)), return_exceptions=True)
        assert all(isinstance(r, BackendUnavailable) for r in results)
        assert driver.calls["open_session"] == 1
        driver.open_error = None
        assert isinstance(await user(), FakeSession)
        assert driver.calls["open_session"] == 2


async def test_leaving_the_manager_closes_everything_and_leaks_no_task() -> None:
    manager = StoreManager(
        {
            "probe": {"interval": 0.01, "timeout": 1.0},
            "stores": {
                "shared": fake_store(),
                "fresh": fake_store(reusable=False),
                "mem": {"driver": "memory"},
            },
        }
    )
    before = _other_tasks()
    async with manager:
        for name in ("shared", "fresh", "mem"):
            await manager[name].put("k", b"v")
            assert await manager[name].read("k") == b"v"
        await asyncio.sleep(0.05)  # a few probe rounds
        assert manager.snapshot()["running"] is True
        assert _other_tasks() - before, "the prober runs in its own task"
    assert _other_tasks() == before
    for name in ("shared", "fresh"):
        driver = manager[name].driver
        assert isinstance(driver, FakeDriver)
        assert driver.open_sessions() == []
        assert all(s.close_count == 1 for s in driver.sessions)
    for name in ("shared", "fresh", "mem"):
        assert manager[name].statistics()["sessions"]["open"] == 0
    assert manager.snapshot()["running"] is False
    gc.collect()


def test_two_asyncio_runs_with_the_same_config() -> None:
    config = {
        "probe": {"interval": 0.01},
        "stores": {"m": {"driver": "memory"}, "f": fake_store()},
    }
    reused = StoreManager(config)

    async def main(manager: StoreManager) -> tuple[bytes, bytes]:
        async with manager:
            await manager["m"].put("k", b"v", overwrite=True)
            await manager["f"].put("k", b"w", overwrite=True)
            async with manager.session("f") as s:
                assert isinstance(s, FakeSession)
            await asyncio.sleep(0.03)
            assert manager["m"].health.probes >= 2
            return await manager["m"].read("k"), await manager["f"].read("k")

    assert asyncio.run(main(StoreManager(config))) == (b"v", b"w")
    assert asyncio.run(main(StoreManager(config))) == (b"v", b"w")
    # the same manager, entered again on a new event loop
    assert asyncio.run(main(reused)) == (b"v", b"w")
    assert asyncio.run(main(reused)) == (b"v", b"w")
    driver = reused["f"].driver
    assert isinstance(driver, FakeDriver)
    assert driver.calls["open_session"] == 2, "one shared session per run"
    assert all(s.close_count == 1 for s in driver.sessions)


async def test_manager_cannot_be_entered_twice_at_once() -> None:
    manager = _manager()
    async with manager:
        with pytest.raises(RuntimeError):
            await manager.__aenter__()


def test_shared_session_of_a_finished_loop_is_not_reused() -> None:
    """A manager used without ``async with`` in two asyncio.run() calls: each loop gets its own
    shared session; the one bound to the closed loop is dropped (not retired: a loop ending is
    not a fault), never handed out again."""
    manager = _manager()
    driver = _driver(manager)
    driver.objects["k"] = b"v"
    store = manager["s"]

    async def use() -> DriverSession:
        assert await store.read("k") == b"v"
        async with manager.session("s") as session:
            return session

    first = asyncio.run(use())
    second = asyncio.run(use())
    assert first is not second
    assert driver.calls["open_session"] == 2
    stats = store.statistics()["sessions"]
    assert stats["retired"] == 0 and stats["loops"] == 1
    assert C.DRIVER_REUSABLE in store.capabilities


async def test_a_loop_in_another_thread_gets_its_own_session() -> None:
    manager = _manager()
    async with manager:
        driver = _driver(manager)
        driver.objects["k"] = b"v"
        async with manager.session("s") as mine:
            pass

        async def elsewhere() -> DriverSession:
            assert await manager["s"].read("k") == b"v"
            async with manager.session("s") as session:
                return session

        theirs = await asyncio.to_thread(asyncio.run, elsewhere())
        assert theirs is not mine
        assert isinstance(mine, FakeSession) and isinstance(theirs, FakeSession)
        # Another loop is not a fault: this loop's session stays in use, nothing is retired.
        assert mine.close_count == 0
        async with manager.session("s") as again:
            assert again is mine
        assert driver.calls["open_session"] == 2
        assert manager["s"].statistics()["sessions"]["retired"] == 0
        assert C.DRIVER_REUSABLE in manager["s"].capabilities


async def test_failing_probes_retire_the_shared_session() -> None:
    """failures_to_revoke whole-probe failures in a row retire the shared session (a refresh:
    DRIVER_REUSABLE stays); the next use opens a fresh one."""
    from aiostore import Capability, StoreManager

    config = {
        "probe": {"enabled": False, "failures_to_revoke": 2},
        "stores": {"m": {"driver": "memory"}},
    }
    async with StoreManager(config) as manager:
        store = manager["m"]
        await store.put("k", b"v")
        assert store.statistics()["sessions"]["opened"] == 1
        store.faults.probe_error = "backend restarted"
        await store.probe()
        assert store.statistics()["sessions"]["retired"] == 0
        await store.probe()
        assert store.statistics()["sessions"]["retired"] == 1
        assert Capability.DRIVER_REUSABLE in store.capabilities
        store.faults.probe_error = None
        await store.probe()
        await store.probe()  # successes_to_restore = 2 brings READ_ACCESS back
        assert await store.read("k") == b"v"
        await asyncio.sleep(0)  # the retired session closes in a task of its own
        stats = store.statistics()["sessions"]
        assert stats["opened"] == 2 and stats["closed"] == 1


async def test_a_shared_session_opened_while_the_manager_closes_is_closed() -> None:
    """A caller still opening the shared session when the manager closes gets a StoreError, and
    the session it opened is closed, not left behind."""
    manager = _manager()
    driver = _driver(manager)
    gate = asyncio.Event()
    async with manager:
        driver.open_gate = gate
        user = asyncio.create_task(manager["s"].exists("k"))
        await asyncio.sleep(0.01)
        assert driver.calls["open_session"] == 1  # the user waits in open_session
    gate.set()
    with pytest.raises(StoreError, match="closed"):
        await user
    assert len(driver.sessions) == 1
    assert driver.open_sessions() == []


async def test_native_cancellation_while_leaving_the_manager_closes_every_store() -> None:
    """task.cancel() while the manager closes its first store's session: the other store's
    session is closed too, and the task still ends cancelled."""
    manager = StoreManager({"probe": NO_PROBE, "stores": {"a": fake_store(), "b": fake_store()}})
    a, b = manager["a"].driver, manager["b"].driver
    assert isinstance(a, FakeDriver) and isinstance(b, FakeDriver)
    closing = asyncio.Event()

    async def run() -> None:
        async with manager:
            await manager["a"].exists("k")
            await manager["b"].exists("k")
            session = a.sessions[0]
            plain_close = session.aclose

            async def slow_close() -> None:
                closing.set()
                await asyncio.sleep(0.05)
                await plain_close()

            session.aclose = slow_close  # type: ignore[method-assign]

    task = asyncio.create_task(run())
    await closing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.open_sessions() == []
    assert b.open_sessions() == []
