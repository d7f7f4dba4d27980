"""Filesystem driver: objects are regular files under a root directory.

Layout
    ``key = "a/b/c"`` is the file ``<root>/a/b/c``. Names that start with ``.`` and contain
    ``.aiostore-`` are the driver's own (temporary files, metadata sidecars, probe files): keys
    with such a segment are refused and listings never show them.

No way out of the root
    Keys reaching a driver are already validated (no ``..``, no leading ``/``), and paths are
    never joined into a string and handed to the kernel: every operation opens the root and then
    each directory of the key relative to the previous one with ``O_NOFOLLOW`` (``openat``), and
    touches the final name relative to that directory fd. A symbolic link met on the way is
    resolved (``realpath``) and followed only when its target lies under the *real* root; one that
    leads outside is refused (reads: ``NotFound``; writes: ``StorageWriteDenied`` that revokes
    nothing, since the store itself is fine). Listings never follow symbolic links.

Atomic puts
    Data is streamed into ``.<name>.aiostore-tmp-<random>`` in the target directory (one worker
    thread hop per chunk: the write and nothing else), fsynced, and committed with ``rename``
    (overwrite) or ``link`` + ``unlink`` (create-only: ``EEXIST`` from ``link`` is the atomic
    ``Duplicate``, whatever the number of concurrent puts); then the directory is fsynced. A failed
    or cancelled put removes its temporary file (shielded) and never touches the existing object.
    Objects no larger than ``chunk_size`` are written and committed in a single thread hop.

Metadata
    JSON in the extended attribute ``user.aiostore.meta`` of the file itself, set on the
    temporary file before the commit: it is part of the inode, so it appears, changes and
    disappears atomically with the object (ext4, xfs, btrfs and tmpfs ≥ 6.6 support user xattrs).

    Without user xattrs (NFSv3, ramfs, some FUSE file systems) metadata goes into a sidecar file
    ``.<name>.aiostore-meta-<inode>`` next to the object. A header or trailer in the object itself
    is not an option (reads must return the raw bytes, ranges included), and a sidecar named after
    the *key* cannot change together with the object. Keying the sidecar by the object's *inode
    number* can: the sidecar is written (temp + fsync + rename) before the object is committed, so
    when the rename publishes the inode its metadata already exists; a reader takes the inode
    number from the file it opened, so it only ever sees the metadata written for exactly that
    file; an overwrite publishes a new inode with its own sidecar (the old sidecar is removed
    afterwards, and a reader that raced with that retries); a delete unlinks the object first,
    which makes its sidecar an invisible orphan, and then the sidecar. Every put on such a file
    system writes a sidecar, even for empty metadata, so an orphan left by a crash is never
    inherited by a later object that reuses its inode number; orphans and temporary files older
    than an hour are swept at start-up. Limits: a file copied into the root by other means may
    inherit an orphan's metadata if it gets the orphan's inode number, and file systems without
    stable inode numbers lose metadata across remounts.

Threads
    Every blocking call runs in the driver's own worker threads (:class:`Workers`), one thread
    hop per operation for small objects and one per chunk for large ones. A cancelled caller
    (anyio scope, ``task.cancel()``, ``asyncio.timeout``) never leaves a job running behind it:
    an operation that returned has stopped touching its files. Large reads are fed by a bounded
    read-ahead job (:class:`FileReader`) so the thread-hop latency is overlapped, not paid per
    chunk.

Health
    ``start()`` creates the root when it is missing. When it cannot (a read-only parent, a mount
    that is not there yet) the store still starts: the start-up probe revokes what the root cannot
    do, and a later probe creates the root and restores the capabilities once it can. The probe
    reads the root (READ_ACCESS, READ_RANDOM) and, for WRITE_ACCESS, checks that the mount is not
    read-only, that free space is above ``min_free_bytes`` / ``min_free_percent``, and writes,
    fsyncs, reads back and removes a small probe file.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ctypes
import dataclasses
import errno
import json
import logging
import os
import secrets
import stat as st_
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread

from .._cancel import shielded
from .._keys import validate_key
from .._stream import THREAD_HASH_MIN
from .._types import Metadata, ObjectInfo
from ..capabilities.flags import Capability
from ..capabilities.probe import ProbeResult, Verdict
from ..errors import (
    BackendUnavailable,
    BadStoreConfiguration,
    Duplicate,
    InvalidKey,
    InvalidRange,
    KeyConflict,
    NotFound,
    StorageWriteDenied,
    StoreError,
)
from .base import Driver, DriverReader, DriverSession, map_os_error

__all__ = ["FileDriver", "FileOptions", "FileReader", "FileSession", "Workers"]

log = logging.getLogger("aiostore.drivers.file")

T = TypeVar("T")

#: The extended attribute holding an object's metadata (JSON).
XATTR: Final = "user.aiostore.meta"
#: Temporary files, sidecars and probe files older than this are removed at start-up.
STALE_AFTER: Final = 3600.0

_MARK: Final = ".aiostore-"
_TMP: Final = ".aiostore-tmp-"
_SIDE: Final = ".aiostore-meta-"
_PROBE: Final = ".aiostore-probe-"
_PROBE_DATA: Final = b"aiostore probe\n"
#: Bytes of an object's name kept in its temporary and sidecar names (NAME_MAX is 255).
_NAME_KEEP: Final = 180
_LIST_BATCH: Final = 256
#: Chunks a large reader keeps read ahead of its consumer.
READ_AHEAD: Final = 3
#: Chunks the read-ahead job gathers before it wakes a consumer that waits for data.
WAKE_BATCH: Final = 2
#: Worker threads per file store (blocking calls in flight at once; fsyncs batch better with many).
WORKERS: Final = 32
_SIDECAR_MAX: Final = 1 << 16

_NO_XATTR: Final = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
_NO_LINK: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})
_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_NOFOLLOW: Final = _DIR | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO somebody left in the root must not hang a worker thread.
_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_PATCH: Final = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PROBE_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE: Final = 1
_MAX_IO: Final = 0x7FFFF000  # Linux caps one read/write at this many bytes


@dataclasses.dataclass(frozen=True, slots=True)
class FileOptions:
    """Options of the ``file`` driver (``read_only`` and the other common options are the
    manager's)."""

    #: The directory holding the objects; created at start-up when missing.
    root: str
    #: Bytes per read and per write thread hop; objects up to this size take a single hop.
    chunk_size: int = 1 << 20
    #: WRITE_ACCESS is revoked while the file system has less free space than this.
    min_free_bytes: int = 0
    #: ... or less than this percentage of its size free.
    min_free_percent: float = 0.0
    #: fsync every object and its directory before a put or write returns.
    fsync: bool = True
    #: Permission bits of new objects (applied exactly, whatever the umask).
    file_mode: int = 0o644

    def __post_init__(self) -> None:
        if not self.root or "\0" in self.root:
            raise BadStoreConfiguration("must be a non-empty path", option="root")
        if not 4096 <= self.chunk_size <= 1 << 30:
            raise BadStoreConfiguration(
                f"must be between 4096 and 1 GiB, not {self.chunk_size!r}", option="chunk_size"
            )
        if self.min_free_bytes < 0:
            raise BadStoreConfiguration(
                f"must be ≥ 0, not {self.min_free_bytes!r}", option="min_free_bytes"
            )
        if not 0.0 <= self.min_free_percent <= 100.0:
            raise BadStoreConfiguration(
                f"must be between 0 and 100, not {self.min_free_percent!r}",
                option="min_free_percent",
            )
        if not 0 <= self.file_mode <= 0o7777:
            raise BadStoreConfiguration(
                f"must be permission bits (0 to 0o7777), not {self.file_mode!r}",
                option="file_mode",
            )


class FileDriver(Driver[FileOptions]):
    """Objects as files under ``root`` (scheme ``file://``). Native RW_RANDOM | DRIVER_REUSABLE.

    Puts are atomic (temporary file + fsync + rename/link), metadata lives in an xattr of the
    file (or an inode-keyed sidecar where xattrs are missing), symbolic links never lead outside
    the root, and all blocking work runs in worker threads. See the module docstring.
    """

    name: ClassVar[str] = "file"
    schemes: ClassVar[tuple[str, ...]] = ("file",)
    native_capabilities: ClassVar[Capability] = Capability.RW_RANDOM | Capability.DRIVER_REUSABLE
    Options: ClassVar[type[FileOptions]] = FileOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: FileOptions) -> None:
        super().__init__(store, options)
        self.root = os.path.abspath(os.path.expanduser(options.root))
        self.chunk_size = options.chunk_size
        self.tree = _Tree(self.root, options)
        self.workers = Workers(WORKERS)

    def location_prefix(self) -> str:
        return "file://" + quote(self.root.rstrip("/"), safe="/") + "/"

    async def start(self) -> None:
        self.tree.probe_writes = self.probe_writes
        await self.workers.run(self.tree.start)

    async def open_session(self) -> FileSession:
        return FileSession(self)

    async def aclose(self) -> None:
        self.workers.shutdown()  # idle threads exit; a new use starts a new pool


class FileSession(DriverSession):
    """Stateless: every call works from the root, so one session serves every caller."""

    def __init__(self, driver: FileDriver) -> None:
        self._t = driver.tree
        self._workers = driver.workers

    async def probe(self) -> ProbeResult:
        t = self._t
        run = _ProbeRun()
        with t.lock:
            busy = t.probe_run is not None
            if not busy:
                t.probe_run = run
        if busy:
            # A probe thread stuck in a hung file system: do not pile up more of them.
            reason = "the previous probe has not finished (hung file system?)"
            return {cap: Verdict.fail(reason) for cap in FileDriver.probe_capabilities}
        try:
            # Abandoned on cancel: the store's probe timeout must fire even when a syscall hangs.
            return await anyio.to_thread.run_sync(t.probe, run, abandon_on_cancel=True)
        except BaseException:
            with t.lock:
                if not run.started and t.probe_run is run:
                    t.probe_run = None  # cancelled before the thread ran: nothing is in flight
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
        t = self._t
        t.check_key(key)
        meta = _encode_meta(metadata)
        try:
            await self._put(key, stream, overwrite, meta)
        except StoreError:
            raise
        except OSError as exc:
            raise t.error(exc, key, "put", write=True) from exc

    async def _put(
        self, key: str, stream: AsyncIterator[bytes], overwrite: bool, meta: bytes | None
    ) -> None:
        t = self._t
        limit = t.chunk_size
        it = stream.__aiter__()
        buf: list[bytes] = []
        buffered = 0
        # Gather up to one chunk first: an object that ends there takes one thread hop in all.
        while buffered < limit:
            chunk = await anext(it, None)
            if chunk is None:
                await self._workers.run(t.put_small, key, buf, overwrite, meta)
                return
            if chunk:
                buf.append(chunk)
                buffered += len(chunk)
        box: list[_Pending] = []
        try:
            await self._workers.run(t.begin, key, overwrite, meta, buf, box)
            fd = box[0].fd
            buf = []
            buffered = 0
            async for chunk in it:
                if not chunk:
                    continue
                buf.append(chunk)
                buffered += len(chunk)
                # Write a large chunk at once: the stream hashes it in other threads meanwhile.
                if buffered >= limit or len(chunk) >= THREAD_HASH_MIN:
                    await self._workers.run(_write_all, fd, buf)
                    buf = []
                    buffered = 0
            await self._workers.run(t.commit, box[0], overwrite, buf)
        except BaseException:
            if box:
                # shielded(), not an anyio shield: a second native cancellation would otherwise
                # drop the queued clean-up and leave the temporary file behind.
                await shielded(self._workers.run(t.abort, box[0]))
            raise

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        t = self._t
        t.check_key(key)
        box: list[int] = []
        try:
            size, first = await self._workers.run(t.open_read, key, offset, length, box)
        except BaseException as exc:
            if box:  # opened, then cancelled before we could take the fd
                _close_quietly(box[0])
            if isinstance(exc, OSError) and not isinstance(exc, StoreError):
                raise t.error(exc, key, "open") from exc
            raise
        fd = box[0] if box else -1
        return FileReader(fd, offset + len(first), size, first, t.chunk_size, self._workers)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        t = self._t
        t.check_key(key)
        try:
            return await self._workers.run(t.read, key, offset, length)
        except StoreError:
            raise
        except OSError as exc:
            raise t.error(exc, key, "read") from exc

    async def write(self, key: str, data: bytes, offset: int) -> int:
        t = self._t
        t.check_key(key)
        try:
            return await self._workers.run(t.patch, key, data, offset)
        except StoreError:
            raise
        except OSError as exc:
            raise t.error(exc, key, "write", write=True) from exc

    async def delete(self, key: str) -> None:
        t = self._t
        t.check_key(key)
        try:
            await self._workers.run(t.delete, key)
        except StoreError:
            raise
        except OSError as exc:
            raise t.error(exc, key, "delete", write=True) from exc

    async def stat(self, key: str) -> ObjectInfo:
        t = self._t
        t.check_key(key)
        try:
            return await self._workers.run(t.stat, key)
        except StoreError:
            raise
        except OSError as exc:
            raise t.error(exc, key, "stat") from exc

    async def exists(self, key: str) -> bool:
        t = self._t
        t.check_key(key)
        try:
            return await self._workers.run(t.exists, key)
        except StoreError:
            raise
        except OSError as exc:
            raise t.error(exc, key, "exists") from exc

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        t = self._t
        gen = t.walk(prefix)
        try:
            while True:
                try:
                    batch = await self._workers.run(_take, gen, _LIST_BATCH)
                except StoreError:
                    raise
                except OSError as exc:
                    raise t.error(exc, None, "list") from exc
                for info in batch:
                    yield info
                if len(batch) < _LIST_BATCH:
                    return
        finally:
            gen.close()  # closes the directory fds it holds


class FileReader(DriverReader):
    """An open file, read ``chunk_size`` bytes at a time by a read-ahead job in a worker thread.

    The first chunk comes with the open (objects that fit in it are read and closed there). For
    larger ones a job in the driver's worker threads keeps up to :data:`READ_AHEAD` chunks
    ready: it reads one ``pread`` per chunk back to back while the consumer takes them, and it
    *ends* (freeing the thread) when that many are waiting, so a slow consumer holds memory for
    a few chunks and no thread. The thread-hop latency (tens of microseconds, more than copying a
    chunk from the page cache) is thus overlapped instead of paid per chunk.
    """

    def __init__(
        self, fd: int, pos: int, size: int, first: bytes, chunk_size: int, workers: Workers
    ) -> None:
        self.size = size
        self._workers = workers
        self._fd = fd
        self._first: bytes | None = first
        self._chunk = chunk_size
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
        self._job: concurrent.futures.Future[None] | None = None

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
                    exc = self._error
                    raise map_os_error(exc, what="read") from exc
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
        self._loop_()
        self._job = self._workers.pool().submit(self._run)

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
                    # From here on the job never touches the fd: aclose() may close it.
                    self._running = False
                    waiter = self._waiter
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
                loop.call_soon_threadsafe(_wake, waiter)
        if waiter is not None:
            loop.call_soon_threadsafe(_wake, waiter)

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            self._first = None
            self._ready.clear()
            running = self._running
            waiter = self._waiter
        if waiter is not None:
            _wake(waiter)
        job = self._job
        cancelled = False
        if running and job is not None:
            # The job stops after its current pread at most; only then may the fd close.
            cancelled = await _wait_done(job)
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _close_quietly(fd)
        if cancelled:
            raise asyncio.CancelledError


class Workers:
    """The driver's worker threads: every blocking call runs here, off the event loop.

    Unlike ``anyio.to_thread.run_sync``, whose thread keeps running when the caller is cancelled
    natively (``task.cancel()``, ``asyncio.timeout``), :meth:`run` never leaves a job running
    behind its caller: a job that has not started is dropped, one that has is waited for
    (further cancellations absorbed) before the cancellation propagates. So an operation that
    returned, even by cancellation, has stopped touching its files: no descriptor is closed
    under a running ``write``, and a cancelled put has either committed or left nothing by the
    time the cancellation reaches its caller.
    """

    def __init__(self, max_workers: int) -> None:
        self._max = max_workers
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._max, thread_name_prefix="aiostore-file"
                )
            return self._pool

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker thread."""
        job = self.pool().submit(func, *args)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if not job.cancel():  # it runs already: let it finish first
                await _wait_done(job)
            raise

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


async def _wait_done(job: concurrent.futures.Future[Any]) -> bool:
    """Wait until a started job is done, whatever cancellations arrive meanwhile; True when one
    arrived (the caller re-raises it)."""
    cancelled = False
    # Shielded from anyio: a cancelled anyio scope re-delivers its cancellation on every loop
    # iteration until the task leaves it, which would spin here for as long as the job runs.
    with anyio.CancelScope(shield=True):
        while not job.done():
            try:
                await asyncio.shield(asyncio.wrap_future(job))
            except asyncio.CancelledError:
                cancelled = True  # a native one (task.cancel, asyncio.timeout)
            except BaseException:
                break
    return cancelled


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# -- the blocking side: every method below runs in a worker thread ----------------------------


class _ProbeRun:
    """One probe call; ``started`` once its thread runs (guarded by ``_Tree.lock``)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


class _SymlinkMet(Exception):
    """A directory component of the path is a symbolic link (internal)."""


@dataclasses.dataclass(eq=False, slots=True)
class _Pending:
    """A put in progress: its directory, temporary file and sidecar."""

    key: str
    dfd: int
    name: str
    tmp: str | None = None
    fd: int = -1
    ino: int = 0
    #: Metadata to write as a sidecar at commit (file systems without user xattrs).
    sidecar: bytes | None = None
    #: The sidecar written for this put's inode, until the object owns it.
    side_written: str | None = None


class _Tree:
    """The root directory and every blocking operation on it (thread-safe, stateless apart from
    what it learns about the file systems)."""

    def __init__(self, root: str, options: FileOptions) -> None:
        self.root = root
        #: False when the store is configured without WRITE_ACCESS (set by the driver).
        self.probe_writes = True
        self.options = options
        self.chunk_size = options.chunk_size
        self.fsync = options.fsync
        self.mode = options.file_mode
        self.lock = threading.Lock()
        #: The probe whose thread has not returned yet (a hung file system keeps it set).
        self.probe_run: _ProbeRun | None = None
        #: start() could not create the root: the probe keeps trying.
        self.root_pending = False
        #: st_dev of file systems found without user xattrs (sidecar metadata there).
        self.sidecar_devs: set[int] = set()

    # -- errors ---------------------------------------------------------------------------------
    def check_key(self, key: str) -> None:
        """Refuse what must never reach a path. The facade validates keys already; this is the
        last line of defence for sessions used directly, and guards the driver's own names."""
        if not key or key[0] == "/" or key[-1] == "/" or "//" in key or "\0" in key:
            raise InvalidKey("not a relative object name", key=key)
        if "." in key:
            for seg in key.split("/"):
                if seg in (".", ".."):
                    raise InvalidKey(f"the key has a {seg!r} segment", key=key)
                if _is_internal(seg):
                    raise InvalidKey(
                        f"the segment {seg!r} is reserved for the file driver's own files", key=key
                    )

    def error(self, exc: OSError, key: str | None, what: str, *, write: bool = False) -> StoreError:
        code = exc.errno
        if code == errno.ENAMETOOLONG:
            return InvalidKey(
                f"a segment of the key is too long for the file system ({what})", key=key
            )
        if code == errno.EISDIR:
            return NotFound(f"{what}: no such object (a prefix of other keys)", key=key)
        if code == errno.ENOTDIR and what == "put":
            return KeyConflict(
                "put: a leading part of the key is an existing object, so it cannot be a prefix",
                key=key,
            )
        return map_os_error(exc, key=key, write=write, what=what)

    def _escape(self, key: str, write: bool) -> StoreError:
        text = "refused: the key leads through a symbolic link outside the store root"
        if write:
            # The store is fine; only this key is poisoned. Revoke nothing.
            return StorageWriteDenied(text, key=key, revokes=Capability.NONE)
        return NotFound(text, key=key)

    # -- paths ----------------------------------------------------------------------------------
    def _walk(self, parts: Sequence[str], create: bool, write: bool) -> int:
        """Open the directory holding ``parts[-1]`` without following symbolic links."""
        try:
            fd = os.open(self.root, _DIR)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BackendUnavailable(
                f"the store root {self.root} is missing",
                revokes=Capability.WRITE_ACCESS if write else Capability.READ_ACCESS,
            ) from exc
        try:
            for seg in parts[:-1]:
                nfd = self._opendir(fd, seg, create)
                old, fd = fd, nfd
                os.close(old)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _opendir(self, fd: int, seg: str, create: bool) -> int:
        try:
            return os.open(seg, _DIR_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        except NotADirectoryError:
            if _is_link(fd, seg):
                raise _SymlinkMet(seg) from None
            raise
        try:
            os.mkdir(seg, 0o777, dir_fd=fd)
        except FileExistsError:
            pass  # a concurrent put made it
        else:
            if self.fsync:
                os.fsync(fd)  # the new entry must survive a crash like the object in it
        return self._opendir(fd, seg, False)

    def _parent(
        self, key: str, parts: list[str], *, create: bool, write: bool
    ) -> tuple[int, list[str]]:
        """(fd of the directory holding the object, the path parts used)."""
        try:
            return self._walk(parts, create, write), parts
        except _SymlinkMet:
            pass
        parts = self._resolve(key, write=write, keep_last=True)
        try:
            return self._walk(parts, create, write), parts
        except _SymlinkMet:
            raise self._escape(key, write) from None

    def _resolve(self, key: str, *, write: bool, keep_last: bool) -> list[str]:
        """The key's path with symbolic links resolved, relative to the real root; refused when
        it leads outside. ``keep_last``: resolve only the directories, keep the final name."""
        real_root = os.path.realpath(self.root)
        parts = key.split("/")
        head = parts[:-1] if keep_last else parts
        target = os.path.realpath(os.path.join(real_root, *head)) if head else real_root
        if target != real_root:
            base = real_root if real_root.endswith(os.sep) else real_root + os.sep
            if not target.startswith(base):
                raise self._escape(key, write)
        rel = [] if target == real_root else target[len(real_root) :].strip(os.sep).split(os.sep)
        if keep_last:
            rel.append(parts[-1])
        if not rel:
            raise NotFound("no such object (the key leads to the store root)", key=key)
        return rel

    def _open_file(self, key: str, flags: int, *, write: bool) -> tuple[int, int, list[str]]:
        """(directory fd, file fd, parts) of an existing regular file, links resolved safely."""
        parts = key.split("/")
        resolved = False
        while True:
            dfd, parts = self._parent(key, parts, create=False, write=write)
            try:
                fd = os.open(parts[-1], flags, dir_fd=dfd)
            except OSError as exc:
                os.close(dfd)
                if exc.errno != errno.ELOOP:
                    raise
                if resolved:
                    raise self._escape(key, write) from None
                parts = self._resolve(key, write=write, keep_last=False)
                resolved = True
                continue
            try:
                if not st_.S_ISREG(os.fstat(fd).st_mode):
                    raise NotFound("no such object (not a regular file)", key=key)
            except BaseException:
                os.close(fd)
                os.close(dfd)
                raise
            return dfd, fd, parts

    # -- put ------------------------------------------------------------------------------------
    def put_small(self, key: str, chunks: list[bytes], overwrite: bool, meta: bytes | None) -> None:
        box: list[_Pending] = []
        try:
            self.begin(key, overwrite, meta, chunks, box)
            self.commit(box[0], overwrite, [])
        except BaseException:
            if box:
                self.abort(box[0])
            raise

    def begin(
        self,
        key: str,
        overwrite: bool,
        meta: bytes | None,
        chunks: list[bytes],
        box: list[_Pending],
    ) -> None:
        """Create the temporary file (directories as needed), attach metadata, write
        ``chunks``. The pending put goes into ``box`` as soon as it holds anything to undo."""
        dfd, parts = self._parent(key, key.split("/"), create=True, write=True)
        p = _Pending(key, dfd, parts[-1])
        box.append(p)
        if not overwrite and _lexists(dfd, p.name):
            # Fail early instead of streaming a whole object; link() remains the arbiter.
            raise self._duplicate(p)
        p.fd, p.tmp = _create_tmp(dfd, p.name, self.mode)
        os.fchmod(p.fd, self.mode)  # exactly file_mode, whatever the umask
        sidecar = bool(self.sidecar_devs) and os.fstat(p.fd).st_dev in self.sidecar_devs
        if meta is not None and not sidecar:
            try:
                os.setxattr(p.fd, XATTR, meta)
            except OSError as exc:
                if exc.errno not in _NO_XATTR:
                    raise
                sidecar = True
                self.sidecar_devs.add(os.fstat(p.fd).st_dev)
        if sidecar:
            p.sidecar = meta if meta is not None else b"{}"
            p.ino = os.fstat(p.fd).st_ino
        if chunks:
            _write_all(p.fd, chunks)

    def commit(self, p: _Pending, overwrite: bool, rest: list[bytes]) -> None:
        """Write the last bytes, fsync, and publish the temporary file under the key."""
        if rest:
            _write_all(p.fd, rest)
        if self.fsync:
            os.fsync(p.fd)
        fd, p.fd = p.fd, -1
        os.close(fd)
        if p.sidecar is not None:
            self._write_sidecar(p)
        if overwrite:
            self._replace(p)
        else:
            self._link(p)
        if self.fsync:
            os.fsync(p.dfd)
        dfd, p.dfd = p.dfd, -1
        os.close(dfd)

    def _replace(self, p: _Pending) -> None:
        assert p.tmp is not None
        try:
            old: os.stat_result | None = os.stat(p.name, dir_fd=p.dfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            if st_.S_ISDIR(old.st_mode):
                raise KeyConflict(
                    "put: the key is a prefix of other keys (a directory); it cannot be an object",
                    key=p.key,
                )
            if st_.S_ISLNK(old.st_mode):
                # rename() replaces the link itself, but one that leads outside was put there on
                # purpose by someone: refuse instead of silently replacing it.
                self._resolve(p.key, write=True, keep_last=False)
        os.rename(p.tmp, p.name, src_dir_fd=p.dfd, dst_dir_fd=p.dfd)
        p.tmp = None
        p.side_written = None
        if p.sidecar is not None and old is not None and old.st_ino != p.ino:
            _unlink_quietly(_side_name(p.name, old.st_ino), p.dfd)

    def _link(self, p: _Pending) -> None:
        assert p.tmp is not None
        try:
            os.link(p.tmp, p.name, src_dir_fd=p.dfd, dst_dir_fd=p.dfd, follow_symlinks=False)
        except FileExistsError:
            raise self._duplicate(p) from None
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            # No hard links here (vfat, some FUSE): renameat2(RENAME_NOREPLACE) is as atomic.
            _rename_noreplace(p.dfd, p.tmp, p.name, exc)
            p.tmp = None
            p.side_written = None
            return
        p.side_written = None  # the object owns its sidecar now
        tmp, p.tmp = p.tmp, None
        try:
            os.unlink(tmp, dir_fd=p.dfd)
        except OSError as exc:  # committed already: a leftover link is swept later
            log.warning("put %r: could not remove %s after linking: %s", p.key, tmp, exc)

    def _duplicate(self, p: _Pending) -> StoreError:
        if _is_dir(p.dfd, p.name):
            return KeyConflict(
                "put: the key is a prefix of other keys (a directory); it cannot be an object",
                key=p.key,
            )
        return Duplicate("an object with this key exists", key=p.key)

    def _write_sidecar(self, p: _Pending) -> None:
        assert p.sidecar is not None
        side = _side_name(p.name, p.ino)
        fd, tmp = _create_tmp(p.dfd, side, self.mode)
        try:
            try:
                _write_all(fd, [p.sidecar])
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, side, src_dir_fd=p.dfd, dst_dir_fd=p.dfd)
        except BaseException:
            _unlink_quietly(tmp, p.dfd)
            raise
        p.side_written = side

    def abort(self, p: _Pending) -> None:
        """Undo a put that did not commit: nothing of it may remain. Never raises."""
        if p.fd >= 0:
            _close_quietly(p.fd)
            p.fd = -1
        if p.dfd >= 0:
            if p.tmp is not None:
                _unlink_quietly(p.tmp, p.dfd)
                p.tmp = None
            if p.side_written is not None:
                _unlink_quietly(p.side_written, p.dfd)
                p.side_written = None
            _close_quietly(p.dfd)
            p.dfd = -1

    # -- reads ----------------------------------------------------------------------------------
    def open_read(
        self, key: str, offset: int, length: int | None, box: list[int]
    ) -> tuple[int, bytes]:
        """(size, first chunk). The fd goes into ``box`` unless the range fit in that chunk."""
        dfd, fd, _ = self._open_file(key, _READ, write=False)
        box.append(fd)
        os.close(dfd)
        size = _range_size(os.fstat(fd).st_size, offset, length)
        first = _pread(fd, min(size, self.chunk_size), offset) if size else b""
        if len(first) >= size or not first:
            box.clear()
            os.close(fd)
            size = len(first)
        return size, first

    def read(self, key: str, offset: int, length: int | None) -> bytes:
        dfd, fd, _ = self._open_file(key, _READ, write=False)
        try:
            os.close(dfd)
            size = _range_size(os.fstat(fd).st_size, offset, length)
            return _pread(fd, size, offset) if size else b""
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo:
        for _ in range(3):
            dfd, fd, parts = self._open_file(key, _READ, write=False)
            try:
                st = os.fstat(fd)
                meta = self._metadata(fd, st, dfd, parts[-1])
            finally:
                os.close(fd)
                os.close(dfd)
            if meta is not None:
                return ObjectInfo(key, st.st_size, st.st_mtime, meta)
        # Overwritten under us three times in a row: report what the last file said.
        return ObjectInfo(key, st.st_size, st.st_mtime, {})

    def exists(self, key: str) -> bool:
        try:
            dfd, parts = self._parent(key, key.split("/"), create=False, write=False)
        except (FileNotFoundError, NotADirectoryError, NotFound):
            return False
        try:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        finally:
            os.close(dfd)
        if st_.S_ISLNK(st.st_mode):
            try:
                dfd, fd, _ = self._open_file(key, _READ, write=False)
            except (FileNotFoundError, NotADirectoryError, NotFound):
                return False
            os.close(fd)
            os.close(dfd)
            return True
        return st_.S_ISREG(st.st_mode)

    def _metadata(self, fd: int, st: os.stat_result, dfd: int, name: str) -> dict[str, Any] | None:
        """The object's metadata; None when a racing overwrite removed its sidecar (retry)."""
        try:
            raw = os.getxattr(fd, XATTR)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return {}
            if exc.errno not in _NO_XATTR:
                raise
            self.sidecar_devs.add(st.st_dev)
            try:
                raw = _read_small(_side_name(name, st.st_ino), dfd)
            except FileNotFoundError:
                # Either a file nobody put through us, or it was replaced and its sidecar
                # removed after we opened it: retry when the name now holds another inode.
                try:
                    now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    return {}
                return {} if now.st_ino == st.st_ino else None
        return _decode_meta(raw)

    # -- patch and delete -----------------------------------------------------------------------
    def patch(self, key: str, data: bytes, offset: int) -> int:
        dfd, fd, _ = self._open_file(key, _PATCH, write=True)
        try:
            os.close(dfd)
            size = os.fstat(fd).st_size
            if offset > size:
                # No holes: a patch must touch or extend the existing bytes.
                raise InvalidRange(f"offset {offset} is beyond the object's size {size}", key=key)
            view = memoryview(data)
            pos = offset
            while view:
                n = os.pwrite(fd, view[:_MAX_IO], pos)
                view = view[n:]
                pos += n
            if self.fsync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        return len(data)

    def delete(self, key: str) -> None:
        dfd, parts = self._parent(key, key.split("/"), create=False, write=True)
        try:
            name = parts[-1]
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound("no such object", key=key) from None
            if st_.S_ISDIR(st.st_mode):
                raise NotFound("no such object (a prefix of other keys)", key=key)
            if st_.S_ISLNK(st.st_mode):
                self._resolve(key, write=True, keep_last=False)  # refuse links leading out
            os.unlink(name, dir_fd=dfd)
            if st.st_dev in self.sidecar_devs:
                _unlink_quietly(_side_name(name, st.st_ino), dfd)
            if self.fsync:
                os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- listing --------------------------------------------------------------------------------
    def walk(self, prefix: str) -> Generator[ObjectInfo, None, None]:
        """Every object whose key starts with ``prefix``, in key order (a generator: it holds
        directory fds while suspended; close it to release them)."""
        head, _, start = prefix.rpartition("/")
        try:
            fd = self._walk([*head.split("/"), ""] if head else [""], False, False)
        except (FileNotFoundError, NotADirectoryError, _SymlinkMet):
            return
        try:
            yield from self._scan(fd, f"{head}/" if head else "", start)
        finally:
            os.close(fd)

    def _scan(self, dfd: int, base: str, start: str) -> Iterator[ObjectInfo]:
        entries: list[tuple[str, str, bool]] = []
        with os.scandir(dfd) as it:
            for e in it:
                name = e.name
                if not name.startswith(start) or _is_internal(name):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        # Sort "a/..." where the key "a/x" sorts: '/' orders before most text.
                        entries.append((name + "/", name, True))
                    elif e.is_file(follow_symlinks=False):
                        entries.append((name, name, False))
                except OSError:
                    continue
        entries.sort()
        for _, name, is_dir in entries:
            key = base + name
            if is_dir:
                try:
                    sub = os.open(name, _DIR_NOFOLLOW, dir_fd=dfd)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # removed or replaced meanwhile
                try:
                    yield from self._scan(sub, key + "/", "")
                finally:
                    os.close(sub)
                continue
            if not _valid_key(key):
                continue  # a file placed by hand under a name no key can have
            info = self._entry(dfd, name, key)
            if info is not None:
                yield info

    def _entry(self, dfd: int, name: str, key: str) -> ObjectInfo | None:
        for _ in range(3):
            try:
                fd = os.open(name, _READ, dir_fd=dfd)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return None  # replaced by a link meanwhile: listings never follow them
                raise
            try:
                st = os.fstat(fd)
                if not st_.S_ISREG(st.st_mode):
                    return None
                meta = self._metadata(fd, st, dfd, name)
            finally:
                os.close(fd)
            if meta is not None:
                return ObjectInfo(key, st.st_size, st.st_mtime, meta)
        return None

    # -- lifecycle and health -------------------------------------------------------------------
    def start(self) -> None:
        """Create the root, sweep what crashed puts left, learn whether xattrs work."""
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            self.root_pending = not os.path.isdir(self.root)
            log.warning(
                "file store root %s cannot be created now (%s); it stays unavailable until a"
                " probe can create it",
                self.root,
                exc.strerror or exc,
            )
            return
        try:
            self._detect_xattrs()
            self.sweep(time.time() - STALE_AFTER)
        except OSError as exc:
            log.info("file store root %s: start-up housekeeping skipped: %s", self.root, exc)

    def _detect_xattrs(self) -> None:
        dfd = os.open(self.root, _DIR)
        try:
            fd, tmp = _create_tmp(dfd, "", 0o600, probe=True)
            try:
                os.setxattr(fd, XATTR, b"{}")
            except OSError as exc:
                if exc.errno not in _NO_XATTR:
                    raise
                self.sidecar_devs.add(os.fstat(fd).st_dev)
                log.info("file store root %s: no user xattrs; metadata goes to sidecars", self.root)
            finally:
                os.close(fd)
                _unlink_quietly(tmp, dfd)
        finally:
            os.close(dfd)

    def sweep(self, older_than: float) -> int:
        """Remove temporary files, probe files and orphan sidecars last changed before
        ``older_than`` (a time.time() value). Returns how many were removed."""
        dfd = os.open(self.root, _DIR)
        try:
            return self._sweep(dfd, older_than)
        finally:
            os.close(dfd)

    def _sweep(self, dfd: int, older_than: float) -> int:
        removed = 0
        inodes: set[int] = set()
        internal: list[str] = []
        dirs: list[str] = []
        with os.scandir(dfd) as it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        dirs.append(e.name)
                        continue
                    inodes.add(e.inode())
                except OSError:
                    continue
                if _is_internal(e.name):
                    internal.append(e.name)
        for name in internal:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            if st.st_mtime >= older_than:
                continue
            if _SIDE in name and _TMP not in name:
                ino = name.rpartition(_SIDE)[2]
                if ino.isdigit() and int(ino) in inodes:
                    continue  # the sidecar of a live object
            if _unlink_quietly(name, dfd):
                removed += 1
        for name in dirs:
            try:
                sub = os.open(name, _DIR_NOFOLLOW, dir_fd=dfd)
            except OSError:
                continue
            try:
                removed += self._sweep(sub, older_than)
            finally:
                os.close(sub)
        return removed

    def probe(self, run: _ProbeRun) -> ProbeResult:
        with self.lock:
            run.started = True
        try:
            return self._probe()
        finally:
            with self.lock:
                if self.probe_run is run:
                    self.probe_run = None

    def _probe(self) -> ProbeResult:
        root = self.root
        read = Verdict.ok()
        if not os.path.isdir(root) and self.root_pending and not os.path.lexists(root):
            try:
                os.makedirs(root, exist_ok=True)  # what start() could not do
            except OSError as exc:
                read = Verdict.fail(f"root missing: {root} (cannot create it: {_strerror(exc)})")
            else:
                self.root_pending = False
                log.info("file store root %s created", root)
        if read.healthy:
            try:
                with os.scandir(root) as it:
                    next(it, None)
            except FileNotFoundError:
                read = Verdict.fail(f"root missing: {root}")
            except NotADirectoryError:
                read = Verdict.fail(f"root is not a directory: {root}")
            except OSError as exc:
                read = Verdict.fail(f"root not readable: {root}: {_strerror(exc)}")
        verdicts = {Capability.READ_ACCESS: read, Capability.READ_RANDOM: read}
        if self.probe_writes:  # never write to a store configured read-only
            verdicts[Capability.WRITE_ACCESS] = self._probe_write() if read.healthy else read
        return verdicts

    def _probe_write(self) -> Verdict:
        root = self.root
        o = self.options
        try:
            vfs = os.statvfs(root)
        except OSError as exc:
            return Verdict.fail(f"statvfs failed: {_strerror(exc)}")
        if vfs.f_flag & os.ST_RDONLY:
            return Verdict.fail("read-only file system")
        free = vfs.f_bavail * vfs.f_frsize
        total = vfs.f_blocks * vfs.f_frsize
        if total > 0:  # ramfs and some network file systems report no sizes
            if free < o.min_free_bytes:
                return Verdict.fail(
                    f"disk full: {_human(free)} free < min_free_bytes {_human(o.min_free_bytes)}"
                )
            if o.min_free_percent and free * 100.0 / total < o.min_free_percent:
                return Verdict.fail(
                    f"disk full: {free * 100.0 / total:.1f}% free"
                    f" < min_free_percent {o.min_free_percent:g}%"
                )
        name = f"{_PROBE}{secrets.token_hex(6)}"
        try:
            dfd = os.open(root, _DIR)
        except OSError as exc:
            return Verdict.fail(f"root not accessible: {_strerror(exc)}")
        try:
            try:
                fd = os.open(name, _PROBE_FLAGS, 0o600, dir_fd=dfd)
            except OSError as exc:
                return Verdict.fail(f"probe write failed: {_strerror(exc)}")
            error = None
            try:
                _write_all(fd, [_PROBE_DATA])
                os.fsync(fd)
                if os.pread(fd, len(_PROBE_DATA) + 1, 0) != _PROBE_DATA:
                    error = "probe file read back differently (file system broken?)"
            except OSError as exc:
                error = f"probe write failed: {_strerror(exc)}"
            finally:
                os.close(fd)
            removed = _unlink_quietly(name, dfd)
        finally:
            os.close(dfd)
        if error is not None:
            return Verdict.fail(error)
        if not removed:
            return Verdict.fail("cannot remove the probe file")
        return Verdict.ok(f"{_human(free)} free" if total > 0 else "")


# -- helpers ----------------------------------------------------------------------------------


def _is_internal(name: str) -> bool:
    return name.startswith(".") and _MARK in name


def _short(name: str) -> str:
    if len(name) <= _NAME_KEEP // 4:
        return name
    return name.encode()[:_NAME_KEEP].decode("utf-8", "ignore")


def _side_name(name: str, ino: int) -> str:
    return f".{_short(name)}{_SIDE}{ino}"


def _create_tmp(dfd: int, name: str, mode: int, probe: bool = False) -> tuple[int, str]:
    """A new temporary file next to ``name`` (or a probe file): (fd, its name)."""
    while True:
        if probe:
            tmp = f"{_PROBE}{secrets.token_hex(6)}"
        else:
            tmp = f".{_short(name)}{_TMP}{secrets.token_hex(6)}"
        try:
            return os.open(tmp, _CREATE, mode, dir_fd=dfd), tmp
        except FileExistsError:
            continue


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """Write every chunk (one ``writev`` in the common case)."""
    if not chunks:
        return
    data: bytes | memoryview
    if len(chunks) == 1:
        data = chunks[0]
    elif len(chunks) <= 64:  # well under IOV_MAX
        n = os.writev(fd, chunks)
        if n == sum(len(c) for c in chunks):
            return
        data = memoryview(b"".join(chunks))[n:]
    else:
        data = b"".join(chunks)
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:_MAX_IO])
        view = view[n:]


def _pread(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, min(size, _MAX_IO), offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, min(size - got, _MAX_IO), offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _range_size(total: int, offset: int, length: int | None) -> int:
    avail = max(0, total - offset)
    return avail if length is None else min(length, avail)


def _read_small(name: str, dfd: int) -> bytes:
    fd = os.open(name, _READ, dir_fd=dfd)
    try:
        return os.read(fd, _SIDECAR_MAX)
    finally:
        os.close(fd)


def _lexists(dfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _is_link(dfd: int, name: str) -> bool:
    try:
        return st_.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _is_dir(dfd: int, name: str) -> bool:
    try:
        return st_.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink_quietly(name: str, dfd: int) -> bool:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("could not remove %s: %s", name, exc)
        return False
    return True


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


_renameat2: Any = None


def _rename_noreplace(dfd: int, src: str, dst: str, link_error: OSError) -> None:
    """``renameat2(..., RENAME_NOREPLACE)``: fails with EEXIST (→ Duplicate) atomically."""
    global _renameat2
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (AttributeError, OSError):
            raise link_error from None
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2(dfd, os.fsencode(src), dfd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise Duplicate("an object with this key exists")
    if code in (errno.EINVAL, errno.ENOSYS):
        raise StoreError(
            "this file system supports neither hard links nor RENAME_NOREPLACE: create-only"
            " puts cannot be atomic here (use overwrite=True)"
        ) from link_error
    raise OSError(code, os.strerror(code), dst)


def _encode_meta(metadata: Metadata) -> bytes | None:
    if not metadata:
        return None
    return json.dumps(
        metadata, ensure_ascii=False, separators=(",", ":"), default=_json_default
    ).encode()


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON")


def _decode_meta(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("ignoring metadata that is not JSON: %r", raw[:64])
        return {}
    return value if isinstance(value, dict) else {}


def _valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def _take(gen: Iterator[ObjectInfo], n: int) -> list[ObjectInfo]:
    out = []
    for item in gen:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _strerror(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
