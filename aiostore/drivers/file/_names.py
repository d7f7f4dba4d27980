"""How keys become file names, and the names no key can reach.

The driver's own files (temporary files, metadata sidecars, probe files) have names that start
with ``.`` and contain ``.aiostore-``. A key segment of that shape is an ordinary key (the memory
store accepts it, so every store must): it is stored under the name ``\\`` + segment. Key segments
never contain a backslash, so such a name is never a plain key's, and the mapping is one-to-one:

    key segment              file name
    ``photo.jpg``            ``photo.jpg``
    ``.x.aiostore-meta-1``   ``\\.x.aiostore-meta-1``
    (internal)               ``.x.aiostore-meta-1``, ``.aiostore-tmp/…``, ``.aiostore-probe-…``
"""

from __future__ import annotations

import os
import secrets
from typing import Final

from ...errors import InvalidKey

MARK: Final = ".aiostore-"
ESCAPE: Final = "\\"
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
    """The key segment stored under ``name``; None for internal and foreign names."""
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
        return [encode(seg) for seg in parts]
    return parts


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
