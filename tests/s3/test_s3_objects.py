"""The shared object behaviours on a real S3 server, at sizes around the part size."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiostore import Capability, Duplicate, NotFound, SizeMismatch, Store, StoreManager
from aiostore.drivers.s3 import PROBE_AREA, READ_CHUNK

from .conftest import PART, SIZES, ConfigFactory, all_objects, uploads

#: Every shared behaviour runs at each size (empty, one byte, around one part, several parts).
sized = pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])


async def chunks(data: bytes, n: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i : i + n]
        await asyncio.sleep(0)


@sized
async def test_put_read_stat_delete(store: Store, admin: Any, bucket: str, size: int) -> None:
    """A put stores exactly the bytes, with md5 checksum and metadata; delete removes it."""
    data = os.urandom(size)
    meta = {"title": "Zürich ☃", "tags": ["a", "b"], "nested": {"k": "v"}}
    stored = await store.put("dir/obj", data, size=size, metadata=meta)
    assert stored.size == size
    assert stored.checksum == hashlib.md5(data).hexdigest()
    assert stored.multihash == hashlib.sha256(data).hexdigest()
    assert stored.location == f"s3://{bucket}/dir/obj"
    assert await store.read("dir/obj") == data
    info = await store.stat("dir/obj")
    assert (info.key, info.size, info.metadata) == ("dir/obj", size, meta)
    assert info.modified is not None and info.modified > 0
    assert await store.exists("dir/obj")
    listed = [(i.key, i.size) async for i in store.list("dir/")]
    assert listed == [("dir/obj", size)]
    assert uploads(admin, bucket) == []
    await store.delete("dir/obj")
    assert not await store.exists("dir/obj")
    with pytest.raises(NotFound):
        await store.delete("dir/obj")
    with pytest.raises(NotFound):
        await store.read("dir/obj")
    with pytest.raises(NotFound):
        await store.stat("dir/obj")
    assert all_objects(admin, bucket) == []


@sized
async def test_streamed_put_of_unknown_size(
    store: Store, admin: Any, bucket: str, size: int
) -> None:
    """An async iterator of odd-sized chunks and no declared size: same bytes, no upload left."""
    data = os.urandom(size)
    stored = await store.put("s", chunks(data, 1 * 1024 * 1024 + 7), metadata={"m": "1"})
    assert stored.size == size
    assert stored.checksum == hashlib.md5(data).hexdigest()
    assert await store.read("s") == data
    assert (await store.stat("s")).metadata == {"m": "1"}
    assert uploads(admin, bucket) == []


@sized
async def test_ranges(store: Store, size: int) -> None:
    """Ranged reads: inside, across and past the end; an offset at or past the end is empty."""
    data = os.urandom(size)
    await store.put("r", data)
    cases = [(0, None), (0, 1), (1, 10), (size // 2, None), (size // 3, PART), (size - 1, 5)]
    cases += [(size, None), (size, 3), (size + 10, None), (size + 10, 1), (0, 0), (3, 0)]
    for offset, length in cases:
        if offset < 0:
            continue
        end = None if length is None else offset + length
        want = data[offset:end]
        assert await store.read("r", offset=offset, length=length) == want, (offset, length)
        async with store.open("r", offset=offset, length=length) as reader:
            assert reader.size == len(want)
            got = [c async for c in reader]
        assert all(0 < len(c) <= READ_CHUNK for c in got)
        assert b"".join(got) == want, (offset, length)


@sized
async def test_open_and_stop_early(store: Store, size: int) -> None:
    """A reader left after one chunk releases its connection; the store keeps working."""
    data = os.urandom(size)
    await store.put("e", data)
    for _ in range(3):
        async with store.open("e") as reader:
            first = await reader.__anext__() if size else b""
        assert data.startswith(first)
    assert await store.read("e", offset=size // 2) == data[size // 2 :]


@sized
async def test_duplicate_and_overwrite(store: Store, size: int) -> None:
    """overwrite=False on an existing key is Duplicate and leaves it intact; True replaces it."""
    first, second = os.urandom(size), os.urandom(size) + b"!"
    await store.put("d", first, metadata={"v": "1"})
    with pytest.raises(Duplicate):
        await store.put("d", second, metadata={"v": "2"})
    assert await store.read("d") == first
    assert (await store.stat("d")).metadata == {"v": "1"}
    await store.put("d", second, overwrite=True, metadata={"v": "2"})
    assert await store.read("d") == second
    assert (await store.stat("d")).metadata == {"v": "2"}


@sized
async def test_concurrent_create_only_puts(
    store: Store, admin: Any, bucket: str, size: int
) -> None:
    """Ten concurrent create-only puts of one key: exactly one wins, nine get Duplicate, the
    object is the winner's, and no multipart upload is left behind."""
    datas = [os.urandom(size) + bytes([i]) for i in range(10)]
    results = await asyncio.gather(
        *(store.put("same", d, metadata={"i": str(i)}) for i, d in enumerate(datas)),
        return_exceptions=True,
    )
    winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Duplicate) for r in losers), losers
    assert await store.read("same") == datas[winners[0]]
    assert (await store.stat("same")).metadata == {"i": str(winners[0])}
    assert uploads(admin, bucket) == []


@sized
async def test_size_mismatch_stores_nothing(
    store: Store, admin: Any, bucket: str, size: int
) -> None:
    """Data shorter or longer than the declared size: SizeMismatch, no object, no upload."""
    data = os.urandom(size)
    with pytest.raises(SizeMismatch):
        await store.put("short", chunks(data, 1 << 20), size=size + 1)
    with pytest.raises(SizeMismatch):
        await store.put("long", chunks(data + b"x", 1 << 20), size=size)
    with pytest.raises(SizeMismatch):
        await store.put("long2", data + b"xy", size=size)
    assert all_objects(admin, bucket) == []
    assert uploads(admin, bucket) == []
    # An existing object is not damaged by a failed replacement.
    await store.put("keep", data)
    with pytest.raises(SizeMismatch):
        await store.put("keep", chunks(data + b"x", 1 << 20), size=size, overwrite=True)
    assert await store.read("keep") == data


async def test_keys_under_a_prefix(s3_config: ConfigFactory, admin: Any, bucket: str) -> None:
    """With a driver prefix, keys are stored under it and listed relative to it; the probe's
    scratch area and objects outside the prefix are not listed."""
    admin.put_object(Bucket=bucket, Key="outside", Body=b"x")
    admin.put_object(Bucket=bucket, Key=f"pre/{PROBE_AREA}leftover", Body=b"x")
    async with StoreManager(s3_config(prefix="pre")) as manager:
        store = manager["s3"]
        assert store.location_prefix == f"s3://{bucket}/pre/"
        size = int(3.5 * PART)
        data = os.urandom(size)
        await store.put("a/b", data)
        await store.put("a/c", b"c")
        await store.put("z", b"z")
        assert admin.head_object(Bucket=bucket, Key="pre/a/b")["ContentLength"] == size
        keys = [i.key async for i in store.list()]
        assert keys == ["a/b", "a/c", "z"]
        assert [i.key async for i in store.list("a/")] == ["a/b", "a/c"]
        assert [i.key async for i in store.list("nothing")] == []
        resolved, key = manager.resolve(store.location("a/b"))
        assert (resolved, key) == (store, "a/b")
        assert await resolved.read(key) == data
        assert Capability.RW_ACCESS in store.capabilities


async def test_objects_written_by_other_tools(store: Store, admin: Any, bucket: str) -> None:
    """Objects put by another S3 client read back with their own metadata; a garbled aiostore
    header falls back to the raw metadata."""
    admin.put_object(Bucket=bucket, Key="foreign", Body=b"hello", Metadata={"owner": "ops"})
    admin.put_object(Bucket=bucket, Key="garbled", Body=b"", Metadata={"aiostore": "%%%"})
    info = await store.stat("foreign")
    assert (info.size, info.metadata) == (5, {"owner": "ops"})
    assert await store.read("foreign", offset=1, length=3) == b"ell"
    assert (await store.stat("garbled")).metadata == {"aiostore": "%%%"}
