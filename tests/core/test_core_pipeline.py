"""The one operation pipeline (issue 14): the same validation for ``Store.put`` and the manager's
fail-over put, unencodable metadata, per-loop shared sessions on real drivers, readers that are
never closed, cancellation of a put stuck in a blocking system call, operator set/unset, delete
while full, and instrumentation."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiostore import (
    Capability,
    InvalidMetadata,
    Store,
    StoreAddDisabled,
    StoreDeleteNotSupported,
    StoreManager,
)
from aiostore.instrumentation import OperationEvent, ProbeEvent
from aiostore.testing import FaultInjector, S3Server
from aiostore.testing._servers import StaticServer

C = Capability
QUIET = {"interval": 3600.0, "initial": False}


# -- manager.put and Store.put validate identically ----------------------------------------------

BAD_PUTS: list[dict[str, Any]] = [
    {"key": "../x"},
    {"key": ""},
    {"key": "a\x00b"},
    {"key": 7},
    {"size": -1},
    {"size": True},
    {"size": "3"},
    {"size": 1.5},
    {"metadata": {"a": 1}},
    {"metadata": "text"},
    {"metadata": {"a": "\ud800"}},
    {"metadata": {"\udcff": "x"}},
    {"hash_algo": "nope"},
    {"size": 2},  # the data has 3 bytes
]


@pytest.mark.parametrize("bad", BAD_PUTS, ids=[repr(b) for b in BAD_PUTS])
async def test_manager_put_and_store_put_raise_the_same_error(bad: dict[str, Any]) -> None:
    config = {"probe": QUIET, "stores": {"m": {"driver": "memory"}}}
    errors = []
    async with StoreManager(config) as manager:
        for put in (manager["m"].put, manager.put):
            args = {"key": "k", "data": b"abc", **bad}
            key = args.pop("key")
            data = args.pop("data")
            with pytest.raises(Exception) as info:
                await put(key, data, **args)
            errors.append(type(info.value))
        assert not [info async for info in manager["m"].list()], "nothing was stored"
    assert errors[0] is errors[1], errors


async def _refuses_unencodable_metadata(store: Store) -> None:
    for metadata in ({"a": "\ud800"}, {"\ud800": "a"}, {"a": ["ok", {"b": "\udfff"}]}):
        with pytest.raises(InvalidMetadata):
            await store.put("k", b"abc", metadata=metadata)
    assert not await store.exists("k")


async def test_unencodable_metadata_is_invalid_metadata_memory(memory_store: Store) -> None:
    await _refuses_unencodable_metadata(memory_store)


async def test_unencodable_metadata_is_invalid_metadata_file(file_store: Store) -> None:
    await _refuses_unencodable_metadata(file_store)


async def test_unencodable_metadata_is_invalid_metadata_s3(s3_store: Store) -> None:
    await _refuses_unencodable_metadata(s3_store)


# -- one shared session per live event loop ------------------------------------------------------


@contextlib.contextmanager
def _other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="other-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.asynccontextmanager
async def _store_for(kind: str, tmp_path: Path, s3: S3Server | None) -> AsyncIterator[Store]:
    server: StaticServer | None = None
    if kind == "file":
        cfg: dict[str, Any] = {"driver": "file", "root": str(tmp_path / "root")}
    elif kind == "s3":
        assert s3 is not None
        cfg = s3.store_config()
    else:
        directory = tmp_path / "www"
        directory.mkdir()
        (directory / "k").write_bytes(b"v" * 100)
        server = StaticServer(directory)
        cfg = {"driver": "http", "base_url": await server.start()}
    try:
        async with StoreManager({"probe": QUIET, "stores": {"s": cfg}}) as manager:
            yield manager["s"]
    finally:
        if server is not None:
            await server.aclose()


@pytest.mark.parametrize("kind", ["file", "s3", "http"])
async def test_two_live_loops_alternating_on_one_store(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, s3_server: S3Server
) -> None:
    s3 = s3_server if kind == "s3" else None
    caplog.set_level(logging.INFO, logger="aiostore")
    with _other_loop() as other:
        async with _store_for(kind, tmp_path, s3) as store:
            if kind != "http":
                await store.put("k", b"v" * 100)
            changes = store.changes()

            async def use() -> bytes:
                data = await store.read("k", offset=1, length=10)
                assert await store.exists("k")
                return data

            for _ in range(10):
                assert await use() == b"v" * 10
                fut = asyncio.run_coroutine_threadsafe(use(), other)
                assert await asyncio.wrap_future(fut) == b"v" * 10
            stats = store.statistics()["sessions"]
            assert stats["retired"] == 0, stats
            assert stats["opened"] == 2 and stats["loops"] == 2, stats
            assert changes.get_nowait() is None, "no capability changed"
            assert C.DRIVER_REUSABLE in store.capabilities
            changes.close()
        # The other loop's session is closed on its own loop when the manager closes.
        for _ in range(500):
            if store.statistics()["sessions"]["open"] == 0:
                break
            await asyncio.sleep(0.01)
        assert store.statistics()["sessions"]["open"] == 0
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]


# -- readers that are never closed ---------------------------------------------------------------


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_ten_abandoned_readers_leak_no_fd_after_the_manager_exits(tmp_path: Path) -> None:
    config = {"probe": QUIET, "stores": {"f": {"driver": "file", "root": str(tmp_path)}}}
    before = _fds()
    readers = []
    async with StoreManager(config) as manager:
        store = manager["f"]
        await store.put("big", b"x" * (3 << 20))
        for _ in range(10):
            reader = store.open("big")
            async for _chunk in reader:
                break  # abandoned: never closed, still referenced
            readers.append(reader)
        assert store.statistics()["open"] == 10
        assert len(_fds() - before) >= 10
    # A read-ahead already in a worker thread closes its fd as its pread returns: give the
    # threads that were reading when the manager closed the readers a moment to finish.
    for _ in range(200):
        if not _fds() - before:
            break
        await asyncio.sleep(0.01)
    leaked = _fds() - before
    assert not leaked, f"fds still open after the manager exited: {len(leaked)}"
    assert all(r._resource is None for r in readers)


async def test_a_reader_collected_unclosed_warns_and_gives_its_session_back() -> None:
    config = {"probe": QUIET, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        store = manager["m"]
        await store.put("k", b"x" * (3 << 20))

        async def abandon() -> None:
            reader = store.open("k")
            async for _chunk in reader:
                break

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await abandon()
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught)
        for _ in range(100):
            if store.statistics()["sessions"]["users"] == 0:
                break
            await asyncio.sleep(0.01)
        assert store.statistics()["sessions"]["users"] == 0


# -- cancelling a put stuck in a blocking system call --------------------------------------------


async def test_a_put_stuck_in_a_blocked_read_is_cancelled_within_a_second(tmp_path: Path) -> None:
    """The put's input is a FIFO nobody writes to: its read() blocks in the kernel, in a worker
    thread. Cancelling returns at once; feeding the FIFO afterwards commits nothing."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Opening a FIFO for reading blocks until a writer opens it: hold a writer open.
    writer = os.open(fifo, os.O_RDWR)
    source = open(fifo, "rb", buffering=0)  # noqa: SIM115, ASYNC230 - a FIFO, closed below
    config = {"probe": QUIET, "stores": {"f": {"driver": "file", "root": str(tmp_path / "r")}}}
    try:
        async with StoreManager(config) as manager:
            store = manager["f"]
            task = asyncio.create_task(store.put("k", source))
            await asyncio.sleep(0.3)
            assert not task.done()
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 1.0
            os.write(writer, b"late data")
            os.close(writer)
            writer = -1
            await asyncio.sleep(0.3)
            assert not await store.exists("k")
            assert [i async for i in store.list()] == []
        leftovers = [p for p in (tmp_path / "r").rglob("*") if p.is_file()]
        assert not [p for p in leftovers if "probe" not in p.name], leftovers
    finally:
        if writer >= 0:
            os.close(writer)
        source.close()


# -- operator set/unset --------------------------------------------------------------------------


async def test_unset_holds_whatever_probing_says_until_set() -> None:
    config = {"probe": {"interval": 0.05}, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        store = manager["m"]
        changes = store.changes()
        store.unset_capabilities(C.WRITE_ACCESS, reason="maintenance")
        assert C.WRITE_ACCESS not in store.capabilities
        change = changes.get_nowait()
        assert change is not None and "maintenance" in change.reason
        await manager.probe("m")
        await asyncio.sleep(0.2)  # several scheduled probes: none restores it
        assert C.WRITE_ACCESS not in store.capabilities
        with pytest.raises(StoreAddDisabled) as info:
            await store.put("k", b"x")
        assert info.value.transient and "maintenance" in str(info.value)
        with pytest.raises(StoreDeleteNotSupported):
            await store.delete("k")
        assert store.health.unset == {"WRITE_ACCESS": "maintenance"}
        entry = manager.snapshot()["stores"]["m"]
        assert "WRITE_ACCESS" in entry["unset"]["names"]
        assert entry["unset"]["reason"] == "maintenance"
        assert C.READ_RANDOM in store.capabilities
        store.set_capabilities(C.WRITE_ACCESS)
        assert store.capabilities == store.configured_capabilities
        await store.put("k", b"x")
        changes.close()


async def test_set_never_exceeds_configured_and_config_applies_unset() -> None:
    config = {
        "probe": QUIET,
        "stores": {
            "ro": {"driver": "memory", "read_only": True},
            "m": {"driver": "memory", "unset": ["READ_RANDOM"], "unset_reason": "slow disk"},
        },
    }
    async with StoreManager(config) as manager:
        manager["ro"].set_capabilities(C.WRITE_ACCESS)
        assert C.WRITE_ACCESS not in manager["ro"].capabilities
        m = manager["m"]
        assert C.READ_OFFSET not in m.capabilities and C.READ_ACCESS in m.capabilities
        assert "slow disk" in m.health.unset["READ_RANDOM"]
    with pytest.raises(Exception, match="unset"):
        StoreManager({"stores": {"m": {"driver": "memory", "unset": ["FLY"]}}})


# -- delete while full ---------------------------------------------------------------------------


async def test_a_full_store_can_be_emptied_and_recovers() -> None:
    config = {
        "probe": {"interval": 0.05, "failures_to_revoke": 1, "successes_to_restore": 1},
        "stores": {"m": {"driver": "memory"}},
    }
    async with StoreManager(config) as manager:
        store = manager["m"]
        await store.put("old", b"x" * 100)
        faults = FaultInjector(manager)
        handle = faults.fail_writes(store, errno.ENOSPC)
        with pytest.raises(Exception, match="ENOSPC"):
            await store.put("new", b"y")
        assert C.WRITE_ACCESS not in store.capabilities
        assert store.snapshot.full_only
        await store.delete("old")  # deleting is how room is made
        with pytest.raises(StoreAddDisabled):
            await store.put("new", b"y")
        # Read-only is not "full": deletes are refused then.
        handle.undo()
        ro = faults.read_only(store)
        await manager.probe("m")
        await manager.probe("m")
        assert not store.snapshot.full_only
        with pytest.raises(StoreDeleteNotSupported):
            await store.delete("new")
        ro.undo()
        await asyncio.wait_for(store.wait_for(C.WRITE_ACCESS), 5)
        await store.put("new", b"y")


# -- instrumentation -----------------------------------------------------------------------------


async def test_instruments_see_operations_probes_and_changes() -> None:
    seen: dict[str, list[Any]] = {"op": [], "probe": [], "change": []}

    class Recorder:
        def on_operation(self, event: OperationEvent) -> None:
            seen["op"].append(event)

        def on_probe(self, event: ProbeEvent) -> None:
            seen["probe"].append(event)

        def on_change(self, change: Any) -> None:
            seen["change"].append(change)

    config = {"probe": QUIET, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        manager.instrument(Recorder())
        store = manager["m"]
        await store.put("k", b"abc")
        assert await store.read("k") == b"abc"
        with pytest.raises(Exception, match="k2"):
            await store.read("k2")
        await manager.probe("m")
        store.unset_capabilities(C.WRITE_ACCESS, reason="x")
    ops = [(e.operation, e.outcome, e.bytes) for e in seen["op"]]
    assert ("put", "ok", 3) in ops and ("read", "ok", 3) in ops and ("read", "NotFound", 0) in ops
    assert all(e.duration >= 0 for e in seen["op"])
    assert seen["probe"] and seen["probe"][0].store == "m"
    assert len(seen["change"]) == 1 and "x" in seen["change"][0].reason


# -- extras --------------------------------------------------------------------------------------


def test_a_missing_extra_names_the_extra_to_install() -> None:
    """``pip install aiostore`` brings file and memory stores only; an s3 store without the
    ``s3`` extra is a configuration error that says what to install."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('aiobotocore', 'botocore'):\n"
        "    sys.modules[name] = None\n"
        "import aiostore\n"
        "from aiostore import BadStoreConfiguration, StoreManager\n"
        "try:\n"
        "    StoreManager({'stores': {'s': {'driver': 's3', 'bucket': 'b'}}})\n"
        "except BadStoreConfiguration as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "aiostore[s3]" in out.stdout, out


def test_importing_aiostore_loads_no_backend_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, aiostore, aiostore.sdk, aiostore.testing\n"
        "loaded = [m for m in ('aiobotocore', 'botocore', 'azure', 'gcloud', 'pytest')"
        " if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout


async def test_a_failing_instrument_is_removed_and_storage_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        calls = 0

        def on_operation(self, event: OperationEvent) -> None:
            Broken.calls += 1
            raise RuntimeError("exporter down")

    config = {"probe": QUIET, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        manager.instrument(Broken())
        await manager["m"].put("k", b"x")
        await manager["m"].put("k2", b"x")
        assert Broken.calls == 1
        assert not manager._instruments.wants_operations
    assert any("exporter down" in (r.exc_text or "") or r.exc_info for r in caplog.records)
