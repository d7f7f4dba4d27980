"""Reclaiming what dead writers left: temporary files, probe files, orphan sidecars.

Where ``O_TMPFILE`` works, a writer that dies leaves nothing. Elsewhere its temporary file is a
named file in ``<root>/.aiostore-tmp/`` on which it held an ``flock`` for its whole life; locks
die with their process, so an *unlocked* temporary file whose last change is a few seconds old
belongs to nobody (the grace covers the instant between creating a file and locking it).
:func:`reclaim` removes those: one ``scandir`` of that directory, run with every probe, so a
running store cleans up after a crashed neighbour within seconds. :func:`sweep` walks the whole
tree at start-up for the rarer leftovers next to objects (an overwrite's name for an instant, a
mount inside the root, the first release's temporary files) and for orphan sidecars older than
an hour.
"""

from __future__ import annotations

import os
import stat as st_
import time
from typing import Final

from ._names import PROBE, SIDE, TMP, TMP_DIR, is_internal
from ._os import DIR, DIR_NOFOLLOW, READ, close_quietly, lock_nowait, log, unlink_quietly
from ._tree import Tree

__all__ = ["reclaim", "sweep"]

#: An unlocked temporary file changed more recently than this may be a writer's that has not
#: taken its lock yet.
GRACE: Final = 2.0
#: Orphan sidecars older than this are removed at start-up.
STALE_AFTER: Final = 3600.0


def reclaim(tree: Tree) -> int:
    """Remove dead writers' files from the temporary directory. Returns how many."""
    try:
        dfd = os.open(os.path.join(tree.root, TMP_DIR), DIR_NOFOLLOW)
    except OSError:
        return 0  # none yet (or no root): nothing to reclaim
    try:
        with os.scandir(dfd) as it:
            names = [e.name for e in it]
        return sum(_remove_if_dead(dfd, name, time.time() - GRACE) for name in names)
    finally:
        os.close(dfd)


def _remove_if_dead(dfd: int, name: str, older_than: float) -> bool:
    """Remove ``name`` if it is a regular file nobody holds locked, last changed before
    ``older_than``."""
    try:
        fd = os.open(name, READ, dir_fd=dfd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not st_.S_ISREG(st.st_mode) or st.st_mtime >= older_than:
            return False
        if not lock_nowait(fd):
            return False  # a live writer's
        now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False  # replaced meanwhile
        os.unlink(name, dir_fd=dfd)
        return True
    except OSError:
        return False
    finally:
        close_quietly(fd)


def sweep(tree: Tree) -> int:
    """The start-up sweep of the whole tree. Returns how many files it removed."""
    dfd = os.open(tree.root, DIR)
    try:
        removed = _sweep(tree, dfd, time.time() - GRACE, time.time() - STALE_AFTER)
    finally:
        os.close(dfd)
    if removed:
        log.info("file store root %s: removed %d file(s) dead writers left", tree.root, removed)
    return removed


def _sweep(tree: Tree, dfd: int, dead_before: float, stale_before: float) -> int:
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
            if is_internal(e.name):
                internal.append(e.name)
    for name in internal:
        if SIDE in name and TMP not in name:
            ino = name.rpartition(SIDE)[2]
            if ino.isdigit() and int(ino) in inodes:
                continue  # the sidecar of a live object
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            if st.st_mtime < stale_before and unlink_quietly(name, dfd):
                removed += 1
        elif (TMP in name or name.startswith(PROBE)) and _remove_if_dead(dfd, name, dead_before):
            removed += 1
    for name in dirs:
        try:
            sub = os.open(name, DIR_NOFOLLOW, dir_fd=dfd)
        except OSError:
            continue
        try:
            if name == TMP_DIR:
                tree.tmp_dir_seen = True
                removed += sum(_remove_if_dead(sub, n, dead_before) for n in os.listdir(sub))
            else:
                removed += _sweep(tree, sub, dead_before, stale_before)
        finally:
            os.close(sub)
    return removed
