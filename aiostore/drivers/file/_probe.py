"""The probe: can the root be read, and written — and if not, is it only full?

READ_ACCESS and READ_RANDOM: the root can be listed. WRITE_ACCESS (never checked by writing on a
store configured read-only): the mount is not read-only; free space is above ``min_free_bytes``
and ``min_free_percent``; a small probe file can be written and read back. Lack of space (below
a minimum, or ENOSPC/EDQUOT while writing) is ``Verdict.full``, so the store still lets deletes
through; anything else is ``Verdict.fail``.

What it costs (issue 20 asks ≤ 250 µs per probe): the probe file is an unnamed ``O_TMPFILE``
where the file system has it — no directory entry is made or removed, so the directory, its
mtime and the journal are untouched — and it is fsynced only on every :data:`FSYNC_EVERY`-th
probe and on any probe after a failure. ``write`` already fails at once for ENOSPC, EROFS and
quota; a device that only fails at flush time shows within ``FSYNC_EVERY`` probes (and at once
through any put, whose own fsync failing revokes WRITE_ACCESS passively). The probe then also
reclaims dead writers' temporary files (one ``scandir`` of ``.aiostore-tmp``; ``_sweep.py``).

The probe's system calls cost ~30 µs of CPU, a thread hop more than twice that: probes that do
not fsync run on the event loop's lane (``run_in_lane``), so the probes of many stores due at
once share one hop; those that fsync (milliseconds of waiting) take a thread of their own.

A probe thread stuck in a hung file system is abandoned by its caller (``run_blocking``) but
still counted: until it returns, later probes fail at once instead of piling up more threads.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from typing import Final

from ...sdk import Capability, ProbeResult, Verdict
from ._names import PROBE
from ._os import (
    DIR,
    HAS_TMPFILE,
    NO_TMPFILE,
    TMPFILE,
    close_quietly,
    human,
    log,
    strerror,
    unlink_quietly,
)
from ._sweep import reclaim
from ._tree import Tree

__all__ = ["CAPABILITIES", "Claim", "Prober"]

CAPABILITIES: Final = (Capability.READ_ACCESS, Capability.READ_RANDOM, Capability.WRITE_ACCESS)
#: Every n-th probe (and every probe after a failure) fsyncs its probe file.
FSYNC_EVERY: Final = 16
_DATA: Final = b"aiostore probe\n"
_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_RDWR_TMPFILE: Final = (TMPFILE & ~os.O_WRONLY) | os.O_RDWR
_NAMED: Final = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Claim:
    """One probe call (guarded by ``Prober._lock``)."""

    __slots__ = ("dropped", "started", "sync")

    def __init__(self, sync: bool) -> None:
        self.started = False
        self.dropped = False
        #: Whether this probe fsyncs its probe file (decided up front: such a probe is slow).
        self.sync = sync


class Prober:
    """The file store's probe (``run`` blocks: a worker thread)."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._lock = threading.Lock()
        self._claim: Claim | None = None
        self._count = 0
        self._healthy = False
        #: Whether the root's file system has O_TMPFILE (None: not known yet).
        self._tmpfile: bool | None = None

    def claim(self) -> Claim | None:
        """The right to probe now; None while a previous probe's thread has not returned."""
        with self._lock:
            if self._claim is not None:
                return None
            self._count += 1
            self._claim = Claim(not self._healthy or self._count % FSYNC_EVERY == 0)
            return self._claim

    @staticmethod
    def busy() -> ProbeResult:
        reason = "the previous probe has not finished (hung file system?)"
        return {cap: Verdict.fail(reason) for cap in CAPABILITIES}

    def drop(self, claim: Claim) -> None:
        """The caller was cancelled: a probe whose thread has not started never runs."""
        with self._lock:
            if not claim.started and self._claim is claim:
                claim.dropped = True
                self._claim = None

    def run(self, claim: Claim) -> ProbeResult:
        """Probe (worker thread); the claim ends when the thread returns."""
        with self._lock:
            if claim.dropped:
                return {}
            claim.started = True
        try:
            result = self._probe(claim.sync)
        finally:
            with self._lock:
                self._claim = None
        self._healthy = all(v.healthy for v in result.values())
        return result

    def _probe(self, sync: bool) -> ProbeResult:
        t = self.tree
        root = t.root
        read = Verdict.ok()
        if t.root_pending and not os.path.lexists(root):
            try:
                os.makedirs(root, exist_ok=True)  # what start() could not do
            except OSError as exc:
                read = Verdict.fail(f"root missing: {root} (cannot create it: {strerror(exc)})")
            else:
                t.root_pending = False
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
                read = Verdict.fail(f"root not readable: {root}: {strerror(exc)}")
        verdicts = {Capability.READ_ACCESS: read, Capability.READ_RANDOM: read}
        if t.probe_writes:  # never write to a store configured read-only
            verdicts[Capability.WRITE_ACCESS] = self._probe_write(sync) if read.healthy else read
        return verdicts

    def _probe_write(self, sync: bool) -> Verdict:
        t = self.tree
        o = t.options
        try:
            vfs = os.statvfs(t.root)
        except OSError as exc:
            return Verdict.fail(f"statvfs failed: {strerror(exc)}")
        if vfs.f_flag & os.ST_RDONLY:
            return Verdict.fail("read-only file system")
        free = vfs.f_bavail * vfs.f_frsize
        total = vfs.f_blocks * vfs.f_frsize
        if total > 0:  # ramfs and some network file systems report no sizes
            if free < o.min_free_bytes:
                return Verdict.full(
                    f"disk full: {human(free)} free < min_free_bytes {human(o.min_free_bytes)}"
                )
            if o.min_free_percent and free * 100.0 / total < o.min_free_percent:
                return Verdict.full(
                    f"disk full: {free * 100.0 / total:.1f}% free"
                    f" < min_free_percent {o.min_free_percent:g}%"
                )
        error = self._write_probe_file(sync)
        if error is not None:
            self._tmpfile = None  # learn again: the root may be another file system by now
            return error
        if t.tmp_dir_seen or sync:  # a neighbour may have made the directory meanwhile
            try:
                reclaim(t)
            except OSError as exc:  # pragma: no cover - reclaim swallows per-file errors
                log.info("file store root %s: reclaiming temporary files failed: %s", t.root, exc)
        return Verdict.ok(f"{human(free)} free" if total > 0 else "")

    def _write_probe_file(self, sync: bool) -> Verdict | None:
        root = self.tree.root
        dfd = name = None
        try:
            fd = -1
            if HAS_TMPFILE and self._tmpfile is not False:
                try:
                    fd = os.open(root, _RDWR_TMPFILE, 0o600)  # one call: no directory fd
                    self._tmpfile = True
                except OSError as exc:
                    if exc.errno not in NO_TMPFILE:
                        raise
                    self._tmpfile = False
            if fd < 0:
                dfd = os.open(root, DIR)
                name = f"{PROBE}{secrets.token_hex(6)}"
                fd = os.open(name, _NAMED, 0o600, dir_fd=dfd)
        except OSError as exc:
            if dfd is not None:
                os.close(dfd)
            return _write_failed(exc)
        error = None
        try:
            os.pwrite(fd, _DATA, 0)
            if sync:
                os.fsync(fd)
            if os.pread(fd, len(_DATA) + 1, 0) != _DATA:
                error = Verdict.fail("probe file read back differently (file system broken?)")
        except OSError as exc:
            error = _write_failed(exc)
        finally:
            close_quietly(fd)
            if dfd is not None:
                if name is not None and not unlink_quietly(name, dfd) and error is None:
                    error = Verdict.fail("cannot remove the probe file")
                os.close(dfd)
        return error


def _write_failed(exc: OSError) -> Verdict:
    if exc.errno in _FULL:
        return Verdict.full(f"disk full: probe write failed: {strerror(exc)}")
    return Verdict.fail(f"probe write failed: {strerror(exc)}")
