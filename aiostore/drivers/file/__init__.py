"""Filesystem driver: objects are regular files under a root directory.

One concern per module:

- ``_options.py`` — :class:`FileOptions`.
- ``_driver.py`` — :class:`FileDriver`: configuration, start-up (root, xattr detection, sweep).
- ``_session.py`` — :class:`FileSession`: the event-loop side; one thread hop per operation
  (``run_blocking`` with a fence for irreversible steps), one error table (``_errors.py``).
- ``_names.py`` — keys ↔ file names; the driver's own names are unreachable from keys.
- ``_tree.py`` — the symlink-safe walk from the root; removal of emptied directories.
- ``_write.py`` — atomic puts (``O_TMPFILE`` + ``linkat``, or locked named temporary files),
  patches, deletes.
- ``_meta.py`` — metadata in an xattr of the object's inode, or an inode-keyed sidecar.
- ``_reader.py`` — reads that describe exactly the version they read; the read-ahead reader.
- ``_listing.py`` — listings in key order.
- ``_sweep.py`` — reclaiming dead writers' files (at start-up, and with every probe).
- ``_probe.py`` — the probe (free space as ``Verdict.full``, a cheap write check).

Layout on disk
    ``key = "a/b/c"`` is the file ``<root>/a/b/c``. Names starting with ``.`` and containing
    ``.aiostore-`` are the driver's own (``.aiostore-tmp/`` holds named temporary files where the
    file system lacks ``O_TMPFILE``; ``.<name>.aiostore-meta-<inode>`` sidecars; probe files); a
    key segment of that shape is stored as ``\\`` + segment, and one longer than a file name may
    be as a chain of ``\\+<200 bytes>`` directories, so every valid key is accepted and none
    reaches an internal file (``_names.py``).

One read, one version
    A reader's ``info`` (size, modification time, metadata, ETag ``<inode>-<size>-<mtime ns>``)
    comes from the fd it reads: ``fstat`` and ``fgetxattr`` on that fd, or the sidecar named by
    that fd's inode. A put publishes a new inode, so an open file never changes version; metadata
    is consistent with it because it lives in (or is keyed by) that inode — see ``_meta.py``.

Crashes
    Where ``O_TMPFILE`` works, an unfinished put has no name: a writer killed mid-put leaves
    nothing. Elsewhere a writer holds an ``flock`` on its named temporary file, and a running
    store reclaims unlocked ones with every probe (``_sweep.py``).

Health
    ``start()`` creates the root when it is missing. When it cannot (a read-only parent, a mount
    that is not there yet) the store still starts: the start-up probe revokes what the root cannot
    do, and a later probe creates the root and restores the capabilities once it can.
"""

from __future__ import annotations

from ._driver import FileDriver
from ._meta import XATTR
from ._options import FileOptions
from ._reader import FileReader
from ._session import FileSession

#: The driver's options (``FileDriver.Options``).
Options = FileOptions

__all__ = ["XATTR", "FileDriver", "FileOptions", "FileReader", "FileSession", "Options"]
