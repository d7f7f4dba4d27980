"""Listings: every object under a prefix, in key order, never following symbolic links.

Internal files (``_names.py``) are skipped, escaped names are decoded back into their keys, and
files placed by hand under names no key can have are ignored.
"""

from __future__ import annotations

import errno
import os
import stat as st_
from collections.abc import Generator, Iterator

from ...errors import InvalidKey
from ...sdk import ObjectInfo, validate_key
from ._names import CONTINUED, decode, key_parts
from ._os import DIR_NOFOLLOW, READ
from ._reader import info_of
from ._tree import SymlinkMet, Tree

__all__ = ["take", "walk"]

_FILE, _DIR, _CHAIN = 0, 1, 2


def walk(tree: Tree, prefix: str) -> Generator[ObjectInfo, None, None]:
    """Every object whose key starts with ``prefix``, in key order (a generator: it holds
    directory fds while suspended; close it to release them)."""
    head, _, start = prefix.rpartition("/")
    names = key_parts(head) if head else []
    try:
        fd = tree.walk([*names, ""], False, False)
    except (FileNotFoundError, NotADirectoryError, SymlinkMet):
        return
    try:
        yield from _scan(tree, fd, f"{head}/" if head else "", start, names)
    finally:
        os.close(fd)


def _scan(tree: Tree, dfd: int, base: str, start: str, path: list[str]) -> Iterator[ObjectInfo]:
    """The objects under the directory ``dfd``: its names are ``path``, its keys start with
    ``base`` (mid-segment inside a long segment's chain) followed by ``start``."""
    entries: list[tuple[str, str, str, int]] = []
    with os.scandir(dfd) as it:
        for e in it:
            seg = decode(e.name)
            if seg is None:
                continue
            chained = e.name.startswith(CONTINUED)
            if not (seg.startswith(start) or (chained and start.startswith(seg))):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    # Sort "a/..." where the key "a/x" sorts: '/' orders before most text.
                    entries.append(
                        (seg if chained else seg + "/", seg, e.name, _CHAIN if chained else _DIR)
                    )
                elif e.is_file(follow_symlinks=False) and not chained:
                    entries.append((seg, seg, e.name, _FILE))
            except OSError:
                continue
    entries.sort()
    for _, seg, name, kind in entries:
        if kind != _FILE:
            try:
                sub = os.open(name, DIR_NOFOLLOW, dir_fd=dfd)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed or replaced meanwhile
            try:
                if kind == _DIR:
                    yield from _scan(tree, sub, base + seg + "/", "", [*path, name])
                else:  # the rest of a long segment is inside
                    rest = start[len(seg) :] if start.startswith(seg) else ""
                    yield from _scan(tree, sub, base + seg, rest, [*path, name])
            finally:
                os.close(sub)
            continue
        key = base + seg
        if not _valid_key(key):
            continue  # a file placed by hand under a name no key can have
        if any(n.startswith(CONTINUED) for n in path) and key_parts(key) != [*path, name]:
            continue  # not how that key is stored: placed by hand
        info = _entry(tree, dfd, name, key)
        if info is not None:
            yield info


def _entry(tree: Tree, dfd: int, name: str, key: str) -> ObjectInfo | None:
    for _ in range(3):
        try:
            fd = os.open(name, READ, dir_fd=dfd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # replaced by a link meanwhile: listings never follow them
            raise
        try:
            if not st_.S_ISREG(os.fstat(fd).st_mode):
                return None
            info = info_of(tree, key, fd, dfd, name)
        finally:
            os.close(fd)
        if info is not None:
            return info
    return None


def _valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def take(gen: Iterator[ObjectInfo], n: int) -> list[ObjectInfo]:
    out = []
    for item in gen:
        out.append(item)
        if len(out) >= n:
            break
    return out
