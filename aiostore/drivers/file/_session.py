"""The file driver's session: the event-loop side of every operation.

Each operation is one thread hop, ``run_blocking(...)``, under the driver's one error table
(``FILE_ERRORS.mapping(...)``); irreversible steps (publishing a put, a patch, a delete, handing
an open fd over) pass a :class:`~aiostore.sdk.Fence`, so a caller that was cancelled while a
system call hangs gets control back at once and the abandoned thread can no longer commit.
Stateless: every call works from the root, so one session serves every caller.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Final

from ...sdk import (
    DriverReader,
    DriverSession,
    Fence,
    Metadata,
    ObjectInfo,
    ProbeResult,
    run_blocking,
    run_in_lane,
    shielded,
)
from . import _listing, _meta, _reader, _write
from ._errors import FILE_ERRORS
from ._names import key_parts
from ._os import close_quietly

if TYPE_CHECKING:
    from ._driver import FileDriver

__all__ = ["FileSession"]

_LIST_BATCH: Final = 256
#: Chunks (of chunk_size) a large put may queue ahead of its writer thread, up to _FEED_MAX
#: bytes (but always one chunk).
_FEED_CHUNKS: Final = 4
_FEED_MAX: Final = 16 << 20


def _retrieve(job: asyncio.Future[None]) -> None:
    if not job.cancelled():
        job.exception()  # an abandoned writer's error: the caller already has its own


class FileSession(DriverSession):
    """Stateless: every call works from the root, so one session serves every caller."""

    def __init__(self, driver: FileDriver) -> None:
        self._t = driver.tree
        self._prober = driver.prober

    async def probe(self) -> ProbeResult:
        prober = self._prober
        claim = prober.claim()
        if claim is None:
            # A probe thread stuck in a hung file system: do not pile up more of them.
            return prober.busy()
        try:
            if claim.sync:  # an fsync: slow, so a thread of its own
                return await run_blocking(prober.run, claim)
            # The others queue on the loop's lane: a burst of stores' probes costs one hop.
            return await run_in_lane(prober.run, claim)
        except BaseException:
            prober.drop(claim)
            raise

    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        key_parts(key)  # a bad key fails before any input is read
        p = _write.Put(self._t, key, overwrite, _meta.encode(metadata))
        started = False
        try:
            with FILE_ERRORS.mapping(key=key, operation="put"):
                limit = self._t.chunk_size
                it = stream.__aiter__()
                buf: list[bytes] = []
                buffered = 0
                # Gather up to one chunk first: an object that ends there takes one thread hop.
                while buffered < limit:
                    chunk = await anext(it, None)
                    if chunk is None:
                        started = True
                        await run_blocking(p.run, "small", buf, fence=p.fence)
                        return
                    if chunk:
                        buf.append(chunk)
                        buffered += len(chunk)
                # A larger one: one writer job for the whole put, fed through a bounded queue
                # (the stream hashes each chunk in other threads meanwhile).
                started = True
                feed = _write.Feed(max(limit, min(_FEED_CHUNKS * limit, _FEED_MAX)))
                job = asyncio.ensure_future(run_blocking(p.run, "stream", buf, feed, fence=p.fence))
                job.add_done_callback(_retrieve)
                del buf
                try:
                    async for chunk in it:
                        if chunk and not await feed.put(chunk):
                            break  # the writer failed: its error comes from the job
                    else:
                        feed.end()
                    await job
                except BaseException:
                    feed.stop()
                    job.cancel()  # the job lets the thread go; it cannot commit any more
                    raise
        except BaseException:
            if started:
                # Runs under any cancellation; returns at once when a step still hangs (that
                # step cleans up when the file system lets it).
                await shielded(run_blocking(p.abort))
            raise

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        t = self._t
        key_parts(key)
        fence = Fence()
        box: list[int] = []
        try:
            with FILE_ERRORS.mapping(key=key, operation="open"):
                size, first, info = await run_blocking(
                    _reader.open_read, t, key, offset, length, fence, box, fence=fence
                )
        except BaseException:
            if box:  # the thread handed the fd over, then the caller was cancelled
                close_quietly(box[0])
            raise
        fd = box[0] if box else -1
        return _reader.FileReader(key, fd, offset + len(first), size, first, t.chunk_size, info)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        key_parts(key)
        with FILE_ERRORS.mapping(key=key, operation="read"):
            return await run_blocking(_reader.read, self._t, key, offset, length)

    async def write(self, key: str, data: bytes, offset: int) -> int:
        key_parts(key)
        fence = Fence()
        with FILE_ERRORS.mapping(key=key, operation="write"):
            return await run_blocking(_write.patch, self._t, key, data, offset, fence, fence=fence)

    async def delete(self, key: str) -> None:
        key_parts(key)
        fence = Fence()
        with FILE_ERRORS.mapping(key=key, operation="delete"):
            await run_blocking(_write.delete, self._t, key, fence, fence=fence)

    async def stat(self, key: str) -> ObjectInfo:
        key_parts(key)
        with FILE_ERRORS.mapping(key=key, operation="stat"):
            return await run_blocking(_reader.stat, self._t, key)

    async def exists(self, key: str) -> bool:
        key_parts(key)
        with FILE_ERRORS.mapping(key=key, operation="exists"):
            return await run_blocking(_reader.exists, self._t, key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        lister = _Lister(_listing.walk(self._t, prefix))
        try:
            while True:
                with FILE_ERRORS.mapping(operation="list"):
                    batch = await run_blocking(lister.take, _LIST_BATCH)
                for info in batch:
                    yield info
                if len(batch) < _LIST_BATCH:
                    return
        finally:
            lister.close()


class _Lister:
    """A listing generator shared by the loop and one thread at a time: it is closed (its
    directory fds released) by whichever side is last, never while a thread runs it."""

    def __init__(self, gen: Generator[ObjectInfo, None, None]) -> None:
        self._gen = gen
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False

    def take(self, n: int) -> list[ObjectInfo]:
        with self._lock:
            if self._closed:
                return []
            self._busy = True
        try:
            return _listing.take(self._gen, n)
        finally:
            with self._lock:
                self._busy = False
                closed = self._closed
            if closed:
                self._gen.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._busy:
                return
        self._gen.close()
