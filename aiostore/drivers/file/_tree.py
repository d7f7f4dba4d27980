"""The root directory, reached without ever following a symbolic link out of it.

Keys reaching a driver are validated (no ``..``, no leading ``/``), and paths are never joined
into a string and handed to the kernel: every operation opens the root and then each directory of
the key relative to the previous one with ``O_NOFOLLOW`` (``openat``), and touches the final name
relative to that directory fd. A symbolic link met on the way is resolved (``realpath``) and
followed only when its target lies under the *real* root; one that leads outside is refused
(reads: ``NotFound``; writes: ``StorageWriteDenied`` that revokes nothing, since the store itself
is fine). Listings never follow symbolic links.

Everything here blocks: it runs in worker threads.
"""

from __future__ import annotations

import collections
import errno
import os
import stat as st_
import threading
from collections.abc import Sequence

from ...errors import BackendUnavailable, NotFound, StoreError
from ...sdk import Capability
from ._errors import escape_error
from ._names import key_parts
from ._options import FileOptions
from ._os import DIR, DIR_NOFOLLOW, close_quietly, is_link

__all__ = ["Pins", "SymlinkMet", "Tree"]

#: The directories of a key, as name tuples from the root: ``a/b/c`` → ``(a,), (a, b)``.
Pins = tuple[tuple[str, ...], ...]

#: Walks (and directory creations) retried when a delete removes an emptied directory under us.
_RETRIES = 8


class SymlinkMet(Exception):
    """A directory component of the path is a symbolic link (internal)."""


class Tree:
    """The store's root and what the driver learns about its file systems (thread-safe)."""

    def __init__(self, root: str, options: FileOptions) -> None:
        self.root = root
        self.options = options
        self.chunk_size = options.chunk_size
        self.fsync = options.fsync
        self.mode = options.file_mode
        #: False when the store is configured without WRITE_ACCESS (set by the driver).
        self.probe_writes = True
        self.lock = threading.Lock()
        #: start() could not create the root: the probe keeps trying.
        self.root_pending = False
        #: st_dev of file systems found without user xattrs (sidecar metadata there).
        self.sidecar_devs: set[int] = set()
        #: st_dev of file systems found without O_TMPFILE (named temporary files there).
        self.named_tmp_devs: set[int] = set()
        #: ``<root>/.aiostore-tmp`` exists (probes reclaim dead writers' files from it).
        self.tmp_dir_seen = False
        #: Directories puts in flight use (see :meth:`pin`), and those a prune is removing.
        self._pins: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._pruning: set[tuple[str, ...]] = set()
        self._pin_cond = threading.Condition(threading.Lock())

    # -- directories in use ---------------------------------------------------------------------
    def pin(self, parts: Sequence[str]) -> Pins:
        """Keep this store's deletes from removing the directories of ``parts`` until
        :meth:`unpin`. A put's data waits in an unnamed (or remote) temporary file, so its
        directory looks empty until the commit links the file in; without the pin, deletes that
        empty the directory again and again could make the put lose that race every time it
        walks. Waits while a prune removes one of them (the put then walks after it)."""
        dirs = tuple(tuple(parts[:i]) for i in range(1, len(parts)))
        if not dirs:
            return dirs
        with self._pin_cond:
            while not self._pruning.isdisjoint(dirs):
                self._pin_cond.wait()
            self._pins.update(dirs)
        return dirs

    def unpin(self, dirs: Pins) -> None:
        if not dirs:
            return
        with self._pin_cond:
            self._pins.subtract(dirs)
            for d in dirs:
                if self._pins[d] <= 0:
                    del self._pins[d]

    # -- walking --------------------------------------------------------------------------------
    def open_root(self, write: bool) -> int:
        try:
            return os.open(self.root, DIR)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BackendUnavailable(
                f"the store root {self.root} is missing",
                revokes=Capability.WRITE_ACCESS if write else Capability.READ_ACCESS,
            ) from exc

    def walk(self, parts: Sequence[str], create: bool, write: bool) -> int:
        """Open the directory holding ``parts[-1]`` without following symbolic links."""
        fd = self.open_root(write)
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
        for _ in range(_RETRIES):
            try:
                return os.open(seg, DIR_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
            except NotADirectoryError:
                if is_link(fd, seg):
                    raise SymlinkMet(seg) from None
                raise
            try:
                os.mkdir(seg, 0o777, dir_fd=fd)
            except FileExistsError:
                pass  # a concurrent put made it
            else:
                if self.fsync:
                    os.fsync(fd)  # the new entry must survive a crash like the object in it
            # Open what we made, unless a delete removed it again meanwhile (it was empty).
        raise FileNotFoundError(errno.ENOENT, "directories keep vanishing", seg)

    def parent(self, key: str, *, create: bool, write: bool) -> tuple[int, list[str]]:
        """(fd of the directory holding the object, the file names of its path)."""
        parts = key_parts(key)
        for attempt in range(_RETRIES):
            try:
                return self.walk(parts, create, write), parts
            except SymlinkMet:
                break
            except FileNotFoundError as exc:
                # mkdir in a directory a delete has just removed (it was empty): walk again.
                if not create or isinstance(exc, StoreError) or attempt == _RETRIES - 1:
                    raise
        parts = self.resolve(key, parts, write=write, keep_last=True)
        try:
            return self.walk(parts, create, write), parts
        except SymlinkMet:
            raise escape_error(key, write) from None

    def resolve(self, key: str, parts: list[str], *, write: bool, keep_last: bool) -> list[str]:
        """``parts`` with symbolic links resolved, relative to the real root; refused when they
        lead outside. ``keep_last``: resolve only the directories, keep the final name."""
        real_root = os.path.realpath(self.root)
        head = parts[:-1] if keep_last else parts
        target = os.path.realpath(os.path.join(real_root, *head)) if head else real_root
        if target != real_root:
            base = real_root if real_root.endswith(os.sep) else real_root + os.sep
            if not target.startswith(base):
                raise escape_error(key, write)
        rel = [] if target == real_root else target[len(real_root) :].strip(os.sep).split(os.sep)
        if keep_last:
            rel.append(parts[-1])
        if not rel:
            raise NotFound("no such object (the key leads to the store root)", key=key)
        return rel

    def open_file(self, key: str, flags: int, *, write: bool) -> tuple[int, int, list[str]]:
        """(directory fd, file fd, names) of an existing regular file, links resolved safely."""
        dfd, parts = self.parent(key, create=False, write=write)
        resolved = False
        while True:
            try:
                fd = os.open(parts[-1], flags, dir_fd=dfd)
            except OSError as exc:
                os.close(dfd)
                if exc.errno != errno.ELOOP:
                    raise
                if resolved:
                    raise escape_error(key, write) from None
                parts = self.resolve(key, key_parts(key), write=write, keep_last=False)
                resolved = True
                try:
                    dfd = self.walk(parts, False, write)
                except SymlinkMet:
                    raise escape_error(key, write) from None
                continue
            try:
                if not st_.S_ISREG(os.fstat(fd).st_mode):
                    raise NotFound("no such object (not a regular file)", key=key)
            except BaseException:
                os.close(fd)
                os.close(dfd)
                raise
            return dfd, fd, parts

    def prune(self, parts: Sequence[str]) -> None:
        """Remove the directories along ``parts[:-1]`` that are empty, deepest first (a delete
        emptied them). ``rmdir`` never removes a directory that holds anything, so no object can
        be lost; a directory a put of this store has pinned (:meth:`pin`) is left alone, and a
        put of another process that finds its directory gone walks again (see ``_write.py``)."""
        dirs = list(parts[:-1])
        if not dirs:
            return
        fds = [self.open_root(write=True)]
        try:
            for seg in dirs[:-1]:
                try:
                    fds.append(os.open(seg, DIR_NOFOLLOW, dir_fd=fds[-1]))
                except OSError:
                    return
            for i in range(len(dirs) - 1, -1, -1):
                path = tuple(dirs[: i + 1])
                with self._pin_cond:
                    if self._pins[path] > 0 or path in self._pruning:
                        return  # a put in flight needs it (or another prune is at it)
                    self._pruning.add(path)
                try:
                    os.rmdir(dirs[i], dir_fd=fds[i])
                except FileNotFoundError:
                    continue  # gone already: its parent may be empty now
                except OSError:
                    return  # not empty (the common case), or not ours to remove
                finally:
                    with self._pin_cond:
                        self._pruning.discard(path)
                        self._pin_cond.notify_all()
                if self.fsync:
                    os.fsync(fds[i])
        finally:
            for fd in fds:
                close_quietly(fd)
