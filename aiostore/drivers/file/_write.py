"""Atomic puts, in-place patches and deletes (the blocking side: worker threads).

A put writes its data into a file nobody can see, fsyncs it, and publishes it under the key in
one step:

- Where the file system has ``O_TMPFILE`` (ext4, xfs, btrfs, tmpfs) the data goes into an
  *unnamed* file in the target directory. A create-only put publishes it with ``linkat`` (through
  ``/proc/self/fd``): ``EEXIST`` is the atomic ``Duplicate``. An overwrite links it under a
  temporary name next to the object and ``rename``\\ s that over the key. A writer that dies
  leaves nothing behind (except in the microseconds between that link and the rename).
- Elsewhere (ramfs, NFS, FUSE) the data goes into a named file in ``<root>/.aiostore-tmp/``,
  published with ``rename`` (overwrite) or ``link`` + ``unlink`` (create-only; ``renameat2`` with
  ``RENAME_NOREPLACE`` where there are no hard links). The writer holds an ``flock`` on it for its
  whole life, so a running store tells a dead writer's file (unlocked) from a live one's and
  reclaims it (``_sweep.py``).

A put is one thread hop: ``small`` (the whole object fits in one chunk) or ``stream``, where one
job creates the file, writes what the event loop queues in its :class:`Feed` (bounded; several
queued chunks go out in one ``writev``) and commits when the feed ends. The loop only queues
chunks, so writing overlaps the stream's hashing without a hop per chunk. When the put fsyncs,
the job starts the write-back of every few MiB as it goes, so the final ``fsync`` finds little
left to flush, and it drops from the page cache what the disk has, :data:`_KEEP` bytes behind
its writes (waiting for that write-back first when the disk is slower than the stream). So a
large put holds at most about ``_KEEP`` + ``_WRITEBACK`` bytes of page cache whatever its size,
and its writes keep reusing the same few page frames instead of taking 1 GiB of fresh ones per
GiB: filling fresh frames is what costs (on a VM whose host reclaims the guest's free memory, a
page's first touch faults in the host too; measured, it tripled the writer's system time) and
what evicts everyone else's cache. The price: an object read right after its put comes from the
disk, except its last ``_KEEP`` bytes. The kernel never drops a dirty page, so where write-back
does not apply (tmpfs, ramfs) nothing is dropped.

Cancellation: the session runs the job with ``run_blocking(..., fence=put.fence)``. A caller
cancelled while a step hangs in a system call gets control back at once; the step's thread runs
on, and since its caller has gone, the fence makes its commit raise ``Abandoned`` (and the
feed, stopped, makes its next take raise it). The file descriptors belong to the thread side:
when the caller asks to
abort while a step still runs, that step cleans up as it ends, so no descriptor is ever closed
under a running ``write`` and the temporary file goes as soon as the file system lets it.

A delete removes the directories it empties, except those a put of the same store has pinned
(``Tree.pin``): until its commit links the file in, a put's directory looks empty, and deletes
that empty it again and again would otherwise make the put lose that race every time it walks.
A put that finds its directory removed under it anyway (by another process) walks again, a few
times; an empty directory where the key should go is removed, so no empty directory ever blocks
a key.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import stat as st_
import threading

from ...errors import (
    BackendUnavailable,
    Duplicate,
    InvalidRange,
    KeyConflict,
    NotFound,
    StoreError,
)
from ...sdk import Abandoned, Capability, Fence
from . import _meta
from ._names import TMP_DIR, key_parts, side_name, tmp_name, tmp_name_beside
from ._os import (
    CREATE,
    DIR_NOFOLLOW,
    HAS_TMPFILE,
    MAX_IO,
    NO_LINK,
    NO_TMPFILE,
    PATCH,
    TMPFILE,
    close_quietly,
    drop_written,
    lock_nowait,
    log,
    lstat_or_none,
    rename_noreplace,
    start_writeback,
    unlink_quietly,
    write_all,
)
from ._tree import Pins, Tree

__all__ = ["Feed", "Put", "delete", "patch"]

#: O_TMPFILE files are published through /proc/self/fd (linkat with AT_EMPTY_PATH needs
#: CAP_DAC_READ_SEARCH); without /proc every put uses a named temporary file.
_HAS_TMPFILE = HAS_TMPFILE and os.path.isdir("/proc/self/fd")
#: Times a put walks again when a delete removed its (empty) directory under it.
_RETRIES = 8
#: Most bytes one ``writev`` of a large put's writer takes from its feed.
_BATCH = 8 << 20
#: A large put starts the write-back of every this many bytes as it goes (when it fsyncs).
_WRITEBACK = 8 << 20
#: ... and drops from the page cache what lies more than this many bytes behind its writes.
_KEEP = 16 << 20


class Feed:
    """A large put's chunks on their way from the event loop to its writer thread: FIFO and
    bounded by ``limit`` bytes not written yet. Handing a chunk over is a deque append; the loop
    waits (a future the writer resolves) only when the writer falls behind, and then until it
    is down to half the limit, so one wake-up lets several chunks through. There is no room
    until the writer has created the file (:meth:`ready`): a put that fails there (a create-only
    put of a key that exists) has pulled only a chunk of its input."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._chunks: collections.deque[bytes] = collections.deque()
        self._pending = 0  # bytes queued or being written
        self._size = limit
        self._limit = 0  # until ready()
        self._ended = False  # the loop handed over the last chunk
        self._stopped = False  # the writer quit, or the loop gave up
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None

    # -- the event loop's side --------------------------------------------------------------------
    async def put(self, chunk: bytes) -> bool:
        """Queue ``chunk``; False when the writer has stopped (its error is the job's)."""
        with self._cond:
            if self._stopped:
                return False
            self._chunks.append(chunk)
            self._pending += len(chunk)
            self._cond.notify()
            if self._pending < self._limit:
                return True
            waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            with self._cond:
                if self._waiter is waiter:
                    self._waiter = None
        return not self._stopped

    def end(self) -> None:
        """The data is complete: the writer commits once it has written everything."""
        with self._cond:
            self._ended = True
            self._cond.notify()

    def stop(self) -> None:
        """No more chunks, and no commit: the writer raises ``Abandoned`` at its next take.
        The writer calls it too as it quits, to release a loop that waits for room."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._wake(waiter)

    # -- the writer's side (a worker thread) ----------------------------------------------------
    def ready(self) -> None:
        """The file exists: let the loop queue up to the limit."""
        with self._cond:
            self._limit = self._size
            waiter = self._waiter
            if waiter is None or self._pending >= self._limit:
                return
            self._waiter = None
        self._wake(waiter)

    def take(self) -> list[bytes] | None:
        """The chunks queued (up to ``_BATCH`` bytes, at least one), or None at the end."""
        with self._cond:
            while not self._chunks and not self._ended and not self._stopped:
                self._cond.wait()
            if self._stopped:
                raise Abandoned("the put was given up")
            if not self._chunks:
                return None
            batch = [self._chunks.popleft()]
            size = len(batch[0])
            while self._chunks and size < _BATCH:
                chunk = self._chunks.popleft()
                batch.append(chunk)
                size += len(chunk)
            return batch

    def written(self, n: int) -> None:
        with self._cond:
            self._pending -= n
            waiter = self._waiter
            if waiter is None or self._pending > self._limit // 2:
                return
            self._waiter = None
        self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:  # pragma: no cover - the loop has closed: nobody waits any more
            pass


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclasses.dataclass(eq=False)
class Put:
    """One put in progress; its methods run in worker threads, one at a time."""

    tree: Tree
    key: str
    overwrite: bool
    meta: bytes | None
    fence: Fence = dataclasses.field(default_factory=Fence)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    _busy: bool = False
    _closing: bool = False
    dfd: int = -1  # the directory the key goes into
    parts: list[str] = dataclasses.field(default_factory=list)
    fd: int = -1  # the data file
    tmp_dfd: int = -1  # the directory of the named temporary file
    tmp: str | None = None  # its name (None: unnamed, or published)
    sidecar: bytes | None = None  # metadata for a sidecar (no user xattrs here)
    ino: int = 0
    side: str | None = None  # the sidecar written, until the object owns it
    pins: Pins = ()  # the key's directories, kept from this store's deletes until we end

    # -- the steps (each one thread hop) --------------------------------------------------------
    def run(self, step: str, chunks: list[bytes], feed: Feed | None = None) -> None:
        """``small``: the whole object is ``chunks`` (begin + commit in one hop). ``stream``:
        begin with ``chunks``, then write what ``feed`` brings and commit at its end (the
        whole put in one hop: the loop only queues chunks)."""
        with self._lock:
            if self._closing:
                if feed is not None:
                    feed.stop()
                raise Abandoned("the put was aborted")
            self._busy = True
        try:
            self.fence.check()
            self._begin(chunks)
            if feed is not None:
                feed.ready()
                self._drain(feed, sum(map(len, chunks)))
            self._commit()
        finally:
            if feed is not None:
                feed.stop()  # a loop waiting for room hears that the writer has quit
            with self._lock:
                self._busy = False
                clean = self._closing
            if clean:  # the caller left while we ran: undo now that nothing uses the files
                self._cleanup()

    def _drain(self, feed: Feed, size: int) -> None:
        """Write what ``feed`` brings until its end (``size``: bytes written so far)."""
        flushed = dropped = 0
        while (batch := feed.take()) is not None:
            self.fence.check()
            write_all(self.fd, batch)
            n = sum(map(len, batch))
            feed.written(n)
            size += n
            if self.tree.fsync and size - flushed >= _WRITEBACK:
                # The disk writes while the rest streams in: the fsync waits for less.
                start_writeback(self.fd, flushed, size - flushed)
                flushed = size
                if flushed - dropped > _KEEP:
                    # Written long enough ago: its page frames take the next writes.
                    drop_written(self.fd, dropped, flushed - _KEEP - dropped)
                    dropped = flushed - _KEEP

    def abort(self) -> None:
        """Undo a put that did not commit: nothing of it may remain. Never raises. When a step
        still runs (a hung ``write``), that step cleans up as it ends."""
        with self._lock:
            self._closing = True
            if self._busy:
                return
        self._cleanup()

    # -- begin ----------------------------------------------------------------------------------
    def _begin(self, chunks: list[bytes]) -> None:
        """Create the file (directories as needed), attach metadata, write ``chunks``."""
        t = self.tree
        self.pins = t.pin(key_parts(self.key))
        for attempt in range(_RETRIES):
            self.dfd, self.parts = t.parent(self.key, create=True, write=True)
            name = self.parts[-1]
            if not self.overwrite:
                st = lstat_or_none(self.dfd, name)
                # Fail early instead of streaming a whole object; the link remains the arbiter.
                if st is not None and not self._free_dir(st):
                    raise self._taken(st)
            try:
                self.fd = self._create()
                break
            except OSError as exc:
                # ext4 refuses an O_TMPFILE in a removed directory with EPERM, not ENOENT.
                if os.fstat(self.dfd).st_nlink > 0:
                    raise
                # Another process's delete removed the (then empty) directory: walk again.
                self._release()
                if attempt == _RETRIES - 1:
                    raise self._vanished() from exc
        os.fchmod(self.fd, t.mode)  # exactly file_mode, whatever the umask
        if not _meta.attach(t, self.fd, self.meta):
            self.sidecar = self.meta if self.meta is not None else b"{}"
            self.ino = os.fstat(self.fd).st_ino
        write_all(self.fd, chunks)

    def _create(self) -> int:
        t = self.tree
        dev = os.fstat(self.dfd).st_dev
        if _HAS_TMPFILE and dev not in t.named_tmp_devs:
            try:
                fd = os.open(".", TMPFILE, 0o600, dir_fd=self.dfd)
            except OSError as exc:
                if exc.errno not in NO_TMPFILE:
                    raise
                t.named_tmp_devs.add(dev)
            else:
                lock_nowait(fd)  # guards the short-lived name an overwrite gives it
                return fd
        self.tmp_dfd = self._tmp_dir(dev)
        while True:
            name = tmp_name() if self.tmp_dfd != self.dfd else tmp_name_beside(self.parts[-1])
            try:
                fd = os.open(name, CREATE, 0o600, dir_fd=self.tmp_dfd)
            except FileExistsError:
                continue
            self.tmp = name
            lock_nowait(fd)  # held while we live: see _sweep.py
            return fd

    def _tmp_dir(self, dev: int) -> int:
        """``<root>/.aiostore-tmp`` when it is on the object's file system, else the object's
        own directory (a mount inside the root)."""
        root = self.tree.open_root(write=True)
        try:
            try:
                fd = os.open(TMP_DIR, DIR_NOFOLLOW, dir_fd=root)
            except FileNotFoundError:
                try:
                    os.mkdir(TMP_DIR, 0o700, dir_fd=root)
                except FileExistsError:
                    pass
                fd = os.open(TMP_DIR, DIR_NOFOLLOW, dir_fd=root)
        finally:
            os.close(root)
        self.tree.tmp_dir_seen = True
        if os.fstat(fd).st_dev == dev:
            return fd
        os.close(fd)
        return self.dfd

    # -- commit ---------------------------------------------------------------------------------
    def _commit(self) -> None:
        """fsync the file and publish it under the key."""
        t = self.tree
        if t.fsync:
            os.fsync(self.fd)
        with self.fence.commit():  # Abandoned when the caller has gone: nothing is published
            for attempt in range(_RETRIES):
                try:
                    if self.sidecar is not None and self.side is None:
                        self._write_sidecar()
                    if self.overwrite:
                        self._replace()
                    else:
                        self._link()
                    break
                except FileNotFoundError as exc:
                    if isinstance(exc, StoreError) or os.fstat(self.dfd).st_nlink > 0:
                        raise  # not our directory that went: the temporary file did
                    if attempt == _RETRIES - 1:
                        raise self._vanished() from exc
                    # Another process's delete removed the (then empty) directory: walk again.
                    if self.dfd != self.tmp_dfd:  # else it stays open as tmp_dfd (_release)
                        os.close(self.dfd)
                    self.dfd = -1
                    self.dfd, self.parts = t.parent(self.key, create=True, write=True)
        if t.fsync:
            os.fsync(self.dfd)
        self._release()
        self._unpin()

    def _replace(self) -> None:
        name = self.parts[-1]
        old = lstat_or_none(self.dfd, name)
        if old is not None:
            if st_.S_ISDIR(old.st_mode) and not self._free_dir(old):
                raise self._taken(old)
            if st_.S_ISLNK(old.st_mode):
                # rename() replaces the link itself, but one that leads outside was put there on
                # purpose by someone: refuse instead of silently replacing it.
                self.tree.resolve(self.key, self.parts, write=True, keep_last=False)
        if self.tmp is None:  # unnamed: give it a name beside the key first
            tmp = tmp_name_beside(name)
            os.link(f"/proc/self/fd/{self.fd}", tmp, dst_dir_fd=self.dfd, follow_symlinks=True)
            self.tmp, self.tmp_dfd = tmp, self.dfd
        os.rename(self.tmp, name, src_dir_fd=self.tmp_dfd, dst_dir_fd=self.dfd)
        self.tmp = None
        self.side = None  # the object owns its sidecar now
        if self.sidecar is not None and old is not None and old.st_ino != self.ino:
            unlink_quietly(side_name(name, old.st_ino), self.dfd)

    def _link(self) -> None:
        name = self.parts[-1]
        for _ in range(2):
            try:
                if self.tmp is None:
                    src = f"/proc/self/fd/{self.fd}"
                    os.link(src, name, dst_dir_fd=self.dfd, follow_symlinks=True)
                else:
                    os.link(
                        self.tmp,
                        name,
                        src_dir_fd=self.tmp_dfd,
                        dst_dir_fd=self.dfd,
                        follow_symlinks=False,
                    )
                break
            except FileExistsError:
                st = lstat_or_none(self.dfd, name)
                if st is not None and not self._free_dir(st):
                    raise self._taken(st) from None
            except OSError as exc:
                if self.tmp is None or exc.errno not in NO_LINK:
                    raise
                # No hard links here (vfat, some FUSE): renameat2(RENAME_NOREPLACE) is as atomic.
                rename_noreplace(self.tmp_dfd, self.tmp, self.dfd, name, exc, self.key)
                self.tmp = None
                self.side = None
                return
        else:
            raise Duplicate("an object with this key exists", key=self.key)
        self.side = None  # the object owns its sidecar now
        tmp, self.tmp = self.tmp, None
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=self.tmp_dfd)
            except OSError as exc:  # committed already: a leftover link is reclaimed later
                log.warning("put %r: could not remove %s after linking: %s", self.key, tmp, exc)

    def _free_dir(self, st: os.stat_result) -> bool:
        """True when ``st`` is an empty directory we just removed (it blocks no key)."""
        if not st_.S_ISDIR(st.st_mode):
            return False
        try:
            os.rmdir(self.parts[-1], dir_fd=self.dfd)
        except OSError:
            return False
        return True

    def _vanished(self) -> StoreError:
        # The store is fine: another process keeps emptying and removing the key's directory.
        return BackendUnavailable(
            f"put: the key's directory was removed under it {_RETRIES} times in a row (by"
            " deletes of another process); try again",
            key=self.key,
            revokes=Capability.NONE,
        )

    def _taken(self, st: os.stat_result) -> StoreError:
        if st_.S_ISDIR(st.st_mode):
            return KeyConflict(
                "put: the key is a prefix of other keys (a directory); it cannot be an object",
                key=self.key,
            )
        return Duplicate("an object with this key exists", key=self.key)

    def _write_sidecar(self) -> None:
        assert self.sidecar is not None
        side = side_name(self.parts[-1], self.ino)
        tmp = tmp_name_beside(side)
        fd = os.open(tmp, CREATE, self.tree.mode, dir_fd=self.dfd)
        try:
            try:
                write_all(fd, [self.sidecar])
                if self.tree.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, side, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
        except BaseException:
            unlink_quietly(tmp, self.dfd)
            raise
        self.side = side

    # -- clean-up -------------------------------------------------------------------------------
    def _cleanup(self) -> None:
        if self.fd >= 0:
            close_quietly(self.fd)
            self.fd = -1
        if self.tmp is not None and self.tmp_dfd >= 0:
            unlink_quietly(self.tmp, self.tmp_dfd)
            self.tmp = None
        if self.side is not None and self.dfd >= 0:
            unlink_quietly(self.side, self.dfd)
            self.side = None
        self._release()
        self._unpin()
        if len(self.parts) > 1:
            try:
                self.tree.prune(self.parts)  # directories this put made and left empty
            except (OSError, StoreError):
                pass

    def _unpin(self) -> None:
        pins, self.pins = self.pins, ()
        self.tree.unpin(pins)

    def _release(self) -> None:
        if self.fd >= 0:
            close_quietly(self.fd)
            self.fd = -1
        if self.tmp_dfd >= 0 and self.tmp_dfd != self.dfd:
            close_quietly(self.tmp_dfd)
        self.tmp_dfd = -1
        if self.dfd >= 0:
            close_quietly(self.dfd)
            self.dfd = -1


def patch(tree: Tree, key: str, data: bytes, offset: int, fence: Fence) -> int:
    """Write ``data`` into the existing object at ``offset`` (no holes)."""
    dfd, fd, _ = tree.open_file(key, PATCH, write=True)
    try:
        os.close(dfd)
        size = os.fstat(fd).st_size
        if offset > size:
            raise InvalidRange(f"offset {offset} is beyond the object's size {size}", key=key)
        view = memoryview(data)
        pos = offset
        with fence.commit():  # a caller that left changes nothing
            while view:
                n = os.pwrite(fd, view[:MAX_IO], pos)
                view = view[n:]
                pos += n
        if tree.fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return len(data)


def delete(tree: Tree, key: str, fence: Fence) -> None:
    """Remove the object, its sidecar, and the directories that held only it."""
    dfd, parts = tree.parent(key, create=False, write=True)
    try:
        name = parts[-1]
        st = lstat_or_none(dfd, name)
        if st is None:
            raise NotFound("no such object", key=key)
        if st_.S_ISDIR(st.st_mode):
            raise NotFound("no such object (a prefix of other keys)", key=key)
        if st_.S_ISLNK(st.st_mode):
            tree.resolve(key, parts, write=True, keep_last=False)  # refuse links leading out
        with fence.commit():  # a caller that left deletes nothing
            os.unlink(name, dir_fd=dfd)
        if st.st_dev in tree.sidecar_devs:
            unlink_quietly(side_name(name, st.st_ino), dfd)
        if tree.fsync:
            os.fsync(dfd)
    finally:
        os.close(dfd)
    if len(parts) > 1:
        tree.prune(parts)
