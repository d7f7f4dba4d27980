"""The ``file`` driver: configuration, start-up, sessions."""

from __future__ import annotations

import os
import secrets
from typing import ClassVar
from urllib.parse import quote

from ...sdk import Capability, Driver, run_blocking
from . import _meta
from ._names import PROBE
from ._options import FileOptions
from ._os import CREATE, DIR, HAS_TMPFILE, NO_TMPFILE, NO_XATTR, TMPFILE, log, unlink_quietly
from ._probe import CAPABILITIES, Prober
from ._session import FileSession
from ._sweep import sweep
from ._tree import Tree

__all__ = ["FileDriver"]


class FileDriver(Driver[FileOptions]):
    """Objects as files under ``root`` (scheme ``file://``). Native RW_RANDOM | DRIVER_REUSABLE.

    Puts are atomic (an unnamed or locked temporary file, fsync, then link or rename), metadata
    lives in an xattr of the file (or an inode-keyed sidecar where xattrs are missing), symbolic
    links never lead outside the root, and all blocking work runs in worker threads that a
    cancelled caller never waits for. See :mod:`aiostore.drivers.file`.
    """

    name: ClassVar[str] = "file"
    schemes: ClassVar[tuple[str, ...]] = ("file",)
    native_capabilities: ClassVar[Capability] = Capability.RW_RANDOM | Capability.DRIVER_REUSABLE
    Options: ClassVar[type[FileOptions]] = FileOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = CAPABILITIES

    def __init__(self, store: str, options: FileOptions) -> None:
        super().__init__(store, options)
        self.root = os.path.abspath(os.path.expanduser(options.root))
        self.chunk_size = options.chunk_size
        self.tree = Tree(self.root, options)
        self.prober = Prober(self.tree)

    def location_prefix(self) -> str:
        return "file://" + quote(self.root.rstrip("/"), safe="/") + "/"

    async def start(self) -> None:
        self.tree.probe_writes = self.probe_writes
        await run_blocking(self._start)

    def _start(self) -> None:
        """Create the root, learn whether user xattrs work, reclaim what dead writers left."""
        tree = self.tree
        try:
            os.makedirs(tree.root, exist_ok=True)
        except OSError as exc:
            tree.root_pending = not os.path.isdir(tree.root)
            log.warning(
                "file store root %s cannot be created now (%s); it stays unavailable until a"
                " probe can create it",
                tree.root,
                exc.strerror or exc,
            )
            return
        if not self.probe_writes:
            return  # configured read-only: never write
        try:
            self._detect_xattrs()
            sweep(tree)
        except OSError as exc:
            log.info("file store root %s: start-up housekeeping skipped: %s", tree.root, exc)

    def _detect_xattrs(self) -> None:
        tree = self.tree
        dfd = os.open(tree.root, DIR)
        name = None
        try:
            fd = -1
            if HAS_TMPFILE:
                try:
                    fd = os.open(".", TMPFILE, 0o600, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno not in NO_TMPFILE:
                        raise
                    tree.named_tmp_devs.add(os.fstat(dfd).st_dev)
            if fd < 0:
                name = f"{PROBE}{secrets.token_hex(6)}"
                fd = os.open(name, CREATE, 0o600, dir_fd=dfd)
            try:
                os.setxattr(fd, _meta.XATTR, b"{}")
            except OSError as exc:
                if exc.errno not in NO_XATTR:
                    raise
                tree.sidecar_devs.add(os.fstat(fd).st_dev)
                log.info("file store root %s: no user xattrs; metadata goes to sidecars", tree.root)
            finally:
                os.close(fd)
        finally:
            if name is not None:
                unlink_quietly(name, dfd)
            os.close(dfd)

    async def open_session(self) -> FileSession:
        return FileSession(self)
