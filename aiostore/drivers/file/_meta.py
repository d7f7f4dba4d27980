"""Metadata: JSON in an extended attribute of the object's own inode, or an inode-keyed sidecar.

With user xattrs (ext4, xfs, btrfs, tmpfs ≥ 6.6) the JSON lives in ``user.aiostore.meta`` of the
file itself, set on the temporary file before the commit: it is part of the inode, so it appears,
changes and disappears atomically with the object, and a reader reads it from the fd it opened —
the metadata of exactly the version it reads.

Without user xattrs (NFSv3, ramfs, many FUSE file systems) it goes into a sidecar file
``.<name>.aiostore-meta-<inode>`` next to the object. A header inside the object is not an option
(reads return the raw bytes, ranges included), and a sidecar named after the *key* cannot change
together with the object. Keying it by the object's *inode number* can: the sidecar is written
(temp + fsync + rename) before the object is committed, so when the commit publishes the inode
its metadata already exists; a reader takes the inode number from the fd it opened, so it only
ever sees the metadata of exactly that file; an overwrite publishes a new inode with its own
sidecar (the old one is removed afterwards, and a reader that raced with that opens again); a
delete unlinks the object first, which makes its sidecar an invisible orphan, then the sidecar.
Every put there writes a sidecar, even for empty metadata, so an orphan left by a crash is never
inherited by a later object that reuses its inode number. Limits: a file copied into the root by
other means may inherit an orphan's metadata if it gets the orphan's inode number, and file
systems without stable inode numbers lose metadata across remounts.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from typing import Any, Final

from ...errors import InvalidMetadata
from ...sdk import Metadata
from ._names import side_name
from ._os import NO_XATTR, READ, log
from ._tree import Tree

#: The extended attribute holding an object's metadata (JSON).
XATTR: Final = "user.aiostore.meta"
_SIDECAR_MAX: Final = 1 << 16


def encode(metadata: Metadata) -> bytes | None:
    if not metadata:
        return None
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), default=_default)
        return text.encode()
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidMetadata(f"metadata cannot be stored: {exc}") from exc


def _default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON")


def decode(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("ignoring metadata that is not JSON: %r", raw[:64])
        return {}
    return value if isinstance(value, dict) else {}


def read(tree: Tree, fd: int, st: os.stat_result, dfd: int, name: str) -> dict[str, Any] | None:
    """The metadata of the open file ``fd``; None when a racing overwrite removed its sidecar
    after we opened it (open again)."""
    try:
        raw = os.getxattr(fd, XATTR)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return {}
        if exc.errno not in NO_XATTR:
            raise
        tree.sidecar_devs.add(st.st_dev)
        try:
            raw = _read_small(side_name(name, st.st_ino), dfd)
        except FileNotFoundError:
            # Either a file nobody put through us, or it was replaced and its sidecar removed
            # after we opened it: open again when the name now holds another inode.
            try:
                now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return {}
            return {} if now.st_ino == st.st_ino else None
    return decode(raw)


def _read_small(name: str, dfd: int) -> bytes:
    fd = os.open(name, READ, dir_fd=dfd)
    try:
        return os.read(fd, _SIDECAR_MAX)
    finally:
        os.close(fd)


def attach(tree: Tree, fd: int, meta: bytes | None) -> bool:
    """Set ``meta`` on the new file ``fd``; False when this file system needs a sidecar."""
    if tree.sidecar_devs and os.fstat(fd).st_dev in tree.sidecar_devs:
        return False
    if meta is None:
        return True
    try:
        os.setxattr(fd, XATTR, meta)
    except OSError as exc:
        if exc.errno not in NO_XATTR:
            raise
        tree.sidecar_devs.add(os.fstat(fd).st_dev)
        return False
    return True
