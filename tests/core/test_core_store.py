"""The Store facade on the memory driver: inputs, checksums, all-or-nothing, readers, fail-over."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import os
import unittest.mock
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiofiles
import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from aiostore import Capability as C
from aiostore import (
    Duplicate,
    InvalidMetadata,
    InvalidRange,
    NotFound,
    ObjectInfo,
    SizeMismatch,
    StorageFull,
    Store,
    StoreAddDisabled,
    StoreManager,
    UnknownHashingAlgo,
)

from .support import CountingChunks, FakeDriver, fake_store

DATA = os.urandom(100_000) + b"tail"


@pytest.fixture
async def manager() -> AsyncIterator[StoreManager]:
    async with StoreManager(
        {"probe": {"enabled": False}, "stores": {"m": {"driver": "memory"}}}
    ) as m:
        yield m


@pytest.fixture
def store(manager: StoreManager) -> Store:
    return manager["m"]


def _chunks(data: bytes, size: int = 7_000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _achunks(data: bytes) -> AsyncIterator[bytes]:
    for chunk in _chunks(data):
        await asyncio.sleep(0)
        yield chunk


def _stream_reader(data: bytes) -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(unittest.mock.Mock(spec=asyncio.Transport))
    reader = aiohttp.StreamReader(protocol, 2**16, loop=loop)

    async def feed() -> None:
        for chunk in _chunks(data, 9_999):
            reader.feed_data(chunk)
            await asyncio.sleep(0.001)
        reader.feed_eof()

    task = asyncio.ensure_future(feed())
    _feeders.add(task)  # referenced while it runs
    task.add_done_callback(_feeders.discard)
    return reader


_feeders: set[asyncio.Future[None]] = set()


INPUT_KINDS = [
    "bytes",
    "bytearray",
    "memoryview",
    "list",
    "generator",
    "async-generator",
    "bytesio",
    "file",
    "aiofiles",
    "stream-reader",
]


@pytest.mark.parametrize("kind", INPUT_KINDS)
async def test_put_from_every_input_kind(store: Store, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "input.bin"
    path.write_bytes(DATA)
    data: Any
    closers: list[Any] = []
    if kind == "bytes":
        data = DATA
    elif kind == "bytearray":
        data = bytearray(DATA)
    elif kind == "memoryview":
        data = memoryview(DATA)
    elif kind == "list":
        data = list(_chunks(DATA))
    elif kind == "generator":
        data = _chunks(DATA)
    elif kind == "async-generator":
        data = _achunks(DATA)
    elif kind == "bytesio":
        data = io.BytesIO(DATA)
    elif kind == "file":
        data = open(path, "rb")  # noqa: SIM115, ASYNC230 - a real sync file; closed below
        closers.append(data.close)
    elif kind == "aiofiles":
        data = await aiofiles.open(path, "rb")
        closers.append(data.close)
    else:
        data = _stream_reader(DATA)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obj = await store.put("obj", data, size=len(DATA), metadata={"kind": kind})
    finally:
        for close in closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result
    # e.g. "coroutine ... was never awaited" from probing an async file synchronously
    assert [str(w.message) for w in caught] == []
    assert obj.size == len(DATA)
    assert obj.checksum == hashlib.md5(DATA).hexdigest()
    assert obj.multihash == hashlib.sha256(DATA).hexdigest()
    assert obj.hash_algo == "sha256"
    assert obj.store == "m" and obj.key == "obj"
    assert obj.location == "memory://m/obj"
    assert obj.metadata == {"kind": kind}
    assert await store.read("obj") == DATA


async def test_memoryview_of_other_formats(store: Store) -> None:
    import array

    arr = array.array("i", range(1000))
    obj = await store.put("arr", memoryview(arr))
    assert obj.size == len(arr) * arr.itemsize
    assert await store.read("arr") == arr.tobytes()


@pytest.mark.parametrize("algo", ["sha256", "sha512", "md5", "sha3_256"])
async def test_multihash_algorithms(store: Store, algo: str) -> None:
    obj = await store.put("k", DATA, hash_algo=algo)
    assert obj.multihash == hashlib.new(algo, DATA).hexdigest()
    assert obj.checksum == hashlib.md5(DATA).hexdigest()
    assert obj.hash_algo == algo


async def test_large_chunks_are_hashed_correctly(store: Store) -> None:
    """Chunks ≥ 256 KiB are hashed in worker threads, overlapped with the driver's work."""
    big = os.urandom(3 * (1 << 20) + 12345)
    obj = await store.put("big", [big[: 1 << 20], big[1 << 20 :]], hash_algo="sha512")
    assert obj.checksum == hashlib.md5(big).hexdigest()
    assert obj.multihash == hashlib.sha512(big).hexdigest()
    assert await store.read("big") == big
    obj2 = await store.put("big2", big)
    assert obj2.multihash == hashlib.sha256(big).hexdigest()


async def test_empty_object(store: Store) -> None:
    obj = await store.put("empty", b"")
    assert obj.size == 0 and obj.checksum == hashlib.md5(b"").hexdigest()
    assert await store.read("empty") == b""
    async with store.open("empty") as reader:
        assert reader.size == 0
        assert [c async for c in reader] == []


@pytest.mark.parametrize("algo", ["sha257", "nope", ""])
async def test_unknown_hash_algo_before_reading(store: Store, algo: str) -> None:
    data = CountingChunks([b"abc"])
    with pytest.raises(UnknownHashingAlgo) as info:
        await store.put("k", data, hash_algo=algo)
    assert info.value.store == "m"
    assert not data.iterated
    assert not await store.exists("k")


@pytest.mark.parametrize("declared", [len(DATA) - 1, len(DATA) + 1, 0])
@pytest.mark.parametrize("kind", ["bytes", "async"])
async def test_size_mismatch_leaves_nothing(store: Store, declared: int, kind: str) -> None:
    def data() -> Any:
        return DATA if kind == "bytes" else _achunks(DATA)

    with pytest.raises(SizeMismatch) as info:
        await store.put("k", data(), size=declared)
    assert info.value.store == "m" and info.value.key == "k"
    assert not await store.exists("k")
    # and an existing object is never damaged by a failed overwrite
    await store.put("k", b"original")
    with pytest.raises(SizeMismatch):
        await store.put("k", data(), size=declared, overwrite=True)
    assert await store.read("k") == b"original"
    assert store.driver.used == len(b"original")  # type: ignore[attr-defined]


async def test_too_long_fails_as_soon_as_exceeded(store: Store) -> None:
    source = CountingChunks([b"12345", b"67890", b"more", b"never"])
    with pytest.raises(SizeMismatch):
        await store.put("k", source, size=6)
    assert source.pulled == 2


async def test_cancelled_put_leaves_nothing(store: Store) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"part"
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.ensure_future(store.put("k", slow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.exists("k")
    assert store.statistics()["sessions"]["users"] == 0


async def test_duplicate_and_overwrite(store: Store) -> None:
    await store.put("k", b"one")
    source = CountingChunks([b"two"])
    with pytest.raises(Duplicate) as info:
        await store.put("k", source)
    assert isinstance(info.value, FileExistsError)
    assert info.value.store == "m" and info.value.key == "k"
    assert await store.read("k") == b"one"
    obj = await store.put("k", b"three", overwrite=True)
    assert obj.size == 5
    assert await store.read("k") == b"three"


async def test_concurrent_create_only_puts_are_atomic(store: Store) -> None:
    async def put(i: int) -> str:
        try:
            await store.put("same", _achunks(bytes([i]) * 20_000))
        except Duplicate:
            return "dup"
        return "ok"

    results = await asyncio.gather(*(put(i) for i in range(10)))
    assert results.count("ok") == 1 and results.count("dup") == 9
    data = await store.read("same")
    assert len(data) == 20_000 and len(set(data)) == 1


async def test_metadata_round_trip(store: Store) -> None:
    meta = {"owner": "me", "tags": ["a", "b"], "nested": {"deep": {"x": "y"}, "list": [{"k": "v"}]}}
    obj = await store.put("k", b"v", metadata=meta)
    assert obj.metadata == meta
    info = await store.stat("k")
    assert info == ObjectInfo("k", 1, info.modified, meta)
    assert info.modified is not None
    listed = [i async for i in store.list()]
    assert listed[0].metadata == meta


@pytest.mark.parametrize(
    "meta",
    [
        {"n": 1},
        {"b": True},
        {"none": None},
        {"l": ["ok", 2]},
        {1: "int key"},
        {"nested": {"x": 1.5}},
        {"big": "x" * 3000},
        ["not", "a", "mapping"],
        "string",
    ],
)
async def test_invalid_metadata_before_reading(store: Store, meta: Any) -> None:
    source = CountingChunks([b"abc"])
    with pytest.raises(InvalidMetadata) as info:
        await store.put("k", source, metadata=meta)
    assert info.value.store == "m" and info.value.key == "k"
    assert not source.iterated
    assert not await store.exists("k")


async def test_reads_ranges_and_past_end(store: Store) -> None:
    await store.put("k", b"0123456789")
    assert await store.read("k") == b"0123456789"
    assert await store.read("k", offset=3) == b"3456789"
    assert await store.read("k", length=4) == b"0123"
    assert await store.read("k", offset=2, length=3) == b"234"
    assert await store.read("k", offset=8, length=100) == b"89"
    assert await store.read("k", offset=10) == b""
    assert await store.read("k", offset=50) == b""
    assert await store.read("k", offset=50, length=5) == b""
    assert await store.read("k", length=0) == b""
    async with store.open("k", offset=8, length=100) as reader:
        assert reader.size == 2
        assert await reader.read() == b"89"
    async with store.open("k", offset=99) as reader:
        assert reader.size == 0
        assert [c async for c in reader] == []
    for bad in ({"offset": -1}, {"length": -1}, {"offset": 1.5}, {"offset": True}):
        with pytest.raises(InvalidRange):
            await store.read("k", **bad)
        with pytest.raises(InvalidRange):
            store.open("k", **bad)


async def test_reader_iterates_chunks_and_keeps_size(store: Store) -> None:
    big = os.urandom(2_500_000)
    await store.put("big", big)
    async with store.open("big") as reader:
        chunks = [c async for c in reader]
        assert [c async for c in reader] == [], "iterating again after the end yields nothing"
    assert len(chunks) >= 2 and b"".join(chunks) == big
    assert reader.size == len(big)
    # without async with: the iteration opens and, at its end, releases
    assert b"".join([c async for c in store.open("big", offset=10)]) == big[10:]
    assert await store.open("big", length=5).read() == big[:5]
    assert store.statistics()["sessions"]["users"] == 0


async def test_missing_objects(store: Store) -> None:
    for op in (store.read("nope"), store.stat("nope"), store.delete("nope")):
        with pytest.raises(NotFound) as info:
            await op
        assert isinstance(info.value, FileNotFoundError)
        assert info.value.store == "m" and info.value.key == "nope"
    with pytest.raises(NotFound):
        async with store.open("nope"):
            pass
    with pytest.raises(NotFound):
        await store.write("nope", b"x", offset=0)
    assert await store.exists("nope") is False
    assert store.statistics()["sessions"]["users"] == 0


async def test_write_patches_in_place(store: Store) -> None:
    await store.put("k", b"0123456789", metadata={"m": "1"})
    assert await store.write("k", b"ab", offset=0) == 2
    assert await store.write("k", bytearray(b"XYZ"), offset=8) == 3
    assert await store.read("k") == b"ab234567XYZ"
    assert (await store.stat("k")).metadata == {"m": "1"}
    with pytest.raises(TypeError):
        await store.write("k", "text", offset=0)  # type: ignore[arg-type]


async def test_delete_list_exists_location(store: Store) -> None:
    for key in ("a/1", "a/2", "b/1"):
        await store.put(key, key.encode())
    assert [i.key async for i in store.list()] == ["a/1", "a/2", "b/1"]
    assert [i.key async for i in store.list("a/")] == ["a/1", "a/2"]
    assert [(i.key, i.size) async for i in store.list("b")] == [("b/1", 3)]
    assert await store.exists("a/1")
    await store.delete("a/1")
    assert not await store.exists("a/1")
    assert store.location("dir/a b#c") == "memory://m/dir/a%20b%23c"
    assert "memory" in repr(store) and "'m'" in repr(store)
    lister = store.list()
    assert (await lister.__anext__()).key == "a/2"
    await lister.aclose()
    assert store.statistics()["sessions"]["users"] == 0


# -- readers release their session -----------------------------------------------------------------


@pytest.fixture
async def fresh() -> AsyncIterator[tuple[Store, FakeDriver]]:
    """A store whose every use opens and closes its own session (so leaks are visible)."""
    async with StoreManager(
        {"probe": {"enabled": False}, "stores": {"f": fake_store(reusable=False)}}
    ) as m:
        driver = m["f"].driver
        assert isinstance(driver, FakeDriver)
        driver.objects["k"] = bytes(range(256)) * 4
        yield m["f"], driver


async def test_reader_releases_on_early_break(fresh: tuple[Store, FakeDriver]) -> None:
    store, driver = fresh
    async with store.open("k") as reader:
        async for _chunk in reader:
            break
        assert len(driver.open_sessions()) == 1
    assert driver.open_sessions() == []
    assert driver.calls["open_session"] == driver.calls["close"] == 1


async def test_reader_releases_when_body_raises(fresh: tuple[Store, FakeDriver]) -> None:
    store, driver = fresh
    with pytest.raises(ZeroDivisionError):
        async with store.open("k") as reader:
            await reader.__anext__()
            1 / 0  # noqa: B018
    assert driver.open_sessions() == []


async def test_reader_releases_on_cancellation(fresh: tuple[Store, FakeDriver]) -> None:
    store, driver = fresh
    got_one = asyncio.Event()

    async def consume() -> None:
        async with store.open("k", offset=1) as reader:
            async for _chunk in reader:
                got_one.set()
                await asyncio.sleep(3600)

    task = asyncio.ensure_future(consume())
    await got_one.wait()
    assert len(driver.open_sessions()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert driver.open_sessions() == []
    # cancelled while reading everything with read()
    task2 = asyncio.ensure_future(store.open("k").read())
    await asyncio.sleep(0)
    task2.cancel()
    await asyncio.gather(task2, return_exceptions=True)
    assert driver.open_sessions() == []
    assert driver.calls["open_session"] == driver.calls["close"]


async def test_closed_reader_cannot_be_reopened(fresh: tuple[Store, FakeDriver]) -> None:
    store, driver = fresh
    reader = store.open("k")
    with pytest.raises(RuntimeError):
        _ = reader.size
    async with reader:
        pass
    with pytest.raises(Exception, match="closed"):
        await reader.__anext__()
    assert driver.open_sessions() == []


# -- fail-over put -------------------------------------------------------------------------------


@pytest.fixture
async def tiers() -> AsyncIterator[StoreManager]:
    async with StoreManager(
        {
            "probe": {"enabled": False},
            "stores": {
                "low": {"driver": "memory", "priority": 0},
                "ro": {"driver": "memory", "priority": 30, "read_only": True},
                "full": {"driver": "memory", "priority": 20, "max_bytes": 100},
                "mid": {"driver": "memory", "priority": 10},
            },
        }
    ) as m:
        yield m


async def test_manager_put_fails_over_by_priority(tiers: StoreManager) -> None:
    obj = await tiers.put("a", b"x" * 50)
    assert obj.store == "full", "highest priority with WRITE_ACCESS (ro is read-only)"
    obj = await tiers.put("b", b"y" * 80)
    assert obj.store == "mid", "full ran out of space → next by priority"
    assert obj.checksum == hashlib.md5(b"y" * 80).hexdigest()
    assert await tiers["mid"].read("b") == b"y" * 80
    assert not await tiers["full"].exists("b")
    assert C.WRITE_ACCESS not in tiers["full"].capabilities, "StorageFull revoked at once"
    obj = await tiers.put("c", b"z")
    assert obj.store == "mid", "full is skipped while revoked"
    obj = await tiers.put("d", b"w", stores=["low", "ro"])
    assert obj.store == "low"
    with pytest.raises(StoreAddDisabled) as info:
        await tiers.put("e", b"w", stores=["ro"])
    assert info.value.transient is False
    with pytest.raises(Duplicate):
        await tiers.put("b", b"again", stores=["mid", "low"])


async def test_fail_over_with_a_one_shot_stream(tiers: StoreManager) -> None:
    # consumed by the full store → cannot be replayed: the error stands
    with pytest.raises(StorageFull):
        await tiers.put("big", _achunks(b"q" * 150))
    assert not await tiers["mid"].exists("big")
    # refused before anything was read → the same stream goes to the next store, whole
    tiers["full"].faults.clear()
    tiers["mid"].faults.write_errno = errno.ENOSPC
    obj = await tiers.put("one-shot", _achunks(b"r" * 30), stores=["mid", "low"])
    assert obj.store == "low" and obj.size == 30
    assert await tiers["low"].read("one-shot") == b"r" * 30


async def test_fail_over_rewinds_a_file(tiers: StoreManager, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"s" * 150)
    with open(path, "rb") as f:  # noqa: ASYNC230 - a real sync file is the point
        obj = await tiers.put("file", f, stores=["full", "low"])
    assert obj.store == "low" and obj.size == 150
    assert await tiers["low"].read("file") == b"s" * 150
