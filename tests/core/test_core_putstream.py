"""The put stream's hashing pipeline: digests exact and in order, memory bounded by
back-pressure, and cancellation that never waits for a hash lane nor lets one run on."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from aiostore import StoreManager
from aiostore._stream import HASH_DEPTH, THREAD_HASH_MIN, PutStream

MiB = 1 << 20
BIG = THREAD_HASH_MIN  # the smallest chunk that goes to the lanes


class Gate:
    """A hasher that blocks in ``update`` until opened, counting the updates that ran.

    Lanes are shared by the whole process: every test that closes a gate opens it in a
    ``finally``, so a failing test cannot stall other tests' puts."""

    def __init__(self, algo: str = "sha256") -> None:
        self._real = hashlib.new(algo)
        self.open = threading.Event()
        self.entered = threading.Event()
        self.updates = 0

    def update(self, data: bytes) -> None:
        self.entered.set()
        self.open.wait(10)
        self.updates += 1
        self._real.update(data)

    def hexdigest(self) -> str:
        return self._real.hexdigest()


def _chunks(sizes: list[int], seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(n) for n in sizes]


async def _agen(chunks: list[bytes], pulled: list[int] | None = None) -> AsyncIterator[bytes]:
    for chunk in chunks:
        if pulled is not None:
            pulled.append(len(chunk))
        yield chunk


@contextlib.contextmanager
def _opened_after(gate: Gate) -> Iterator[None]:
    try:
        yield
    finally:
        gate.open.set()


async def _until(predicate: Any) -> None:
    """Poll a condition set by a worker thread (no event loop event to wait on), ≤ 10 s."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 10 s")


async def _drain(stream: PutStream) -> bytes:
    got = b"".join([chunk async for chunk in stream])
    await stream.finish()
    return got


@pytest.mark.parametrize("algo", ["sha256", "sha512", "md5"])
async def test_digests_match_hashlib_whatever_the_chunk_sizes(algo: str) -> None:
    """Large chunks (lanes) and small ones (inline, or queued behind large ones) in any order
    give exactly hashlib's digests of the whole data."""
    sizes = [MiB, 10, BIG + 1, 5, 0, 2 * MiB, 100, BIG - 1, 3, BIG, 7 * 1024]
    chunks = _chunks(sizes)
    data = b"".join(chunks)
    stream = PutStream(_agen(chunks), size=len(data), hash_algo=algo)
    assert await _drain(stream) == data
    assert stream.checksum == hashlib.md5(data).hexdigest()
    assert stream.multihash == hashlib.new(algo, data).hexdigest()
    assert stream.bytes_read == len(data)


async def test_many_streams_share_the_lanes() -> None:
    """Twelve concurrent streams of large chunks: every digest is its own data's."""
    datas = [_chunks([BIG * 2, MiB, 17, BIG], seed=i) for i in range(12)]
    streams = [PutStream(_agen(chunks), size=None) for chunks in datas]
    got = await asyncio.gather(*(_drain(s) for s in streams))
    for stream, chunks, data in zip(streams, datas, got, strict=True):
        assert data == b"".join(chunks)
        assert stream.multihash == hashlib.sha256(data).hexdigest()
        assert stream.checksum == hashlib.md5(data).hexdigest()


async def test_small_puts_never_touch_the_lanes() -> None:
    """Chunks below THREAD_HASH_MIN are hashed inline: no lane state is created."""
    chunks = _chunks([4096] * 10)
    stream = PutStream(_agen(chunks), size=None)
    await _drain(stream)
    assert stream._hashing is None
    assert stream.multihash == hashlib.sha256(b"".join(chunks)).hexdigest()


async def test_a_slow_hasher_holds_back_the_source() -> None:
    """While a lane is stuck, the stream takes at most HASH_DEPTH chunks (+ the one it is
    about to hand out) from its source; opened again, the put completes with exact digests."""
    chunks = _chunks([BIG] * (HASH_DEPTH * 4))
    pulled: list[int] = []
    stream = PutStream(_agen(chunks, pulled), size=None)
    gate = Gate()
    stream._multi = gate
    consumer = asyncio.create_task(_drain(stream))
    try:
        await _until(lambda: gate.entered.is_set() and len(pulled) >= HASH_DEPTH)
        await asyncio.sleep(0.2)  # room to run ahead, if the bound did not hold
        assert len(pulled) <= HASH_DEPTH + 1
        assert not consumer.done()
        assert stream._hashing is not None and max(stream._hashing.in_lane) <= HASH_DEPTH
    finally:
        gate.open.set()
    with anyio.fail_after(10):
        data = await consumer
    assert data == b"".join(chunks)
    assert gate.updates == len(chunks)
    assert stream.multihash == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("how", ["cancel", "cancel-twice", "timeout"])
async def test_cancelling_never_waits_for_hashing(how: str) -> None:
    """A consumer parked behind a stuck lane is cancelled at once; aclose() returns at once;
    the lanes then skip the stream's queued chunks (only the one being hashed completes)."""
    chunks = _chunks([BIG] * (HASH_DEPTH * 4))
    stream = PutStream(_agen(chunks), size=None)
    gate = Gate()
    stream._multi = gate

    async def consume() -> None:
        async for _ in stream:
            pass

    with anyio.fail_after(10), _opened_after(gate):
        if how == "timeout":
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await consume()
            assert time.monotonic() - started < 2
        else:
            task = asyncio.create_task(consume())
            await _until(lambda: gate.entered.is_set() and stream._hashing is not None)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            task.cancel()
            if how == "cancel-twice":
                await asyncio.sleep(0)
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 1
        started = time.monotonic()
        await stream.aclose()
        assert time.monotonic() - started < 0.1  # the lane is still stuck: not waited for
        hashing = stream._hashing
        assert hashing is not None and hashing.abandoned
        queued = hashing.pending
        assert queued >= 2  # the stuck job plus what was queued behind it
        gate.open.set()
        await _until(lambda: not hashing.pending)
    assert gate.updates == 1  # the job that was running; the queued ones were skipped


async def test_a_cancelled_put_through_the_store_leaves_nothing() -> None:
    """A memory-store put of large chunks cancelled mid-stream: no object, and the store
    takes the next put of the same key normally."""
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for i in range(1000):
            if i == 3:
                started.set()
            yield bytes(BIG)
            await asyncio.sleep(0.001)

    config: dict[str, Any] = {"probe": {"enabled": False}, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        store = manager["m"]
        task = asyncio.create_task(store.put("k", slow()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await store.exists("k")
        obj = await store.put("k", _agen([bytes(BIG), b"x"]))
        assert obj.multihash == hashlib.sha256(bytes(BIG) + b"x").hexdigest()
