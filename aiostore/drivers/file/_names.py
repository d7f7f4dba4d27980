"""How keys become file names, and the names no key can reach.

The driver's own files (temporary files, metadata sidecars, probe files) have names that start
with ``.`` and contain ``.aiostore-``. A key segment of that shape is an ordinary key (the memory
store accepts it, so every store must): it is stored under the name ``\\`` + segment. A segment
too long for one file name (NAME_MAX, 255 bytes) is stored as a chain of directories named
``\\+`` + the next 200 bytes of it, ending in the name of its last bytes. Key segments never
contain a backslash, so none of these names is a plain key's, and the mapping is one-to-one:

    key segment              file names
    ``photo.jpg``            ``photo.jpg``
    ``.x.aiostore-meta-1``   ``\\.x.aiostore-meta-1``
    ``a`` × 300              ``\\+`` + ``a`` × 200, then ``a`` × 100 inside it
    (internal)               ``.x.aiostore-meta-1``, ``.aiostore-tmp/…``, ``.aiostore-probe-…``

Listings decode names back into keys and skip any name that is not the canonical encoding of
the key it would decode to (files placed by hand).
"""

from __future__ import annotations

import os
import secrets
from typing import Final

from ...errors import InvalidKey

MARK: Final = ".aiostore-"
ESCAPE: Final = "\\"
#: A directory holding the rest of a segment too long for one name.
CONTINUED: Final = "\\+"
NAME_MAX: Final = 255
#: Bytes of a long segment per directory of its chain.
_PIECE: Final = 200
TMP: Final = ".aiostore-tmp-"
SIDE: Final = ".aiostore-meta-"
PROBE: Final = ".aiostore-probe-"
#: The directory (under the root) holding named temporary files where O_TMPFILE is missing.
TMP_DIR: Final = ".aiostore-tmp"
#: Bytes of an object's name kept in its temporary and sidecar names (NAME_MAX is 255).
_NAME_KEEP: Final = 180


def is_internal(name: str) -> bool:
    """A name of the driver's own files (never a key's)."""
    return name.startswith(".") and MARK in name


def encode(segment: str) -> str:
    """The file name of one key segment."""
    return ESCAPE + segment if is_internal(segment) else segment


def decode(name: str) -> str | None:
    """The key segment stored under ``name`` (for a :data:`CONTINUED` directory: the first bytes
    of the segment, with the rest inside it); None for internal and foreign names."""
    if name.startswith(CONTINUED):
        return name[2:] or None
    if name.startswith(ESCAPE):
        rest = name[1:]
        return rest if is_internal(rest) else None
    return None if is_internal(name) else name


def key_parts(key: str) -> list[str]:
    """The file names along ``key``'s path, after the last line of defence: nothing that could
    leave the root reaches the kernel, even from a session used directly."""
    if not key or key[0] == "/" or key[-1] == "/" or "//" in key or "\0" in key:
        raise InvalidKey("not a relative object name", key=key)
    parts = key.split("/")
    if "." in key:
        for seg in parts:
            if seg in (".", ".."):
                raise InvalidKey(f"the key has a {seg!r} segment", key=key)
        parts = [encode(seg) for seg in parts]
    if len(key) > NAME_MAX // 4 and any(len(part) > NAME_MAX // 4 for part in parts):
        return [name for part in parts for name in _split(part)]
    return parts


def _split(name: str) -> list[str]:
    """``name`` as a chain of names no longer than NAME_MAX bytes."""
    if len(name.encode()) <= NAME_MAX:
        return [name]
    seg = name[1:] if name.startswith(ESCAPE) else name  # the segment itself
    out = []
    while len(seg.encode()) > _PIECE:
        piece = seg.encode()[:_PIECE].decode("utf-8", "ignore")  # whole characters only
        out.append(CONTINUED + piece)
        seg = seg[len(piece) :]
    out.append(encode(seg))
    return out


def short(name: str) -> str:
    if len(name) <= _NAME_KEEP // 4:
        return name
    return name.encode()[:_NAME_KEEP].decode("utf-8", "ignore")


def side_name(name: str, ino: int) -> str:
    """The metadata sidecar of the object ``name`` whose inode is ``ino``."""
    return f".{short(name)}{SIDE}{ino}"


def tmp_name() -> str:
    """A temporary file's name, in :data:`TMP_DIR` (the pid is for people; the writer's
    ``flock`` on it is what tells a live writer's file from a dead one's)."""
    return f"{os.getpid()}-{secrets.token_hex(6)}"


def tmp_name_beside(name: str) -> str:
    """A temporary file's name next to the object ``name`` (internal by its shape)."""
    return f".{short(name)}{TMP}{os.getpid()}-{secrets.token_hex(6)}"
