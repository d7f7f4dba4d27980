"""A large put's page cache: with fsync on, the writer drops what the disk already has, a
bounded distance behind its writes, so a put of any size holds only a few MiB of page cache
(and its writes reuse the same page frames); the data stays whole wherever pages cannot go.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import mmap
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiostore.drivers.file import _write as file_write

from .conftest import file_manager

MiB = 1024 * 1024
PAGE = mmap.PAGESIZE

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident(path: Path) -> list[bool]:
    """Which pages of ``path`` are in the page cache (``mincore`` on a read-only mapping)."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(pages)
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
            return [bool(b & 1) for b in vec.raw[:pages]]
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def drops_clean_pages(folder: Path) -> bool:
    """Whether this file system lets a written, fsynced file's pages go (tmpfs and ramfs
    never do: their pages are the data)."""
    probe = folder / "probe"
    with open(probe, "wb") as f:
        f.write(b"x" * (4 * PAGE))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    try:
        return not any(resident(probe))
    finally:
        probe.unlink()


def blob(size: int) -> bytes:
    return hashlib.shake_256(b"page cache").digest(size)


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def object_path(root: Path, key: str) -> Path:
    return root / key


async def test_a_large_put_keeps_only_its_tail_in_the_page_cache(tmp_path: Path) -> None:
    """48 MiB put with fsync: everything up to _KEEP + _WRITEBACK before the end has left the
    page cache when the put returns; the object reads back whole."""
    root = tmp_path / "root"
    root.mkdir()
    if not drops_clean_pages(tmp_path):
        pytest.skip("this file system keeps every page (tmpfs, ramfs)")
    size = 48 * MiB
    data = blob(size)
    async with file_manager(root, fsync=True, probe={"interval": 3600}) as m:
        await m["f"].put("big", chunks_of(data, MiB), size=size)
        pages = resident(object_path(root, "big"))
        kept = file_write._KEEP + 2 * file_write._WRITEBACK  # the tail may still be there
        head = pages[: (size - kept) // PAGE]
        assert head and sum(head) <= len(head) // 100, f"{sum(head)} of {len(head)} pages cached"
        assert await m["f"].read("big") == data


async def test_without_fsync_a_large_put_leaves_the_page_cache_alone(tmp_path: Path) -> None:
    """No fsync: no write-back is started, so nothing is dropped either (the data is dirty)."""
    root = tmp_path / "root"
    root.mkdir()
    size = 40 * MiB
    data = blob(size)
    async with file_manager(root, fsync=False, probe={"interval": 3600}) as m:
        await m["f"].put("big", chunks_of(data, MiB), size=size)
        pages = resident(object_path(root, "big"))
        assert sum(pages) >= len(pages) * 9 // 10  # the kernel may have flushed some: not ours
        assert await m["f"].read("big") == data


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
async def test_a_large_put_on_tmpfs_reads_back_whole() -> None:
    """On tmpfs the pages are the data: dropping must never lose any of it."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        size = 40 * MiB
        data = blob(size)
        async with file_manager(root, fsync=True, probe={"interval": 3600}) as m:
            await m["f"].put("big", chunks_of(data, MiB), size=size)
            assert await m["f"].read("big") == data
            assert all(resident(object_path(root, "big")))
