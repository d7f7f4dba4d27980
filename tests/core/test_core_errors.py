"""Errors raised inside driver sessions: context filled in, stray errors translated, sessions
retired on session-level faults, passive signals applied — on the shared and the per-use path."""

from __future__ import annotations

import asyncio
import errno
import pickle
from typing import Any

import pytest

from aiostore import (
    BackendUnavailable,
    NotFound,
    OperationTimeout,
    StorageFull,
    StoreError,
    StoreManager,
)
from aiostore import Capability as C
from aiostore.drivers.base import map_os_error
from aiostore.errors import StorageWriteDenied, StoreAddDisabled

from .support import FakeDriver, FakeSession, fake_store

OPS: dict[str, Any] = {
    "read": lambda s: s.read("k"),
    "read-range": lambda s: s.read("k", offset=1, length=2),
    "open": lambda s: s.open("k").read(),
    "stat": lambda s: s.stat("k"),
    "exists": lambda s: s.exists("k"),
    "write": lambda s: s.write("k", b"x", offset=1),
    "delete": lambda s: s.delete("k"),
    "put": lambda s: s.put("k", b"new", overwrite=True),
}
METHOD = {"read-range": "read"}


async def _manager(reusable: bool) -> StoreManager:
    manager = StoreManager(
        {"probe": {"enabled": False}, "stores": {"s": fake_store(reusable=reusable)}}
    )
    await manager.__aenter__()
    driver = manager["s"].driver
    assert isinstance(driver, FakeDriver)
    driver.objects["k"] = b"0123456789"
    return manager


def _driver(manager: StoreManager) -> FakeDriver:
    driver = manager["s"].driver
    assert isinstance(driver, FakeDriver)
    return driver


@pytest.mark.parametrize("reusable", [True, False], ids=["shared", "per-use"])
@pytest.mark.parametrize("op", list(OPS))
async def test_session_broken_error_is_raised_with_context_and_replaces(
    op: str, reusable: bool
) -> None:
    manager = await _manager(reusable)
    try:
        store, driver = manager["s"], _driver(manager)
        await store.exists("k")  # shared: this session is the one that breaks
        driver.fail_next[METHOD.get(op, op)] = StoreError("connection reset", session_broken=True)
        with pytest.raises(StoreError) as info:
            await OPS[op](store)
        assert info.value.store == "s" and info.value.key == "k"
        assert "connection reset" in str(info.value) and "'s'" in str(info.value)
        broken = driver.sessions[0 if reusable else 1]
        assert broken.close_count == 1, "retired and closed (shared) / closed after use"
        assert driver.open_sessions() == []
        assert C.DRIVER_REUSABLE not in store.capabilities
        assert await store.exists("k"), "the failed call changed nothing"
        assert len(driver.sessions) == (2 if reusable else 3), "a fresh session took over"
        assert isinstance(driver.sessions[-1], FakeSession)
        assert all(s.close_count <= 1 for s in driver.sessions)
        if reusable:
            assert C.DRIVER_REUSABLE in store.capabilities, "restored by the fresh session"
    finally:
        await manager.__aexit__(None, None, None)
    assert all(s.close_count == 1 for s in driver.sessions)


@pytest.mark.parametrize("reusable", [True, False], ids=["shared", "per-use"])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (OSError(errno.EIO, "Input/output error"), BackendUnavailable),
        (FileNotFoundError(errno.ENOENT, "gone"), NotFound),
        (TimeoutError(), OperationTimeout),
    ],
    ids=["EIO", "ENOENT", "timeout"],
)
async def test_stray_low_level_errors_are_translated(
    op: str, reusable: bool, raised: BaseException, expected: type[StoreError]
) -> None:
    manager = await _manager(reusable)
    try:
        store, driver = manager["s"], _driver(manager)
        driver.fail_next[METHOD.get(op, op)] = raised
        with pytest.raises(expected) as info:
            await OPS[op](store)
        assert info.value.__cause__ is raised
        assert info.value.store == "s" and info.value.key == "k"
        assert store.statistics()["sessions"]["users"] == 0
        assert store.statistics()["sessions"]["open"] == (1 if reusable else 0)
    finally:
        await manager.__aexit__(None, None, None)


@pytest.mark.parametrize("op", ["put", "write", "delete"])
async def test_passive_signal_from_a_driver_error(op: str) -> None:
    manager = await _manager(True)
    try:
        store, driver = manager["s"], _driver(manager)
        driver.fail_next[op] = StorageFull("quota exceeded", key="k")
        with pytest.raises(StorageFull):
            await OPS[op](store)
        assert C.WRITE_ACCESS not in store.capabilities
        assert "quota exceeded" in store.health.capabilities["WRITE_ACCESS"].reason
        with pytest.raises(StoreAddDisabled) as info:
            await store.put("other", b"x")
        assert info.value.transient and "quota exceeded" in info.value.reason
        assert await store.read("k") == b"0123456789", "reads are not affected"
    finally:
        await manager.__aexit__(None, None, None)


async def test_cancellation_inside_the_driver_releases_the_shared_session() -> None:
    manager = await _manager(True)
    try:
        store, driver = manager["s"], _driver(manager)
        driver.fail_next["read"] = asyncio.CancelledError()
        with pytest.raises(asyncio.CancelledError):
            await store.read("k")
        assert store.statistics()["sessions"]["users"] == 0
        assert await store.read("k") == b"0123456789"
        assert driver.calls["open_session"] == 1
    finally:
        await manager.__aexit__(None, None, None)


def test_map_os_error() -> None:
    assert isinstance(map_os_error(OSError(errno.ENOSPC, "full")), StorageFull)
    assert isinstance(map_os_error(OSError(errno.EDQUOT, "quota")), StorageFull)
    denied = map_os_error(OSError(errno.EROFS, "ro"), write=True)
    assert isinstance(denied, StorageWriteDenied) and denied.revokes == C.WRITE_ACCESS
    assert isinstance(map_os_error(OSError(errno.EACCES, "no"), write=False), BackendUnavailable)
    assert isinstance(map_os_error(OSError(errno.ENOENT, "no")), NotFound)
    assert isinstance(map_os_error(OSError(errno.ECONNREFUSED, "refused")), BackendUnavailable)


def test_errors_pickle_and_keep_their_context() -> None:
    err = StorageFull("disk full", store="s", key="a/b")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is StorageFull
    assert (copy.store, copy.key, copy.detail, copy.revokes) == (
        "s",
        "a/b",
        "disk full",
        C.WRITE_ACCESS,
    )
    assert str(copy) == str(err) == "store 's', key 'a/b': disk full"
    filled = StoreError("boom").with_context(store="x", key="k")
    assert str(filled) == "store 'x', key 'k': boom" and filled.args == (str(filled),)
    kept = StoreError("boom", store="a").with_context(store="b")
    assert kept.store == "a"
