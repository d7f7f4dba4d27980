"""Reads: one open file is one version, and a reader that keeps a few chunks read ahead.

Size, modification time, metadata and ETag of a read all come from the file descriptor it
reads (``fstat``, ``fgetxattr`` or the sidecar of that very inode): an overwrite publishes a new
inode, so a reader never mixes two versions, whatever the writers do meanwhile. The ETag is
``<inode>-<size>-<mtime ns>`` in hex: it names one version (a patch changes size or mtime).
"""

from __future__ import annotations

import asyncio
import collections
import os
import stat as st_
import threading
from typing import Final

from ...sdk import DriverReader, Fence, ObjectInfo, run_blocking
from . import _meta
from ._errors import FILE_ERRORS
from ._os import READ, close_quietly, lstat_or_none, pread_all, range_size
from ._tree import Tree

__all__ = ["FileReader", "exists", "info_of", "open_read", "read", "stat"]

#: Chunks a large reader keeps read ahead of its consumer.
READ_AHEAD: Final = 3
#: Chunks the read-ahead job gathers before it wakes a consumer that waits for data.
WAKE_BATCH: Final = 2


def etag_of(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


def info_of(tree: Tree, key: str, fd: int, dfd: int, name: str) -> ObjectInfo | None:
    """What the open file ``fd`` is; None when its sidecar went meanwhile (open again)."""
    st = os.fstat(fd)
    meta = _meta.read(tree, fd, st, dfd, name)
    if meta is None:
        return None
    return ObjectInfo(key, st.st_size, st.st_mtime, meta, etag_of(st))


def _open_version(tree: Tree, key: str) -> tuple[int, ObjectInfo]:
    """An open fd on ``key`` and what it is (opened again while an overwrite races us)."""
    for attempt in range(3):
        dfd, fd, parts = tree.open_file(key, READ, write=False)
        try:
            info = info_of(tree, key, fd, dfd, parts[-1])
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.close(dfd)
        if info is not None or attempt == 2:
            # Overwritten under us three times in a row: what the last file said, no metadata.
            return fd, info or ObjectInfo(key, os.fstat(fd).st_size, None, {}, None)
        os.close(fd)
    raise AssertionError("unreachable")  # pragma: no cover


def open_read(
    tree: Tree, key: str, offset: int, length: int | None, fence: Fence, box: list[int]
) -> tuple[int, bytes, ObjectInfo]:
    """(bytes to read, first chunk, info). The fd goes into ``box`` (the caller owns it from
    then on) unless the range fit in the first chunk; a caller that left gets nothing."""
    fd, info = _open_version(tree, key)
    try:
        size = range_size(info.size, offset, length)
        first = pread_all(fd, min(size, tree.chunk_size), offset) if size else b""
        whole = len(first) >= size or not first
        with fence.commit():  # Abandoned: the caller has gone, the fd stays ours to close
            if not whole:
                box.append(fd)
    except BaseException:
        os.close(fd)
        raise
    if whole:
        os.close(fd)
        size = len(first)
    return size, first, info


def read(tree: Tree, key: str, offset: int, length: int | None) -> bytes:
    dfd, fd, _ = tree.open_file(key, READ, write=False)
    try:
        os.close(dfd)
        size = range_size(os.fstat(fd).st_size, offset, length)
        return pread_all(fd, size, offset) if size else b""
    finally:
        os.close(fd)


def stat(tree: Tree, key: str) -> ObjectInfo:
    fd, info = _open_version(tree, key)
    os.close(fd)
    return info


def exists(tree: Tree, key: str) -> bool:
    try:
        dfd, parts = tree.parent(key, create=False, write=False)
    except (FileNotFoundError, NotADirectoryError):  # NotFound included
        return False
    try:
        st = lstat_or_none(dfd, parts[-1])
    finally:
        os.close(dfd)
    if st is not None and st_.S_ISLNK(st.st_mode):
        try:
            dfd, fd, _ = tree.open_file(key, READ, write=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        os.close(fd)
        os.close(dfd)
        return True
    return st is not None and st_.S_ISREG(st.st_mode)


class FileReader(DriverReader):
    """An open file, read ``chunk_size`` bytes at a time by a read-ahead job in a worker thread.

    The first chunk comes with the open (objects that fit in it are read and closed there). For
    larger ones a job keeps up to :data:`READ_AHEAD` chunks ready: one ``pread`` per chunk back to
    back while the consumer takes them; it *ends* (freeing the thread) when that many wait, so a
    slow consumer holds memory for a few chunks and no thread. The fd belongs to whichever side
    is last: :meth:`aclose` closes it at once when no job runs, else the job closes it as it
    stops — closing never waits for a thread (a read hung in the kernel included) and never
    closes a descriptor under a running ``pread``.
    """

    def __init__(
        self, key: str, fd: int, pos: int, size: int, first: bytes, chunk: int, info: ObjectInfo
    ) -> None:
        self.size = size
        self.info = info
        self._key = key
        self._fd = fd
        self._first: bytes | None = first
        self._chunk = chunk
        self._lock = threading.Lock()
        # Guarded by _lock (shared with the job's thread):
        self._pos = pos
        self._left = size - len(first)  # bytes not read yet
        self._ready: collections.deque[bytes] = collections.deque()
        self._error: OSError | None = None
        self._running = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        # Event loop side only:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: set[asyncio.Task[None]] = set()

    async def read_chunk(self) -> bytes:
        first = self._first
        if first is not None:
            self._first = None
            if first:
                self._start(need=False)  # read ahead while the consumer handles this one
                return first
        while True:
            waiter: asyncio.Future[None] | None = None
            with self._lock:
                if self._ready:
                    chunk: bytes | None = self._ready.popleft()
                elif self._error is not None:
                    raise FILE_ERRORS.translate(self._error, key=self._key, operation="read")
                elif self._left <= 0 or self._closed:
                    chunk = b""
                else:
                    chunk = None
                    waiter = self._loop_().create_future()
                    self._waiter = waiter
            if chunk is not None:
                if chunk:
                    self._start(need=False)
                else:
                    await self.aclose()
                return chunk
            assert waiter is not None
            self._start(need=True)
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None

    def _loop_(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _start(self, *, need: bool) -> None:
        """Start a read-ahead job unless one runs, there is nothing left, or enough is ready."""
        with self._lock:
            if (
                self._running
                or self._closed
                or self._left <= 0
                or self._error is not None
                or (not need and len(self._ready) >= READ_AHEAD)
            ):
                return
            self._running = True
        job = self._loop_().create_task(run_blocking(self._run))
        self._jobs.add(job)
        job.add_done_callback(self._job_done)

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._jobs.discard(job)
        if not job.cancelled():
            job.exception()  # the job stores its errors itself; nothing else to retrieve

    def _run(self) -> None:
        """The job (worker thread): read chunks until READ_AHEAD are ready, the end, or close."""
        loop = self._loop
        assert loop is not None
        while True:
            with self._lock:
                if (
                    self._closed
                    or self._left <= 0
                    or self._error is not None
                    or len(self._ready) >= READ_AHEAD
                ):
                    self._running = False
                    waiter = self._waiter
                    fd = -1
                    if self._closed:  # closed while we read: the fd is ours to close
                        fd, self._fd = self._fd, -1
                    break
                pos, n = self._pos, min(self._chunk, self._left)
            data: bytes | OSError
            try:
                data = os.pread(self._fd, n, pos)
            except OSError as exc:
                data = exc
            with self._lock:
                if isinstance(data, OSError):
                    self._error = data
                elif not data:
                    self._left = 0  # the file shrank under us: what exists has been read
                else:
                    self._ready.append(data)
                    self._pos += len(data)
                    self._left -= len(data)
                # Wake a waiting consumer every WAKE_BATCH chunks, not every chunk: each wake-up
                # is a loop wake and a GIL handoff this thread then waits on (the loop breaks
                # out when the job stops or the data ends, so nobody waits for a batch forever).
                batch = len(self._ready) >= WAKE_BATCH or self._left <= 0
                waiter = self._waiter if batch else None
            if waiter is not None:
                _wake_threadsafe(loop, waiter)
        if fd >= 0:
            close_quietly(fd)
        if waiter is not None:
            _wake_threadsafe(loop, waiter)

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            self._first = None
            self._ready.clear()
            waiter = self._waiter
            fd = -1
            if not self._running:
                fd, self._fd = self._fd, -1
        if waiter is not None:
            _wake(waiter)
        if fd >= 0:
            close_quietly(fd)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake_threadsafe(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
    try:
        loop.call_soon_threadsafe(_wake, waiter)
    except RuntimeError:
        pass  # the loop has closed: nobody waits any more
