"""The plugin's fixtures, fault injector and wait_for_capability, used in this process (the
repository runs pytest-asyncio in auto mode)."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path
from typing import Any

import pytest

from aiostore import (
    Capability,
    StorageFull,
    StorageWriteDenied,
    Store,
    StoreAddDisabled,
    StoreError,
    StoreManager,
    StoreRandomGetNotSupported,
)
from aiostore.testing import (
    CapabilityWaitTimeout,
    FaultInjector,
    HTTPServerStore,
    wait_for_capability,
)

C = Capability


async def test_store_manager_runs_a_memory_and_a_file_store(
    store_manager: StoreManager, memory_store: Store, file_store: Store, tmp_path: Path
) -> None:
    assert store_manager.names == ["memory", "file"]
    assert store_manager.default is memory_store
    assert store_manager["file"] is file_store
    assert memory_store.health.probing and file_store.health.probing
    assert memory_store.probe_config.interval == 0.05
    await file_store.put("dir/key", b"on disk")
    assert await file_store.read("dir/key") == b"on disk"
    assert any(p.is_file() for p in (tmp_path / "aiostore-file").rglob("*"))
    assert not await memory_store.exists("dir/key")


async def test_read_only_fault_and_its_undo(memory_store: Store, faults: FaultInjector) -> None:
    handle = faults.read_only(memory_store)
    with pytest.raises(StorageWriteDenied):
        await memory_store.put("k", b"v")
    # The failure proved WRITE_ACCESS lost: refused before any I/O from now on.
    with pytest.raises(StoreAddDisabled) as info:
        await memory_store.put("k", b"v")
    assert info.value.transient is True
    assert C.READ_ACCESS in memory_store.capabilities
    handle.undo()
    assert not handle.active and not memory_store.faults.active
    await wait_for_capability(memory_store, C.WRITE_ACCESS, timeout=5)
    await memory_store.put("k", b"v")


async def test_fail_writes_with_an_errno(file_store: Store, faults: FaultInjector) -> None:
    with faults.fail_writes("file"):  # names resolve against the test's fixtures
        with pytest.raises(StorageFull) as info:
            await file_store.put("k", b"v")
        assert "ENOSPC" in str(info.value)
        await wait_for_capability(file_store, C.WRITE_ACCESS, present=False, timeout=1)
    await wait_for_capability(file_store, C.WRITE_ACCESS, timeout=5)
    with (
        faults.fail_writes(file_store, errno=errno.EACCES),
        pytest.raises(StorageWriteDenied, match="EACCES"),
    ):
        await file_store.put("k", b"v")


async def test_probe_verdicts_follow_write_faults(
    memory_store: Store, faults: FaultInjector
) -> None:
    faults.fail_writes(memory_store)
    # No operation fails here: the prober alone finds WRITE_ACCESS unhealthy.
    await wait_for_capability(memory_store, C.WRITE_ACCESS, present=False, timeout=5)
    assert "ENOSPC" in str(memory_store.health)


async def test_drop_ranges(memory_store: Store, faults: FaultInjector) -> None:
    await memory_store.put("k", b"0123456789")
    with faults.drop_ranges(memory_store):
        with pytest.raises(StoreRandomGetNotSupported):
            await memory_store.read("k", offset=2)
        assert C.READ_RANDOM not in memory_store.capabilities
        assert await memory_store.read("k") == b"0123456789"
    await wait_for_capability(memory_store, C.READ_RANDOM, timeout=5)
    assert await memory_store.read("k", offset=2, length=3) == b"234"


async def test_latency(memory_store: Store, faults: FaultInjector) -> None:
    await memory_store.put("k", b"v")
    with faults.latency(memory_store, 0.2):
        started = time.monotonic()
        await memory_store.read("k")
        assert time.monotonic() - started >= 0.19
    started = time.monotonic()
    await memory_store.read("k")
    assert time.monotonic() - started < 0.19


async def test_fail_probes(memory_store: Store, faults: FaultInjector) -> None:
    with faults.fail_probes(memory_store, "backend exploded"):
        await wait_for_capability(memory_store, C.READ_ACCESS, present=False, timeout=5)
        assert "backend exploded" in str(memory_store.health)
        assert C.WRITE_ACCESS not in memory_store.capabilities
    await wait_for_capability(memory_store, C.RW_RANDOM, timeout=5)


class TestHangingProbes:
    @pytest.fixture
    def store_manager_config(self, store_manager_config: dict[str, Any]) -> dict[str, Any]:
        """Probes time out fast here, so that hanging probes fail quickly."""
        store_manager_config["probe"]["timeout"] = 0.2
        return store_manager_config

    async def test_hang_probes(self, memory_store: Store, faults: FaultInjector) -> None:
        with faults.hang_probes(memory_store):
            await wait_for_capability(memory_store, C.READ_ACCESS, present=False, timeout=5)
            assert "timed out after 0.2s" in str(memory_store.health)
        await wait_for_capability(memory_store, C.READ_ACCESS, timeout=5)


async def test_break_session(memory_store: Store, faults: FaultInjector) -> None:
    await memory_store.put("k", b"v")
    retired = memory_store.statistics()["sessions"]["retired"]
    faults.break_session(memory_store)
    with pytest.raises(StoreError) as info:
        await memory_store.read("k")
    assert info.value.session_broken
    # The shared session was retired; the next operation gets a fresh one.
    assert await memory_store.read("k") == b"v"
    assert memory_store.statistics()["sessions"]["retired"] == retired + 1
    await wait_for_capability(memory_store, C.DRIVER_REUSABLE, timeout=5)


def test_handles_stack_per_switch() -> None:
    """Nested and out-of-order undos end where they started."""
    manager = StoreManager({"stores": {"m": {"driver": "memory"}}})
    store = manager["m"]
    injector = FaultInjector(manager)
    first = injector.fail_writes("m", errno.EDQUOT)
    second = injector.fail_writes(store)
    third = injector.latency(store, 0.5)
    assert store.faults.write_errno == errno.ENOSPC
    first.undo()
    assert store.faults.write_errno == errno.ENOSPC  # the newer fault still holds
    second.undo()
    second.undo()  # idempotent
    assert store.faults.write_errno is None
    assert injector.handles == (third,)
    assert "latency" in repr(third) and "active" in repr(third)
    injector.undo_all()
    assert not store.faults.active and injector.handles == ()
    with injector.read_only(store) as handle:
        assert store.faults.read_only and handle.active
    assert not store.faults.read_only


def test_bad_fault_arguments() -> None:
    store = StoreManager({"stores": {"m": {"driver": "memory"}}})["m"]
    injector = FaultInjector()
    with pytest.raises(ValueError):
        injector.fail_writes(store, errno=0)
    with pytest.raises(ValueError):
        injector.latency(store, -1)
    with pytest.raises(ValueError):
        injector.latency(store, float("inf"))
    with pytest.raises(TypeError, match="cannot resolve"):
        injector.read_only("m")
    assert injector.handles == () and not store.faults.active


async def test_unknown_store_name(faults: FaultInjector, memory_store: Store) -> None:
    with pytest.raises(LookupError, match="nope"):
        faults.read_only("nope")


async def test_wait_for_capability_reports_health_on_timeout(memory_store: Store) -> None:
    await wait_for_capability(memory_store, C.RW_RANDOM, timeout=0.01)  # already held
    started = time.monotonic()
    with pytest.raises(CapabilityWaitTimeout) as info:
        await wait_for_capability(memory_store, C.WRITE_ACCESS, present=False, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 3
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, AssertionError)
    message = str(info.value)
    assert "'memory'" in message and "WRITE_ACCESS to be lost" in message
    assert str(memory_store.health).splitlines()[0] in message


async def test_wait_for_capability_on_a_stopped_manager() -> None:
    manager = StoreManager({"stores": {"m": {"driver": "memory"}}})
    with pytest.raises(CapabilityWaitTimeout, match="not probing"):
        await wait_for_capability(manager["m"], C.WRITE_ACCESS, present=False, timeout=0.1)


async def test_wait_for_a_capability_never_configured() -> None:
    manager = StoreManager({"stores": {"ro": {"driver": "memory", "read_only": True}}})
    with pytest.raises(CapabilityWaitTimeout, match="can never be held"):
        await wait_for_capability(manager["ro"], C.WRITE_ACCESS, timeout=0.1)


async def test_http_server_store(http_server_store: HTTPServerStore) -> None:
    pytest.importorskip("aiostore.drivers.http")
    store, directory = http_server_store
    (directory / "a").mkdir()
    (directory / "a" / "b.txt").write_bytes(b"served bytes")
    http_server_store.seed("c/d e.bin", b"\x00\x01\x02")
    assert await store.read("a/b.txt") == b"served bytes"
    assert await store.read("a/b.txt", offset=7, length=3) == b"byt"
    assert await store.read("c/d e.bin") == b"\x00\x01\x02"
    assert (await store.stat("a/b.txt")).size == 12
    assert not await store.exists("a")  # a directory is not an object
    assert store.driver.options.base_url.startswith("http://127.0.0.1:")
    assert C.WRITE_ACCESS not in store.configured_capabilities
    assert C.READ_RANDOM in store.capabilities


async def test_s3_store_has_a_fresh_bucket(s3_store: Store) -> None:
    pytest.importorskip("aiostore.drivers.s3")
    assert [i async for i in s3_store.list()] == []
    await s3_store.put("k", b"v")
    assert await s3_store.read("k") == b"v"
    assert "127.0.0.1" in s3_store.driver.options.endpoint_url


async def test_fixture_runs_on_the_test_loop(store_manager: StoreManager) -> None:
    loop = asyncio.get_running_loop()
    names = {t.get_name() for t in asyncio.all_tasks(loop)}
    assert "aiostore-prober" in names


async def test_docs_example_disk_full_fails_over(
    store_manager: StoreManager, file_store: Store, faults: FaultInjector
) -> None:
    """The first example of docs/testing.md."""
    with faults.fail_writes(file_store):  # ENOSPC by default
        stored = await store_manager.put("k", b"data", stores=["file", "memory"])
        assert stored.store == "memory"
        await wait_for_capability(file_store, C.WRITE_ACCESS, present=False)
    await wait_for_capability(file_store, C.WRITE_ACCESS)  # probes restore it
    assert (await store_manager.put("k2", b"data", stores=["file", "memory"])).store == "file"
