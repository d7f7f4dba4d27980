"""``Store.read`` takes a straight path in the common case (plain key and range, every capability
held, no instrument observing operations, the loop's shared session usable). It must behave as
the generic pipeline does: same results and errors, the session given back on every outcome
(cancellation included), the evidence rule, broken sessions replaced."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aiostore import Capability as C
from aiostore import Store, StoreError, StoreManager
from aiostore.instrumentation import OperationEvent

from .support import NO_PROBE, FakeDriver, FakeOptions, FakeSession


class GatedSession(FakeSession):
    """Its reads wait at the driver's gate while one is set (a read suspended in its I/O)."""

    d: GatedDriver

    def __init__(self, driver: GatedDriver) -> None:
        super().__init__(driver)
        self.closed = asyncio.Event()

    async def aclose(self) -> None:
        await super().aclose()
        self.closed.set()

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        gate = self.d.gate
        if gate is not None:
            self.d.entered.set()
            await gate.wait()
        return await super().read(key, offset, length)


class GatedDriver(FakeDriver):
    def __init__(self, store: str, options: FakeOptions) -> None:
        super().__init__(store, options)
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def open_session(self) -> GatedSession:
        self.calls["open_session"] += 1
        session = GatedSession(self)
        self.sessions.append(session)
        return session


class Recorder:
    def __init__(self) -> None:
        self.events: list[OperationEvent] = []

    def on_operation(self, event: OperationEvent) -> None:
        self.events.append(event)


def _manager() -> StoreManager:
    return StoreManager({"probe": NO_PROBE, "stores": {"s": {"driver": GatedDriver}}})


def _driver(store: Store) -> GatedDriver:
    assert isinstance(store.driver, GatedDriver)
    return store.driver


def _users(store: Store) -> int:
    users = store.statistics()["sessions"]["users"]
    assert isinstance(users, int)
    return users


async def _closed(session: FakeSession) -> None:
    """Wait (bounded) for the close the pool runs in a task of its own."""
    assert isinstance(session, GatedSession)
    async with asyncio.timeout(10):
        await session.closed.wait()
    assert session.close_count == 1


def _spy_call(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the operations that go through the generic ``Store._call``."""
    seen: list[str] = []
    generic = store._call

    def call(operation: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        seen.append(operation)
        return generic(operation, *args, **kwargs)

    monkeypatch.setattr(store, "_call", call)
    return seen


async def test_the_common_read_takes_the_straight_path_and_an_observed_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _manager() as manager:
        store = manager["s"]
        _driver(store).objects["k"] = b"abc"
        generic = _spy_call(store, monkeypatch)
        assert await store.read("k") == b"abc"
        assert generic == ["read"], "the first read opens the loop's shared session"
        generic.clear()
        assert await store.read("k") == b"abc"
        assert await store.read("k", offset=1, length=1) == b"b"
        assert generic == []
        recorder = Recorder()
        manager.instrument(recorder)
        assert await store.read("k", offset=1) == b"bc"
        assert generic == ["read"]
        assert [(e.operation, e.outcome, e.bytes) for e in recorder.events] == [("read", "ok", 2)]
        manager.uninstrument(recorder)
        assert await store.read("k") == b"abc"
        assert generic == ["read"]


@pytest.mark.parametrize("observed", [False, True], ids=["straight", "generic"])
async def test_every_read_outcome_gives_the_shared_session_back(observed: bool) -> None:
    async with _manager() as manager:
        store = manager["s"]
        driver = _driver(store)
        if observed:
            manager.instrument(Recorder())
        driver.objects["k"] = b"abc"
        assert await store.read("k") == b"abc"
        first = driver.sessions[0]
        assert _users(store) == 0

        with pytest.raises(StoreError) as missing:
            await store.read("nope")
        assert (missing.value.store, missing.value.key) == ("s", "nope")
        assert _users(store) == 0

        # A stray OSError becomes the contract's error, with its context.
        driver.fail_next["read"] = OSError(errno.EIO, "input/output error")
        with pytest.raises(StoreError) as stray:
            await store.read("k")
        assert (stray.value.store, stray.value.key) == ("s", "k")
        assert _users(store) == 0

        # Not a StoreError nor an OSError: passes through as it is.
        driver.fail_next["read"] = LookupError("the driver's own bug")
        with pytest.raises(LookupError):
            await store.read("k")
        assert _users(store) == 0
        assert driver.sessions == [first] and first.close_count == 0

        async def suspended_read(cancel: Callable[[asyncio.Task[bytes]], Awaitable[None]]) -> None:
            driver.gate, driver.entered = asyncio.Event(), asyncio.Event()
            task = asyncio.ensure_future(store.read("k"))
            await driver.entered.wait()
            assert _users(store) == 1
            await cancel(task)
            driver.gate = None
            assert _users(store) == 0

        async def cancel_once(task: asyncio.Task[bytes]) -> None:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        async def cancel_twice(task: asyncio.Task[bytes]) -> None:
            task.cancel()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        await suspended_read(cancel_once)
        await suspended_read(cancel_twice)

        # By timeout, and by a task group whose other task fails.
        driver.gate, driver.entered = asyncio.Event(), asyncio.Event()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await store.read("k")
        assert _users(store) == 0

        async def fail_once_inside() -> None:
            await driver.entered.wait()
            raise RuntimeError("a sibling fails")

        driver.entered = asyncio.Event()
        with pytest.raises(ExceptionGroup) as group:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(store.read("k"))
                tg.create_task(fail_once_inside())
        assert group.group_contains(RuntimeError)
        assert _users(store) == 0
        driver.gate = None

        # Cancellation never retires the session; the next read uses the same one.
        assert await store.read("k") == b"abc"
        assert driver.sessions == [first] and first.close_count == 0
        assert C.DRIVER_REUSABLE in store.capabilities

        # A session-level error retires it: closed at once (no other user), replaced next time.
        driver.fail_next["read"] = StoreError("connection reset", session_broken=True)
        with pytest.raises(StoreError) as broken:
            await store.read("k")
        assert broken.value.session_broken and broken.value.store == "s"
        await _closed(first)
        assert C.DRIVER_REUSABLE not in store.capabilities
        assert await store.read("k") == b"abc"
        assert len(driver.sessions) == 2 and driver.sessions[1].close_count == 0
        assert C.DRIVER_REUSABLE in store.capabilities
        assert _users(store) == 0


async def test_a_session_that_reports_itself_broken_is_replaced_on_read() -> None:
    async with _manager() as manager:
        store = manager["s"]
        driver = _driver(store)
        driver.objects["k"] = b"abc"
        assert await store.read("k") == b"abc"
        driver.sessions[0].broken = True
        assert await store.read("k") == b"abc"
        assert len(driver.sessions) == 2
        await _closed(driver.sessions[0])
        assert store.statistics()["sessions"]["retired"] == 1


async def test_the_pool_asks_is_broken_only_of_sessions_whose_class_defines_it() -> None:
    config = {
        "probe": NO_PROBE,
        "stores": {"m": {"driver": "memory"}, "s": {"driver": GatedDriver}},
    }
    async with StoreManager(config) as manager:
        await manager["m"].put("k", b"v")
        await manager["s"].exists("k")
        memory = manager["m"]._pool.acquire_nowait()
        fake = manager["s"]._pool.acquire_nowait()
        assert memory is not None and fake is not None
        assert not memory.may_break, "the memory session inherits the base's constant False"
        assert fake.may_break
        manager["m"]._pool.release_nowait(memory)
        manager["s"]._pool.release_nowait(fake)


class StrKey(str):
    pass


BAD_READS: list[tuple[Any, dict[str, Any]]] = [
    (5, {}),
    (b"k", {}),
    ("", {}),
    ("/k", {}),
    ("k/", {}),
    ("a//b", {}),
    ("a/../b", {}),
    ("a\\b", {}),
    ("k\x00", {}),
    ("k\x85", {}),
    ("é" * 600, {}),
    ("k", {"offset": -1}),
    ("k", {"offset": 1.5}),
    ("k", {"offset": True}),
    ("k", {"offset": None}),
    ("k", {"length": -1}),
    ("k", {"length": "3"}),
    ("k", {"length": False}),
    ("missing", {}),
]
GOOD_READS: list[tuple[Any, dict[str, Any]]] = [
    ("k", {}),
    (StrKey("k"), {}),
    ("k", {"offset": 1}),
    ("k", {"length": 2}),
    ("k", {"offset": 2, "length": 0}),
    ("k", {"offset": 10}),
    ("dir/ü.txt", {}),
]


async def _outcomes(store: Store, reads: list[tuple[Any, dict[str, Any]]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, kwargs in reads:
        try:
            data = await store.read(key, **kwargs)
        except Exception as exc:
            out.append((type(exc).__name__, str(exc)))
        else:
            out.append(("ok", repr(data)))
    return out


async def test_read_answers_as_the_generic_pipeline_does() -> None:
    """Every input, in every capability state, gives the same answer on both paths."""
    async with _manager() as manager:
        store = manager["s"]
        driver = _driver(store)
        driver.objects.update({"k": b"abc", "dir/ü.txt": b"u"})
        reads = BAD_READS + GOOD_READS

        async def both() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
            straight = await _outcomes(store, reads)
            recorder = Recorder()
            manager.instrument(recorder)  # observed: every read takes the generic pipeline
            try:
                generic = await _outcomes(store, reads)
            finally:
                manager.uninstrument(recorder)
            return straight, generic

        straight, generic = await both()
        assert straight == generic
        assert ("ok", repr(b"bc")) in straight
        assert [name for name, _ in straight].count("NotFound") == 1
        assert [name for name, _ in straight].count("ok") == len(GOOD_READS)

        # An operator's unset: plain reads pass, ranged ones are refused, on both paths.
        store.unset_capabilities(C.READ_OFFSET | C.READ_CHUNK, reason="maintenance")
        straight, generic = await both()
        assert straight == generic
        assert any(name == "StoreRandomGetNotSupported" for name, _ in straight)
        assert ("ok", repr(b"abc")) in straight
        store.set_capabilities(C.READ_OFFSET | C.READ_CHUNK)

        # Health probing revoked READ_ACCESS: every admitted read is refused, transiently.
        driver.unhealthy[C.READ_ACCESS] = "the disk is gone"
        for _ in range(10):
            await store.probe(immediate=True)
            if C.READ_ACCESS not in store.capabilities:
                break
        assert C.READ_ACCESS not in store.capabilities
        straight, generic = await both()
        assert straight == generic
        assert any("the disk is gone" in text for _, text in straight)
        assert not any(name == "ok" for name, _ in straight)


@pytest.mark.parametrize("observed", [False, True], ids=["straight", "generic"])
async def test_the_evidence_rule_on_read(observed: bool) -> None:
    """A successful read proves READ_ACCESS, a ranged one READ_RANDOM; a failed one nothing."""
    async with _manager() as manager:
        store = manager["s"]
        driver = _driver(store)
        driver.objects["k"] = b"abc"
        if observed:
            manager.instrument(Recorder())
        health = store._health
        for kwargs, proven in [
            ({}, int(C.READ_ACCESS)),
            ({"offset": 1}, int(C.READ_RANDOM)),
            ({"length": 1}, int(C.READ_RANDOM)),
        ]:
            health.proven = 0
            await store.read("k", **kwargs)
            assert health.proven == proven, kwargs
        health.proven = 0
        with pytest.raises(StoreError):
            await store.read("missing")
        driver.fail_next["read"] = OSError(errno.EIO, "input/output error")
        with pytest.raises(StoreError):
            await store.read("k", offset=1)
        assert health.proven == 0
