"""The file driver on a real file system, through the store facade (``StoreManager``).

Faults that need mounts (full disks, read-only mounts, late roots, no xattrs) are in
``test_file_faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import json
import os
import random
import stat
import threading
import time
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import aiostore
from aiostore import Capability, StoreManager, errors
from aiostore.drivers.file import _session as file_session
from aiostore.drivers.file import _write as file_write
from aiostore.testing.conformance import ConformanceSuite

from .conftest import eventually, file_manager, leftovers, open_fds_under

KiB = 1024
MiB = 1024 * 1024
XATTR = "user.aiostore.meta"


def blob(size: int, salt: int = 0) -> bytes:
    pattern = bytes((i * 7 + salt) % 251 for i in range(4096))
    return (pattern * (size // len(pattern) + 1))[:size]


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def keys(store: aiostore.Store, prefix: str = "") -> list[str]:
    return [info.key async for info in store.list(prefix)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
async def manager(root: Path) -> AsyncIterator[StoreManager]:
    # A small chunk size, so that a few hundred KiB exercise the multi-chunk paths. No probing
    # after the start-up probe: its probe file would show among leftovers and open files.
    async with file_manager(root, chunk_size=64 * KiB, probe={"interval": 3600}) as m:
        yield m


@pytest.fixture
def store(manager: StoreManager) -> aiostore.Store:
    return manager["f"]


class TestFileConformance(ConformanceSuite):
    """The public conformance suite, on this driver."""

    concurrent_puts = 20

    @pytest.fixture
    def store_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"driver": "file", "root": str(tmp_path / "conformance")}


class TestFileConformanceWithNamedTemporaryFiles(TestFileConformance):
    """The suite again, as on a file system without O_TMPFILE (NFS, FUSE): puts go through
    locked temporary files in ``.aiostore-tmp/`` and are published across directories."""

    @pytest.fixture(autouse=True)
    def _no_o_tmpfile(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(file_write, "_HAS_TMPFILE", False)


async def test_start_up_reclaims_dead_writers_files_and_keeps_live_ones(tmp_path: Path) -> None:
    root = tmp_path / "root"
    tmp = root / ".aiostore-tmp"
    tmp.mkdir(parents=True)
    old = time.time() - 60
    for name in ("111-dead", "222-live"):
        (tmp / name).write_bytes(b"partial")
        os.utime(tmp / name, (old, old))
    holder = os.open(tmp / "222-live", os.O_RDONLY)  # its writer still runs (elsewhere)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        async with file_manager(root, probe={"enabled": False}) as m:
            assert sorted(p.name for p in tmp.iterdir()) == ["222-live"]
            await m["f"].put("k", b"v")
            assert await keys(m["f"]) == ["k"]  # the directory is never listed
    finally:
        os.close(holder)


# -- basic operations -------------------------------------------------------------------------


async def test_put_read_ranges_stat_write_delete(store: aiostore.Store, root: Path) -> None:
    data = blob(300 * KiB + 5)
    stored = await store.put("dir/sub/obj.bin", chunks_of(data, 50_000), size=len(data))
    assert stored.size == len(data)
    assert stored.location == f"file://{root}/dir/sub/obj.bin"
    # The file holds the raw bytes: no header, no trailer.
    assert (root / "dir" / "sub" / "obj.bin").read_bytes() == data
    assert await store.read("dir/sub/obj.bin") == data
    for offset, length in [(0, 10), (7, 1), (65_536, 65_536), (100_000, None), (len(data) - 3, 10)]:
        expected = data[offset:] if length is None else data[offset : offset + length]
        assert await store.read("dir/sub/obj.bin", offset=offset, length=length) == expected
        async with store.open("dir/sub/obj.bin", offset=offset, length=length) as reader:
            assert reader.size == len(expected)
            assert await reader.read() == expected
    assert await store.read("dir/sub/obj.bin", offset=len(data) + 10) == b""
    assert await store.read("dir/sub/obj.bin", offset=5, length=0) == b""
    info = await store.stat("dir/sub/obj.bin")
    assert (info.key, info.size, dict(info.metadata)) == ("dir/sub/obj.bin", len(data), {})
    assert info.modified is not None and abs(info.modified - time.time()) < 60
    assert await store.exists("dir/sub/obj.bin") is True
    assert await store.exists("dir/sub") is False  # a prefix, not an object

    assert await store.write("dir/sub/obj.bin", b"PATCH", offset=10) == 5
    patched = data[:10] + b"PATCH" + data[15:]
    assert await store.read("dir/sub/obj.bin") == patched
    assert await store.write("dir/sub/obj.bin", b"tail", offset=len(data) - 2) == 4
    assert await store.read("dir/sub/obj.bin", offset=len(data) - 4) == patched[-4:-2] + b"tail"
    with pytest.raises(errors.InvalidRange):
        await store.write("dir/sub/obj.bin", b"hole", offset=len(data) + 100)
    with pytest.raises(errors.NotFound):
        await store.write("missing", b"x", offset=0)

    await store.delete("dir/sub/obj.bin")
    assert await store.exists("dir/sub/obj.bin") is False
    for call in (
        store.delete("dir/sub/obj.bin"),
        store.read("dir/sub/obj.bin"),
        store.stat("dir/sub/obj.bin"),
        store.delete("dir/sub"),
        store.read("dir"),
    ):
        with pytest.raises(errors.NotFound):
            await call
    assert leftovers(root) == []


async def test_streaming_read_is_chunked_and_releases_the_file(
    store: aiostore.Store, root: Path
) -> None:
    data = blob(1 * MiB + 123, salt=3)
    await store.put("big", data)
    async with store.open("big") as reader:
        parts = [chunk async for chunk in reader]
    assert b"".join(parts) == data
    assert max(len(p) for p in parts) <= 64 * KiB  # chunk_size per read: bounded memory
    assert len(parts) == -(-len(data) // (64 * KiB))
    # Stopping early (read-ahead in flight) and cancellation release the file too.
    async with store.open("big", offset=1000) as reader:
        async for _ in reader:
            break
    reader2 = store.open("big")
    with anyio.move_on_after(0.001):
        async with reader2:
            async for _ in reader2:
                await asyncio.sleep(0.01)
    for _ in range(100):
        if not open_fds_under(root):
            break
        await asyncio.sleep(0.01)
    assert open_fds_under(root) == []


async def test_a_read_error_mid_stream_is_translated_and_releases_the_file(
    store: aiostore.Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(1 * MiB)
    await store.put("big", data)
    real = os.pread

    def failing(fd: int, n: int, offset: int) -> bytes:
        if offset >= 256 * KiB:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", failing)
    got = []
    with pytest.raises(errors.BackendUnavailable, match="Input/output error") as info:
        async with store.open("big") as reader:
            async for chunk in reader:
                got.append(chunk)
    assert isinstance(info.value.__cause__, OSError)
    assert (info.value.store, info.value.key) == ("f", "big")
    assert b"".join(got) == data[: 256 * KiB]  # everything before the fault, in order
    assert open_fds_under(root) == []


async def test_a_small_object_takes_one_thread_hop_a_large_one_one_writer_job(
    store: aiostore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real = file_session.run_blocking

    async def counting(func: Any, *args: Any, **kw: Any) -> Any:
        # A put's steps are one method with the step's name first.
        hops.append(args[0] if args and isinstance(args[0], str) else func.__name__)
        return await real(func, *args, **kw)

    monkeypatch.setattr(file_session, "run_blocking", counting)
    await store.put("small", b"x" * 5000)
    assert hops == ["small"]
    hops.clear()
    assert await store.read("small") == b"x" * 5000
    assert hops == ["read"]
    hops.clear()
    async with store.open("small") as reader:
        await reader.read()
    assert hops == ["open_read"]
    hops.clear()
    data = blob(10 * 64 * KiB)  # ten chunks
    await store.put("large", chunks_of(data, 64 * KiB))
    # One job writes the whole object: the loop only queues chunks for it.
    assert hops == ["stream"]
    assert await store.read("large") == data
    hops.clear()
    await store.put("gathered", chunks_of(data, 4 * KiB), overwrite=True)
    assert hops == ["stream"]
    assert await store.read("gathered") == data


async def test_open_file_descriptors_are_released(store: aiostore.Store, root: Path) -> None:
    await store.put("a/b", b"data", metadata={"k": "v"})
    await store.read("a/b")
    await store.stat("a/b")
    await store.exists("a/b")
    await keys(store)
    with pytest.raises(errors.Duplicate):
        await store.put("a/b", b"again")
    await store.write("a/b", b"D", offset=0)
    await store.delete("a/b")
    assert open_fds_under(root) == []


# -- atomicity --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3000, 300 * KiB], ids=["one-hop", "streamed"])
async def test_twenty_concurrent_create_only_puts_have_one_winner(
    store: aiostore.Store, root: Path, size: int
) -> None:
    payloads = [blob(size, salt=i) for i in range(20)]
    results = await asyncio.gather(
        *(store.put("race/key", chunks_of(p, 64 * KiB)) for p in payloads),
        return_exceptions=True,
    )
    winners = [i for i, r in enumerate(results) if isinstance(r, aiostore.StoredObject)]
    assert len(winners) == 1, results
    assert all(isinstance(r, errors.Duplicate) for i, r in enumerate(results) if i != winners[0])
    assert await store.read("race/key") == payloads[winners[0]]
    assert leftovers(root) == []


async def test_duplicate_keeps_the_object_and_overwrite_replaces_it(
    store: aiostore.Store, root: Path
) -> None:
    await store.put("k", b"first", metadata={"v": "1"})
    with pytest.raises(errors.Duplicate) as info:
        await store.put("k", blob(200 * KiB))
    assert (info.value.store, info.value.key) == ("f", "k")
    assert await store.read("k") == b"first"
    await store.put("k", b"second", overwrite=True)
    assert await store.read("k") == b"second"
    assert dict((await store.stat("k")).metadata) == {}  # metadata goes with the object
    assert leftovers(root) == []


async def test_duplicate_is_found_before_the_input_is_streamed(store: aiostore.Store) -> None:
    await store.put("exists", b"x")
    pulled = 0

    async def many_chunks() -> AsyncIterator[bytes]:
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield blob(64 * KiB, salt=i)

    with pytest.raises(errors.Duplicate):
        await store.put("exists", many_chunks())
    assert pulled <= 2  # not 100 chunks written to a temporary file and thrown away


async def test_size_mismatch_leaves_nothing(store: aiostore.Store, root: Path) -> None:
    data = blob(200 * KiB)
    with pytest.raises(errors.SizeMismatch):
        await store.put("long", chunks_of(data, 64 * KiB), size=len(data) - 1)
    with pytest.raises(errors.SizeMismatch):
        await store.put("short", chunks_of(data, 64 * KiB), size=len(data) + 1)
    with pytest.raises(errors.SizeMismatch):
        await store.put("short-small", b"abc", size=4)
    assert await keys(store) == []
    await store.put("kept", b"original")
    with pytest.raises(errors.SizeMismatch):
        await store.put("kept", chunks_of(data, 64 * KiB), size=10, overwrite=True)
    assert await store.read("kept") == b"original"
    assert leftovers(root) == []


@pytest.mark.parametrize("existing", [None, b"original object"], ids=["new", "overwrite"])
async def test_cancelled_put_leaves_nothing(
    store: aiostore.Store, root: Path, existing: bytes | None
) -> None:
    if existing is not None:
        await store.put("dir/obj", existing, metadata={"old": "yes"})
    midway = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        for i in range(4):  # four chunks: the temporary file exists by now
            yield blob(64 * KiB, salt=i)
        midway.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put("dir/obj", stalling(), overwrite=True))
    await asyncio.wait_for(midway.wait(), 10)
    # Mid-put: its file is open (unnamed where the file system has O_TMPFILE, else named) —
    # by the writer job, in a worker thread: wait for it.
    assert await eventually(lambda: bool(open_fds_under(root)))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(root) == []
    if existing is None:
        assert await store.exists("dir/obj") is False
    else:
        assert await store.read("dir/obj") == existing
        assert dict((await store.stat("dir/obj")).metadata) == {"old": "yes"}
    assert Capability.WRITE_ACCESS in store.capabilities
    assert open_fds_under(root) == []


async def test_a_large_put_queues_only_a_few_chunks_ahead_of_its_writer(
    store: aiostore.Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-pressure: while the writer is stuck, the put stops pulling its input after a few
    chunks (memory stays bounded); once it moves again, everything arrives in order."""
    gate = threading.Event()
    entered = threading.Event()
    real_write_all = file_write.write_all

    def gated_write_all(fd: int, chunks: list[bytes]) -> None:
        entered.set()
        gate.wait(10)
        real_write_all(fd, chunks)

    monkeypatch.setattr(file_write, "write_all", gated_write_all)
    pulled = 0
    data = blob(100 * 64 * KiB)

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for i in range(0, len(data), 64 * KiB):
            pulled += 1
            yield data[i : i + 64 * KiB]

    task = asyncio.create_task(store.put("big", source()))
    try:
        assert await anyio.to_thread.run_sync(entered.wait, 5)
        await asyncio.sleep(0.3)  # room for the loop to run ahead, if it would
        assert pulled <= 12, pulled  # the feed (4 chunks) and the hash lanes' depth, no more
    finally:
        gate.set()
    await task
    assert await store.read("big") == data
    assert leftovers(root) == [] and open_fds_under(root) == []


async def test_a_writer_that_fails_stops_the_put_at_once(
    store: aiostore.Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread fails mid-stream (disk full): the put raises that error without
    reading the rest of its input (a loop waiting for room is released), and leaves nothing."""
    calls = 0
    real_write_all = file_write.write_all

    def failing_write_all(fd: int, chunks: list[bytes]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, chunks)

    monkeypatch.setattr(file_write, "write_all", failing_write_all)
    pulled = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield blob(64 * KiB, salt=i)

    with pytest.raises(errors.StorageFull):
        await asyncio.wait_for(store.put("full", source()), 10)
    assert pulled < 30, pulled
    assert await keys(store) == []
    assert leftovers(root) == []
    # The StorageFull revoked WRITE_ACCESS and asked for an early probe, whose unnamed probe
    # file may be open for a moment: wait for that, the put's own files are already closed.
    assert await eventually(lambda: not open_fds_under(root))


@pytest.mark.parametrize("fsync", [True, False])
async def test_a_large_put_starts_writing_back_as_it_goes(
    root: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """With fsync on, the writer starts the write-back of every 8 MiB it has written, in
    order and without gaps, so the final fsync has only the tail left; without fsync, never."""
    ranges: list[tuple[int, int]] = []
    real = file_write.start_writeback

    def recording(fd: int, offset: int, length: int) -> None:
        ranges.append((offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(file_write, "start_writeback", recording)
    data = blob(MiB)
    size = 20 * MiB
    async with file_manager(root, fsync=fsync, probe={"interval": 3600}) as m:
        await m["f"].put("big", chunks_of(data * 20, MiB), size=size)
        assert (await m["f"].stat("big")).size == size
    if not fsync:
        assert ranges == []
        return
    assert ranges and ranges[0][0] == 0
    assert all(length >= 8 * MiB for _, length in ranges)
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(ranges))
    assert ranges[-1][0] + ranges[-1][1] <= size


async def test_native_asyncio_cancellation_never_closes_a_file_under_a_running_write(
    store: aiostore.Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.timeout / task.cancel() return at once while a put's write still runs in its
    thread; that write must never land in whatever file reuses the fd number next (the running
    step, not the caller, closes the put's files), so every read sees a whole object and nothing
    is left once the threads are done."""
    rng = random.Random(11)
    current = blob(100 * KiB, salt=250)
    await store.put("k", current)
    running = 0
    lock = threading.Lock()
    real_write_all = file_write.write_all

    def slow_write_all(fd: int, chunks: list[bytes]) -> None:
        nonlocal running
        with lock:
            running += 1
        try:
            time.sleep(0.003)  # widen the window a cancellation can hit
            real_write_all(fd, chunks)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(file_write, "write_all", slow_write_all)

    async def slow(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 64 * KiB):
            await asyncio.sleep(0)
            yield data[i : i + 64 * KiB]

    async def read_slowly() -> None:
        async with store.open("k") as reader:
            async for _ in reader:
                await asyncio.sleep(0)

    cancelled = 0
    for i in range(40):
        new = blob(rng.choice([100 * KiB, 700 * KiB]), salt=i)
        try:
            async with asyncio.timeout(rng.uniform(0, 0.01)):
                await store.put("k", slow(new), overwrite=True)
        except TimeoutError:
            cancelled += 1
        data = await store.read("k")
        assert data in (current, new), i
        current = data
        task = asyncio.create_task(read_slowly())
        await asyncio.sleep(rng.uniform(0, 0.003))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert cancelled > 5
    # Abandoned writes finish by themselves and then clean up.
    assert await eventually(lambda: running == 0)
    # A writer job closes its files after its last write returns: wait for that, not a nap.
    assert await eventually(lambda: not leftovers(root) and not open_fds_under(root))
    assert await keys(store) == ["k"]
    assert await store.read("k") == current


@pytest.mark.parametrize("how", ["task.cancel", "asyncio.timeout", "anyio scope", "twice"])
async def test_a_put_whose_write_hangs_is_cancelled_at_once(
    store: aiostore.Store, root: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The in-process twin of the FUSE test in test_file_hardening.py: a write that hangs
    (here: waits for a gate) does not hold back the caller's cancellation; once it returns,
    its step removes the files and the object never appears."""
    gate = threading.Event()
    entered = threading.Event()
    real_write_all = file_write.write_all

    def hanging_write_all(fd: int, chunks: list[bytes]) -> None:
        if chunks:
            entered.set()
            gate.wait(10)
        real_write_all(fd, chunks)

    await store.put("k", b"old", metadata={"v": "old"})
    # Only the put under test hangs (the one above writes through write_all too).
    monkeypatch.setattr(file_write, "write_all", hanging_write_all)
    data = blob(300 * KiB)
    try:
        t0 = time.monotonic()
        coro = store.put("k" if how == "twice" else "new", chunks_of(data, 64 * KiB),
                         overwrite=True)  # fmt: skip
        if how == "asyncio.timeout":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await coro
            assert time.monotonic() - t0 < 0.7
        elif how == "anyio scope":
            with anyio.move_on_after(0.2) as scope:
                await coro
            assert scope.cancelled_caught
            assert time.monotonic() - t0 < 0.7
        else:
            task = asyncio.create_task(coro)
            assert await anyio.to_thread.run_sync(entered.wait, 5)
            started = time.monotonic()
            task.cancel()
            if how == "twice":
                await asyncio.sleep(0)
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 0.5
        assert entered.is_set() and not gate.is_set()  # the write still hangs
    finally:
        gate.set()
    assert await eventually(lambda: not leftovers(root) and not open_fds_under(root))
    await asyncio.sleep(0.05)
    assert await keys(store) == ["k"]
    assert await store.read("k") == b"old"
    assert dict((await store.stat("k")).metadata) == {"v": "old"}


async def test_failing_input_leaves_nothing(store: aiostore.Store, root: Path) -> None:
    class Broken(Exception):
        pass

    async def failing() -> AsyncIterator[bytes]:
        yield blob(100 * KiB)
        yield blob(100 * KiB)
        raise Broken

    with pytest.raises(Broken):
        await store.put("x", failing())
    assert not await store.exists("x")
    assert leftovers(root) == []


# -- metadata, keys, listing ------------------------------------------------------------------


async def test_metadata_round_trip_in_an_xattr(store: aiostore.Store, root: Path) -> None:
    meta = {"name": "Zoë", "tags": ["a", "β"], "nested": {"k": "v", "deep": {"x": "ÿ"}}}
    await store.put("m/obj", b"payload", metadata=meta)
    assert dict((await store.stat("m/obj")).metadata) == meta
    [listed] = [info async for info in store.list("m/")]
    assert dict(listed.metadata) == meta
    # On disk: JSON in the file's own xattr (atomic with it), no sidecar.
    assert json.loads(os.getxattr(root / "m" / "obj", XATTR)) == meta
    assert leftovers(root) == []
    await store.put("m/obj", blob(300 * KiB), metadata={"v": "2"}, overwrite=True)
    assert dict((await store.stat("m/obj")).metadata) == {"v": "2"}
    await store.write("m/obj", b"patched", offset=0)
    assert dict((await store.stat("m/obj")).metadata) == {"v": "2"}


async def test_unicode_keys(store: aiostore.Store, root: Path, manager: StoreManager) -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    names = ["résumé/日本語/🎉.txt", "Ωmega", nfc, nfd, "space name/with spaces"]
    for i, key in enumerate(names):
        stored = await store.put(key, f"object {i}".encode(), metadata={"key": key})
        assert manager.resolve(stored.location) == (store, key)
    for i, key in enumerate(names):
        assert await store.read(key) == f"object {i}".encode()
        assert dict((await store.stat(key)).metadata) == {"key": key}
    assert await keys(store) == sorted(names)  # NFC and NFD stay two keys
    assert (root / "résumé" / "日本語" / "🎉.txt").read_bytes() == b"object 0"


async def test_listing_is_sorted_by_key_and_walks_prefixes(
    store: aiostore.Store, root: Path
) -> None:
    names = ["a", "a-b", "a.b", "a/b", "a/c/d", "a0", "b", ".hidden", "z/y/x/w"]
    for key in names:
        if key == "a":
            continue  # "a" is a directory here; a file store cannot have both
        await store.put(key, key.encode())
    names.remove("a")
    assert await keys(store) == sorted(names)
    assert await keys(store, "a/") == ["a/b", "a/c/d"]
    assert await keys(store, "a") == sorted(k for k in names if k.startswith("a"))
    assert await keys(store, "a/c") == ["a/c/d"]
    assert await keys(store, "a/b/") == []
    assert await keys(store, "nothing/") == []
    assert await keys(store, "z/y/") == ["z/y/x/w"]
    sizes = {info.key: info.size async for info in store.list()}
    assert sizes["a/c/d"] == len(b"a/c/d")


async def test_listing_ignores_the_drivers_own_files_and_foreign_names(
    store: aiostore.Store, root: Path
) -> None:
    await store.put("d/real", b"x")
    for junk in (
        "d/.real.aiostore-tmp-0123456789ab",
        "d/.real.aiostore-meta-12345",
        ".aiostore-probe-abcdef",
        "d/back\\slash",
        "d/new\nline",
    ):
        (root / junk).write_bytes(b"junk")
    os.mkfifo(root / "d" / "fifo")
    assert await keys(store) == ["d/real"]
    with pytest.raises(errors.NotFound):
        await store.read("d/fifo")  # not a regular file; opening it does not hang


async def test_names_shaped_like_internal_files_are_ordinary_keys(
    store: aiostore.Store, root: Path
) -> None:
    """Issue 15 #9: the memory store accepts them, so this one does; they never reach (or
    clash with) the driver's own files, and the driver's files never show as these keys."""
    keys_ = [".x.aiostore-tmp-0123", "d/.aiostore-probe-1", ".a.aiostore-meta-1/b",
             ".aiostore-tmp", "d/.obj.aiostore-meta-1"]  # fmt: skip
    for key in keys_:
        await store.put(key, key.encode(), metadata={"k": key})
    # The driver's own files of the same shape, made by hand: never listed, never read.
    (root / "d" / ".x.aiostore-tmp-0123").write_bytes(b"internal")
    for key in keys_:
        assert await store.read(key) == key.encode()
        assert dict((await store.stat(key)).metadata) == {"k": key}
    assert sorted(await keys(store)) == sorted(keys_)
    assert (root / "d" / ".x.aiostore-tmp-0123").read_bytes() == b"internal"
    for key in keys_:
        await store.delete(key)
    assert await keys(store) == []


async def test_keys_conflicting_with_prefixes(store: aiostore.Store) -> None:
    await store.put("a", b"object a")
    with pytest.raises(errors.KeyConflict) as info:
        await store.put("a/b", b"x")
    # A conflict, not a fault of the store: nothing that would revoke or look like a miss.
    assert not isinstance(info.value, errors.NotFound | errors.StorageFull)
    assert not isinstance(info.value, errors.StorageWriteDenied)
    assert "prefix" in str(info.value)
    await store.put("d/e", b"x")
    for overwrite in (False, True):
        with pytest.raises(errors.KeyConflict) as info:
            await store.put("d", b"x", overwrite=overwrite)
        assert "prefix" in str(info.value)
    assert await store.read("d/e") == b"x"
    assert Capability.WRITE_ACCESS in store.capabilities  # the store is fine


# -- no way out of the root -------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_bytes(b"outside secret")
    return out


async def test_escape_attempts_are_refused(
    store: aiostore.Store, manager: StoreManager, tmp_path: Path, outside: Path
) -> None:
    for key in ("../x", "/etc/passwd", "a/../../x", str(outside / "secret"), "..", "a/./b"):
        with pytest.raises(errors.InvalidKey):
            await store.put(key, b"x")
        with pytest.raises(errors.InvalidKey):
            await store.read(key)
    # Sessions used directly check too (defence in depth).
    async with manager.session("f") as session:
        for key in ("../x", "/abs", "a/../../x", "..", "a//b", "../outside/secret"):
            with pytest.raises(errors.InvalidKey):
                await session.read(key, 0, None)
            with pytest.raises(errors.InvalidKey):
                await session.delete(key)
    assert not (tmp_path / "x").exists()
    assert (outside / "secret").read_bytes() == b"outside secret"


async def test_a_symlink_leading_outside_is_refused(
    store: aiostore.Store, root: Path, outside: Path
) -> None:
    (root / "link").symlink_to(outside / "secret")
    for call in (store.read("link"), store.stat("link"), store.read("link", offset=1, length=2)):
        with pytest.raises(errors.NotFound, match="outside the store root"):
            await call
    with pytest.raises(errors.NotFound):
        async with store.open("link") as reader:
            await reader.read()
    assert await store.exists("link") is False
    with pytest.raises(errors.StorageWriteDenied, match="outside the store root"):
        await store.write("link", b"pwned", offset=0)
    with pytest.raises(errors.StorageWriteDenied):
        await store.put("link", b"pwned", overwrite=True)
    with pytest.raises(errors.StoreError):
        await store.put("link", b"pwned")
    with pytest.raises(errors.StorageWriteDenied):
        await store.delete("link")
    assert (outside / "secret").read_bytes() == b"outside secret"
    assert (root / "link").is_symlink()
    assert await keys(store) == []
    # One poisoned key is not a store fault: nothing was revoked.
    assert Capability.WRITE_ACCESS in store.capabilities
    assert Capability.READ_ACCESS in store.capabilities
    assert leftovers(root) == []


async def test_a_symlinked_directory_leading_outside_is_refused(
    store: aiostore.Store, root: Path, outside: Path
) -> None:
    await store.put("keep", b"x")
    (root / "evil").symlink_to(outside, target_is_directory=True)
    (root / "nested").mkdir()
    (root / "nested" / "up").symlink_to("../../outside", target_is_directory=True)
    for base in ("evil", "nested/up"):
        with pytest.raises(errors.StorageWriteDenied, match="outside the store root"):
            await store.put(f"{base}/new", b"pwned")
        with pytest.raises(errors.StorageWriteDenied):
            await store.put(f"{base}/deeper/new", b"pwned")
        with pytest.raises(errors.NotFound):
            await store.read(f"{base}/secret")
        with pytest.raises(errors.StorageWriteDenied):
            await store.write(f"{base}/secret", b"pwned", offset=0)
        with pytest.raises(errors.StorageWriteDenied):
            await store.delete(f"{base}/secret")
        assert await store.exists(f"{base}/secret") is False
        assert await keys(store, f"{base}/") == []
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"outside secret"
    assert await keys(store) == ["keep"]
    assert Capability.WRITE_ACCESS in store.capabilities


async def test_symlinks_that_stay_inside_the_root_are_followed(
    store: aiostore.Store, root: Path
) -> None:
    await store.put("real/obj", b"inside", metadata={"m": "1"})
    (root / "alias").symlink_to("real/obj")
    (root / "dirlink").symlink_to("real", target_is_directory=True)
    assert await store.read("alias") == b"inside"
    assert await store.read("dirlink/obj", offset=1) == b"nside"
    assert dict((await store.stat("alias")).metadata) == {"m": "1"}
    await store.put("dirlink/new", b"via link")
    assert (root / "real" / "new").read_bytes() == b"via link"
    assert await keys(store) == ["real/new", "real/obj"]  # listings never follow links


# -- lifecycle, options, health ---------------------------------------------------------------


async def test_start_creates_the_root_and_sweeps_stale_files(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "root"
    async with file_manager(root) as m:
        assert root.is_dir()
        await m["f"].put("d/live", b"object")
    d = root / "d"
    live_ino = (d / "live").stat().st_ino
    old = time.time() - 2 * 3600
    stale = {
        "d/.live.aiostore-tmp-000000000000": True,
        ".aiostore-probe-000000000000": True,
        "d/.gone.aiostore-meta-999999999": True,  # orphan sidecar
        f"d/.live.aiostore-meta-{live_ino}": False,  # sidecar of a live object: kept
    }
    for name in stale:
        (root / name).write_bytes(b"{}")
        os.utime(root / name, (old, old))
    # A put in progress in another process: its writer holds an flock on the file, however old
    # its last change; and a file changed just now (its writer may not have locked it yet).
    live = d / ".live.aiostore-tmp-111111111111"
    live.write_bytes(b"a put in progress elsewhere")
    os.utime(live, (old, old))
    (d / ".fresh.aiostore-tmp-222222222222").write_bytes(b"just created")
    holder = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        async with file_manager(root) as m:
            for name, removed in stale.items():
                assert (root / name).exists() is not removed, name
            assert live.exists()
            assert (d / ".fresh.aiostore-tmp-222222222222").exists()
            assert await m["f"].read("d/live") == b"object"
    finally:
        os.close(holder)


def test_options_are_validated(tmp_path: Path) -> None:
    for bad, option in [
        ({"chunk_size": 10}, "chunk_size"),
        ({"min_free_bytes": -1}, "min_free_bytes"),
        ({"min_free_percent": 150}, "min_free_percent"),
        ({"file_mode": "644"}, "file_mode"),
        ({"file_mode": 0o17777}, "file_mode"),
        ({"fsync": "yes"}, "fsync"),
        ({"root": ""}, "root"),
        ({"bucket": "x"}, "bucket"),
    ]:
        table = {"driver": "file", "root": str(tmp_path), **bad}
        with pytest.raises(errors.BadStoreConfiguration) as info:
            StoreManager({"stores": {"s": table}})
        assert info.value.option == option and info.value.store == "s", info.value
    with pytest.raises(errors.BadStoreConfiguration) as info:
        StoreManager({"stores": {"s": {"driver": "file"}}})
    assert info.value.option == "root"
    table = {"driver": "file", "root": str(tmp_path), "read_only": True}
    m = StoreManager({"stores": {"s": table}})
    assert Capability.WRITE_ACCESS not in m["s"].configured_capabilities
    assert m["s"].native_capabilities == Capability.RW_RANDOM | Capability.DRIVER_REUSABLE


async def test_file_mode_is_applied_exactly(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        async with file_manager(tmp_path / "r", file_mode=0o664) as m:
            await m["f"].put("small", b"x")
            await m["f"].put("big", blob(300 * KiB))
    finally:
        os.umask(old)
    for name in ("small", "big"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o664


@pytest.mark.parametrize("fsync", [True, False])
async def test_fsync_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    synced: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    async with file_manager(tmp_path / "r", fsync=fsync, probe={"enabled": False}) as m:
        monkeypatch.setattr(os, "fsync", counting)
        await m["f"].put("a/b", b"x")
        await m["f"].put("a/c", blob(300 * KiB))
        await m["f"].delete("a/b")
    if fsync:
        # Per put: the file and its directory (plus the new directory's parent); the delete's dir.
        assert len(synced) >= 6
    else:
        assert synced == []


async def test_probe_reports_free_space_below_the_minimum(tmp_path: Path) -> None:
    async with file_manager(tmp_path / "r", min_free_bytes=1 << 50) as m:
        store = m["f"]
        # The start-up probe applies at once: writes are revoked, reads are not.
        assert Capability.WRITE_ACCESS not in store.capabilities
        assert Capability.READ_RANDOM in store.capabilities
        reason = store.health.capabilities["WRITE_ACCESS"].reason
        assert reason.startswith("disk full:") and "< min_free_bytes 1024.0 TiB" in reason
        with pytest.raises(errors.StoreAddDisabled) as info:
            await store.put("x", b"x")
        assert info.value.transient
    async with file_manager(tmp_path / "r", min_free_percent=100.0) as m:
        reason = m["f"].health.capabilities["WRITE_ACCESS"].reason
        assert "free < min_free_percent 100%" in reason
        assert Capability.WRITE_ACCESS not in m["f"].capabilities


async def test_a_missing_root_is_revoked_and_restored(tmp_path: Path) -> None:
    root = tmp_path / "r"
    probe = {"failures_to_revoke": 1, "successes_to_restore": 1}
    async with file_manager(root, probe=probe) as m:
        store = m["f"]
        await store.put("x", b"x")
        os.unlink(root / "x")
        root.rmdir()
        with anyio.fail_after(5):
            await store.wait_for(Capability.READ_ACCESS, present=False)
        assert Capability.WRITE_ACCESS not in store.capabilities
        assert store.health.capabilities["READ_ACCESS"].reason == f"root missing: {root}"
        with pytest.raises(errors.StoreGetNotSupported):
            await store.read("x")
        await asyncio.sleep(0.2)
        assert not root.exists()  # a root that vanished is not silently recreated
        root.mkdir()
        with anyio.fail_after(5):
            await store.wait_healthy()


async def test_a_root_that_cannot_be_created_at_start_up_is_created_later(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "parent"
    blocker.write_bytes(b"a file where the root's parent should be")
    root = blocker / "root"
    async with file_manager(root, probe={"successes_to_restore": 1}) as m:  # start() must not raise
        store = m["f"]
        assert store.configured_capabilities == Capability.RW_RANDOM | Capability.DRIVER_REUSABLE
        assert Capability.WRITE_ACCESS not in store.capabilities
        assert Capability.READ_ACCESS not in store.capabilities
        reason = store.health.capabilities["WRITE_ACCESS"].reason
        assert reason.startswith(f"root missing: {root}"), reason
        with pytest.raises(errors.StoreAddDisabled):
            await store.put("x", b"x")
        blocker.unlink()
        blocker.mkdir()
        with anyio.fail_after(5):
            await store.wait_healthy()
        assert root.is_dir()  # the probe did what start() could not
        await store.put("x", b"x")
        assert await store.read("x") == b"x"


# -- file systems without user xattrs or hard links -------------------------------------------


def _no_xattrs(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(*args: Any, **kw: Any) -> Any:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    monkeypatch.setattr(os, "getxattr", unsupported)


async def test_metadata_falls_back_to_inode_keyed_sidecars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real thing runs on ramfs in test_file_faults.py; this one runs anywhere."""
    _no_xattrs(monkeypatch)
    root = tmp_path / "r"
    async with file_manager(root, chunk_size=64 * KiB, probe={"interval": 3600}) as m:
        store = m["f"]
        await store.put("d/obj", b"one", metadata={"v": "1"})
        ino = (root / "d" / "obj").stat().st_ino
        assert leftovers(root) == [f"d/.obj.aiostore-meta-{ino}"]
        assert dict((await store.stat("d/obj")).metadata) == {"v": "1"}
        await store.put("d/obj", blob(200 * KiB), metadata={"v": "2"}, overwrite=True)
        ino2 = (root / "d" / "obj").stat().st_ino
        assert leftovers(root) == [f"d/.obj.aiostore-meta-{ino2}"]  # the old one went
        assert [(i.key, dict(i.metadata)) async for i in store.list()] == [("d/obj", {"v": "2"})]
        await store.put("d/plain", b"no metadata")  # still gets one: inode reuse stays safe
        plain_ino = (root / "d" / "plain").stat().st_ino
        assert json.loads((root / "d" / f".plain.aiostore-meta-{plain_ino}").read_bytes()) == {}
        with pytest.raises(errors.Duplicate):
            await store.put("d/obj", b"dup", metadata={"v": "3"})
        await store.delete("d/obj")
        await store.delete("d/plain")
        assert leftovers(root) == []


async def test_create_only_puts_stay_atomic_without_hard_links(
    store: aiostore.Store, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: Any, **kw: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    # A file system without hard links (vfat, some FUSE) has no O_TMPFILE either.
    monkeypatch.setattr(file_write, "_HAS_TMPFILE", False)
    results = await asyncio.gather(
        *(store.put("k", blob(3000, salt=i)) for i in range(20)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, aiostore.StoredObject)]
    assert len(winners) == 1, results
    assert all(isinstance(r, errors.Duplicate) for r in results if r is not winners[0])
    assert leftovers(root) == []


async def test_a_put_cancelled_twice_natively_still_removes_its_temporary_file(
    tmp_path: Path,
) -> None:
    """A second task.cancel() while the put's clean-up waits for a worker thread (all busy)
    does not drop the clean-up: no temporary file and no descriptor is left behind."""
    root = tmp_path / "root"
    asked_again = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a" * (2 << 20)  # more than chunk_size: the put opens its temporary file
        asked_again.set()
        await asyncio.Event().wait()  # the client stalls
        yield b""  # pragma: no cover

    async with file_manager(root, probe={"enabled": False}) as manager:
        store = manager["f"]
        put = asyncio.create_task(store.put("k", chunks()))
        await asyncio.wait_for(asked_again.wait(), 10)
        # The put's writer job creates its file in a worker thread while the put already asks
        # for more input: wait until the file is open.
        assert await eventually(lambda: bool(open_fds_under(root)))
        # Every worker thread busy: the put's clean-up job has to queue.
        release = threading.Event()
        limiter = anyio.to_thread.current_default_thread_limiter()
        blockers = [
            asyncio.create_task(anyio.to_thread.run_sync(release.wait, 10))
            for _ in range(int(limiter.total_tokens))
        ]
        await asyncio.sleep(0.05)
        try:
            put.cancel()
            for _ in range(5):
                await asyncio.sleep(0)
            put.cancel()
            await asyncio.sleep(0.05)
        finally:
            release.set()
        with pytest.raises(asyncio.CancelledError):
            await put
        await asyncio.gather(*blockers)
        assert leftovers(root) == []
        assert open_fds_under(root) == []
        assert not await store.exists("k")


async def test_a_read_only_store_is_probed_without_writing(tmp_path: Path) -> None:
    """read_only = true: the probe reads the root and never creates a probe file."""
    root = tmp_path / "ro"
    root.mkdir()
    config = {
        "probe": {"enabled": False},
        "stores": {"f": {"driver": "file", "root": str(root), "read_only": True}},
    }
    async with aiostore.StoreManager(config) as manager:
        store = manager["f"]
        before = root.stat().st_mtime_ns  # creating and removing a probe file changes it
        for _ in range(3):
            await asyncio.sleep(0.01)
            await store.probe()
        assert root.stat().st_mtime_ns == before
        assert Capability.WRITE_ACCESS not in store.capabilities
        assert Capability.READ_RANDOM in store.capabilities
