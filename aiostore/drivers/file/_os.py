"""Low-level file-system helpers shared by the driver's modules (all blocking: worker threads).

Every path handed to the kernel is one name relative to an open directory fd (``dir_fd=``); see
``_tree.py`` for how those directories are reached without following symbolic links.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import stat as st_
from typing import Any, Final

from ...errors import Duplicate, StoreError

log = logging.getLogger("aiostore.drivers.file")

DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
DIR_NOFOLLOW: Final = DIR | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO somebody left in the root must not hang a worker thread.
READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
PATCH: Final = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: An unnamed file in a directory: nothing to clean up if the writer dies (Linux ≥ 3.11).
HAS_TMPFILE: Final = hasattr(os, "O_TMPFILE")
TMPFILE: Final = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | os.O_CLOEXEC
#: O_TMPFILE refused: the file system cannot do it (EISDIR: a kernel that does not know the flag).
NO_TMPFILE: Final = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL})
NO_LINK: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})
NO_XATTR: Final = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
MAX_IO: Final = 0x7FFFF000  # Linux caps one read/write at this many bytes
_RENAME_NOREPLACE: Final = 1


def write_all(fd: int, chunks: list[bytes]) -> None:
    """Write every chunk (one ``writev`` in the common case)."""
    if not chunks:
        return
    data: bytes | memoryview
    if len(chunks) == 1:
        data = chunks[0]
    elif len(chunks) <= 64:  # well under IOV_MAX
        n = os.writev(fd, chunks)
        if n == sum(len(c) for c in chunks):
            return
        data = memoryview(b"".join(chunks))[n:]
    else:
        data = b"".join(chunks)
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:MAX_IO])
        view = view[n:]


_sync_file_range: Any = None
_SYNC_FILE_RANGE_WRITE: Final = 2
#: SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
_SYNC_FILE_RANGE_WAIT: Final = 1 | 2 | 4


def _sync_range(fd: int, offset: int, length: int, flags: int) -> None:
    """``sync_file_range`` (loaded once from libc); a no-op where it does not exist."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        try:
            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
        except (AttributeError, OSError):  # pragma: no cover - not glibc / not Linux
            pass
        else:
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _sync_file_range = fn
    if _sync_file_range:
        _sync_file_range(fd, offset, length, flags)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing ``length`` bytes at ``offset`` back to the disk without waiting
    (``sync_file_range(SYNC_FILE_RANGE_WRITE)``): a large put's final ``fsync`` then finds
    little left to flush, and its dirty pages never pile up. Best effort: errors are ignored
    (the ``fsync`` reports the truth), and where the call does not exist it is a no-op."""
    _sync_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def drop_written(fd: int, offset: int, length: int) -> None:
    """Wait until ``length`` bytes at ``offset`` are on the disk (their write-back started
    long ago: usually no wait), then drop them from the page cache. Best effort: errors are
    ignored (the ``fsync`` reports the truth); without ``sync_file_range`` only the clean pages
    go (the kernel never drops a dirty one)."""
    _sync_range(fd, offset, length, _SYNC_FILE_RANGE_WAIT)
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError):  # pragma: no cover - no fadvise here
        pass


def pread_all(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, min(size, MAX_IO), offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, min(size - got, MAX_IO), offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def range_size(total: int, offset: int, length: int | None) -> int:
    avail = max(0, total - offset)
    return avail if length is None else min(length, avail)


def lstat_or_none(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_link(dfd: int, name: str) -> bool:
    try:
        return st_.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def unlink_quietly(name: str, dfd: int) -> bool:
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("could not remove %s: %s", name, exc)
        return False
    return True


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def lock_nowait(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting: False when another open file
    description (a live writer, in this process or another) holds it. A process's locks vanish
    with it, which is how a dead writer's temporary file is told from a live one's."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return False  # no locks here: never take the file for a dead writer's
        raise
    return True


_renameat2: Any = None


def rename_noreplace(
    src_dfd: int, src: str, dst_dfd: int, dst: str, link_error: OSError, key: str
) -> None:
    """``renameat2(..., RENAME_NOREPLACE)``: fails with EEXIST (→ Duplicate) atomically."""
    global _renameat2
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (AttributeError, OSError):
            raise link_error from None
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2(src_dfd, os.fsencode(src), dst_dfd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise Duplicate("an object with this key exists", key=key)
    if code in (errno.EINVAL, errno.ENOSYS):
        raise StoreError(
            "this file system supports neither hard links nor RENAME_NOREPLACE: create-only"
            " puts cannot be atomic here (use overwrite=True)",
            key=key,
        ) from link_error
    raise OSError(code, os.strerror(code), dst)


def strerror(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
