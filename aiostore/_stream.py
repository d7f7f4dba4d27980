"""Put inputs: every accepted kind of data turned into one async stream of bytes chunks that
counts, checks the declared size and computes md5 + the multihash while the driver consumes it.

Hashing a large chunk runs in worker threads (hashlib releases the GIL), overlapped with the
driver's handling of that chunk: chunk *n* is hashed while the driver writes it, and the stream
waits for that before handing out chunk *n+1*, so digests stay in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any, Final

import anyio.to_thread

from ._cancel import run_blocking
from .errors import SizeMismatch, UnknownHashingAlgo

__all__ = ["PutStream", "make_hasher", "rechunk"]

#: Chunks at least this big are hashed in worker threads.
THREAD_HASH_MIN: Final = 256 * 1024
DEFAULT_CHUNK: Final = 1 << 20


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


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


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
        self._pending: asyncio.Future[Any] | None = None
        self._done = False

    def __aiter__(self) -> PutStream:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        self.started = True
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
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
        if n >= THREAD_HASH_MIN:
            self._pending = asyncio.gather(
                anyio.to_thread.run_sync(self._md5.update, chunk),
                anyio.to_thread.run_sync(self._multi.update, chunk),
            )
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
        """Wait for hashing of the last chunk (the store calls it after the driver returns)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

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
        if self._pending is not None:
            # Never await here: this runs on cancellation too. Worker threads finish on their own;
            # the callback retrieves the outcome so asyncio does not log it as never retrieved.
            self._pending.add_done_callback(_retrieve)
            self._pending.cancel()
            self._pending = None
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
