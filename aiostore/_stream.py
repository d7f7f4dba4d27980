"""Put inputs: every accepted kind of data turned into one async stream of bytes chunks that
counts, checks the declared size and computes md5 + the multihash while the driver consumes it.

Hashing overlaps the driver's I/O through a bounded pipeline. A large chunk is handed to two
long-lived *hash lanes* — worker threads, each updating one hasher of a stream in FIFO order —
and returned to the driver at once: md5 runs on one core, the multihash on the other (hashlib
releases the GIL on large buffers), while the driver writes or sends that chunk, then reads the
next. Handing a chunk to a lane is a queue put, not a thread hop with a future per call: the event
loop is woken only when the stream has to wait. Back-pressure: a stream never has more than
:data:`HASH_DEPTH` chunks in its lanes; before taking the next chunk from its source it waits for
the slowest lane to get below that. Small chunks (under :data:`THREAD_HASH_MIN`) are hashed inline
when nothing of the stream is in a lane (one hand-off would cost more than the hashing).

Cancellation never waits for hashing: :meth:`PutStream.aclose` marks the stream abandoned, the
lanes skip its queued chunks, and a chunk being hashed finishes in its lane on its own. Chunks
are immutable ``bytes`` (the sources copy mutable buffers), and each lane job holds its own
reference, so no thread ever touches a freed or reused buffer.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
import os
import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any, Final

from ._cancel import run_blocking
from .errors import SizeMismatch, UnknownHashingAlgo

__all__ = ["PutStream", "make_hasher", "rechunk"]

#: Chunks at least this big are hashed in worker threads.
THREAD_HASH_MIN: Final = 256 * 1024
DEFAULT_CHUNK: Final = 1 << 20
#: Chunks of one stream that may be in its hash lanes at once (memory: this many chunks).
HASH_DEPTH: Final = 4


def make_hasher(algo: str, store: str | None = None) -> Any:
    """A fresh hashlib object for ``algo``, or :class:`UnknownHashingAlgo`."""
    if not isinstance(algo, str):
        raise UnknownHashingAlgo(f"hash_algo must be a str, not {type(algo).__name__}", store=store)
    try:
        return hashlib.new(algo)
    except (ValueError, TypeError) as exc:
        raise UnknownHashingAlgo(
            f"unknown hashing algorithm {algo!r} (available: sha256, sha512, sha1, md5, ...)",
            store=store,
        ) from exc


def _source(data: Any, chunk_size: int) -> tuple[AsyncIterator[bytes], bool, Callable[[], bool]]:
    """(chunks, rereadable, rewind). ``rewind()`` resets a re-readable source, True if it could."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B") if isinstance(data, memoryview) else data

        async def from_bytes() -> AsyncIterator[bytes]:
            if len(view) <= chunk_size:
                yield bytes(view)
                return
            for i in range(0, len(view), chunk_size):
                yield bytes(view[i : i + chunk_size])

        return from_bytes(), True, lambda: True
    if isinstance(data, str):
        raise TypeError("put() takes bytes, not str: encode the text first")
    try:
        from aiohttp import StreamReader
    except ImportError:  # pragma: no cover - aiohttp is a dependency
        StreamReader = ()  # type: ignore[assignment,misc]
    if isinstance(data, StreamReader):

        async def from_reader() -> AsyncIterator[bytes]:
            while True:
                chunk = await data.readany()
                if not chunk:
                    return
                yield chunk

        return from_reader(), False, lambda: False
    read = getattr(data, "read", None)
    if read is not None and callable(read):
        is_async = inspect.iscoroutinefunction(read)
        # An async file's seekable()/tell() are coroutines too: never call them unawaited.
        start = None if is_async else _tell(data)
        rereadable = start is not None

        def rewind() -> bool:
            if start is None:
                return False
            try:
                res = data.seek(start)
            except (OSError, ValueError):
                return False
            return not inspect.isawaitable(res)

        if is_async:

            async def from_async_file() -> AsyncIterator[bytes]:
                while True:
                    chunk = await read(chunk_size)
                    if not chunk:
                        return
                    yield _as_bytes(chunk)

            return from_async_file(), False, lambda: False

        in_memory = isinstance(data, io.BytesIO)

        async def from_file() -> AsyncIterator[bytes]:
            while True:
                if in_memory:
                    chunk = read(chunk_size)
                else:
                    # A read may block for good (a FIFO, a stalled mount): the caller's
                    # cancellation must not wait for it.
                    chunk = await run_blocking(read, chunk_size)
                if inspect.isawaitable(chunk):  # an async read() that is not a coroutine fn
                    chunk = await chunk
                if not chunk:
                    return
                yield _as_bytes(chunk)

        return from_file(), rereadable, rewind
    if isinstance(data, AsyncIterable):

        async def from_aiter() -> AsyncIterator[bytes]:
            async for chunk in data:
                yield _as_bytes(chunk)

        return from_aiter(), False, lambda: False
    if isinstance(data, Iterable):

        async def from_iter() -> AsyncIterator[bytes]:
            for chunk in data:
                yield _as_bytes(chunk)

        return from_iter(), False, lambda: False
    raise TypeError(
        f"put() cannot read {type(data).__name__}: give bytes, a (async) iterable of bytes, "
        "a (async) file object or an aiohttp.StreamReader"
    )


async def rechunk(stream: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Pieces of exactly ``size`` bytes (the last one shorter, never empty) from ``stream``:
    multipart parts, staged blocks, image extents. Holds at most one piece plus one chunk."""
    if size <= 0:
        raise ValueError(f"size must be positive, not {size}")
    buf = bytearray()
    async for chunk in stream:
        if not buf and len(chunk) == size:
            yield chunk  # the common case: the source's chunks already have the right size
            continue
        buf += chunk
        while len(buf) >= size:
            piece = bytes(buf[:size])
            del buf[:size]
            yield piece
    if buf:
        yield bytes(buf)


def _tell(f: Any) -> int | None:
    try:
        if not f.seekable():
            return None
        pos = f.tell()
    except (AttributeError, OSError, ValueError):
        return None
    return pos if isinstance(pos, int) else None


def _as_bytes(chunk: Any) -> bytes:
    if type(chunk) is bytes:
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    if isinstance(chunk, bytes):
        return bytes(chunk)
    raise TypeError(f"put() data yielded {type(chunk).__name__}, expected bytes")


# -- hash lanes ---------------------------------------------------------------------------------

#: A lane job: (the stream's hashing state, which of its two lanes, a hasher, a chunk).
_Job = tuple["_Hashing", int, Any, bytes]


class _Lanes:
    """The process's hash lanes: one daemon thread per lane (as many as cores, 2 to 8), started
    on first use, each draining a FIFO queue. A stream's two hashers get two different lanes
    (round robin), so one stream's updates stay in order and several streams spread over the
    cores. An idle lane blocks in ``queue.get`` and costs nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._queues: list[queue.SimpleQueue[_Job | None]] = []
        self._next = 0

    def pick(self) -> tuple[queue.SimpleQueue[_Job | None], queue.SimpleQueue[_Job | None]]:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: its threads are gone
                self._pid = os.getpid()
                self._queues = []
                count = max(2, min(os.cpu_count() or 2, 8))
                for i in range(count):
                    q: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
                    threading.Thread(
                        target=_lane_main, args=(q,), name=f"aiostore-hash-{i}", daemon=True
                    ).start()
                    self._queues.append(q)
            # Stream k: md5 on lane k, the multihash on lane k + 1. With two lanes, one stream's
            # md5 (the slower hash) shares a lane with the next stream's multihash.
            n = len(self._queues)
            i = self._next
            self._next = (i + 1) % n
            return self._queues[i], self._queues[(i + 1) % n]


_LANES: Final = _Lanes()


def _lane_main(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:  # pragma: no cover - lanes live as long as the process
            return
        hashing, lane, hasher, chunk = job
        del job
        if not hashing.abandoned:
            try:
                hasher.update(chunk)
            except BaseException as exc:  # pragma: no cover - MemoryError and the like
                hashing.error = exc
        del chunk, hasher  # the chunk is released before the stream hears it is done
        hashing.done(lane)
        del hashing


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Hashing:
    """One stream's chunks in its two lanes: a count per lane, and the one waiter the loop may
    park until the slowest lane is down to a number of chunks."""

    __slots__ = (
        "_lanes",
        "_lock",
        "_loop",
        "_waiter",
        "_want",
        "abandoned",
        "error",
        "in_lane",
        "pending",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._lanes = _LANES.pick()
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0
        #: Chunks each lane has not finished yet.
        self.in_lane = [0, 0]
        #: Lane jobs not finished yet, both lanes (two per chunk).
        self.pending = 0
        self.abandoned = False
        self.error: BaseException | None = None

    def submit(self, md5: Any, multi: Any, chunk: bytes) -> None:
        with self._lock:
            self.pending += 2
            self.in_lane[0] += 1
            self.in_lane[1] += 1
        first, second = self._lanes
        first.put((self, 0, md5, chunk))
        second.put((self, 1, multi, chunk))

    def done(self, lane: int) -> None:
        """A lane finished a job (runs in the lane's thread)."""
        with self._lock:
            self.pending -= 1
            self.in_lane[lane] -= 1
            waiter = self._waiter
            if waiter is None or max(self.in_lane) > self._want:
                return
            self._waiter = None
        try:
            self._loop.call_soon_threadsafe(_wake, waiter)
        except RuntimeError:  # pragma: no cover - the loop closed: nobody waits any more
            pass

    async def wait(self, chunks: int) -> None:
        """Until each lane has at most ``chunks`` chunks of this stream left."""
        with self._lock:
            if max(self.in_lane) <= chunks:
                return
            waiter = self._waiter = self._loop.create_future()
            self._want = chunks
        try:
            await waiter
        finally:
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None


class PutStream:
    """The async iterator of chunks a driver's ``put`` consumes.

    Raises :class:`SizeMismatch` as soon as the data exceeds ``size``, or at its end when it
    falls short, so a driver that propagates errors never commits a wrong object.
    """

    def __init__(
        self,
        data: Any,
        *,
        size: int | None,
        hash_algo: str = "sha256",
        chunk_size: int = DEFAULT_CHUNK,
        store: str | None = None,
        key: str | None = None,
    ) -> None:
        self.size = size
        self.store = store
        self.key = key
        self._data = data
        self._chunk_size = chunk_size
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._multi = make_hasher(hash_algo, store)
        self.hash_algo = hash_algo
        self._chunks, self.rereadable, self._rewind = _source(data, chunk_size)
        self.bytes_read = 0
        self.started = False
        #: Created with the first chunk that goes to the lanes.
        self._hashing: _Hashing | None = None
        self._done = False

    def __aiter__(self) -> PutStream:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        self.started = True
        hashing = self._hashing
        if hashing is not None and hashing.pending:
            # Back-pressure: wait while the slowest lane holds HASH_DEPTH chunks of ours.
            await hashing.wait(HASH_DEPTH - 1)
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done = True
            if self.size is not None and self.bytes_read != self.size:
                raise SizeMismatch(
                    f"declared size {self.size} but the data had {self.bytes_read} bytes",
                    store=self.store,
                    key=self.key,
                ) from None
            raise
        n = len(chunk)
        self.bytes_read += n
        if self.size is not None and self.bytes_read > self.size:
            self._done = True
            raise SizeMismatch(
                f"declared size {self.size} but the data has more bytes",
                store=self.store,
                key=self.key,
            )
        if n >= THREAD_HASH_MIN or (hashing is not None and hashing.pending):
            # (A small chunk behind large ones in the lanes joins them: updates stay in order.)
            if hashing is None:
                hashing = self._hashing = _Hashing()
            hashing.submit(self._md5, self._multi, chunk)
        elif n:
            self._md5.update(chunk)
            self._multi.update(chunk)
        return chunk

    async def read_all(self, limit: int | None = None) -> bytes:
        """Everything (or up to ``limit`` bytes, in whole chunks) joined: for small objects."""
        parts = []
        total = 0
        async for chunk in self:
            parts.append(chunk)
            total += len(chunk)
            if limit is not None and total >= limit:
                break
        return b"".join(parts)

    async def finish(self) -> None:
        """Wait for the lanes to hash the last chunks (the store calls it after the driver
        returns); the digests are final afterwards."""
        hashing = self._hashing
        if hashing is not None:
            await hashing.wait(0)
            if hashing.error is not None:
                raise hashing.error

    def again(self, store: str | None = None) -> PutStream | None:
        """A fresh stream over the same data for another attempt (manager fail-over): this one
        when nothing was consumed yet, a rewound one when the data is re-readable, else None."""
        if not self.started:
            # Nothing was read, but the failed attempt closed our wrapper generator: wrap the
            # untouched data again (a closed generator would end at once and store b"").
            self.store = store
            self._chunks, self.rereadable, self._rewind = _source(self._data, self._chunk_size)
            return self
        if not self.rereadable or not self._rewind():
            return None
        return PutStream(
            self._data,
            size=self.size,
            hash_algo=self.hash_algo,
            chunk_size=self._chunk_size,
            store=store,
            key=self.key,
        )

    @property
    def checksum(self) -> str:
        return str(self._md5.hexdigest())

    @property
    def multihash(self) -> str:
        return str(self._multi.hexdigest())

    async def aclose(self) -> None:
        hashing = self._hashing
        if hashing is not None and hashing.pending:
            # Never wait here: this runs on cancellation too. The lanes skip our queued chunks;
            # one being hashed finishes on its own (the digests are never read after this).
            hashing.abandoned = True
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
