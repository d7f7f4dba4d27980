"""A passthrough FUSE file system whose writes can be made to hang: a real blocked system call.

``python fuse_stall.py BACKING MOUNTPOINT CONTROL`` mirrors BACKING at MOUNTPOINT (foreground,
multithreaded). While the file ``CONTROL/stall`` exists, every ``write`` hangs in the kernel (the
caller's thread sits in ``write(2)``); the first hung write creates ``CONTROL/stalled``. Removing
``CONTROL/stall`` lets the writes through. No user xattrs and no ``O_TMPFILE`` (libfuse 2 has
neither), like many network and FUSE file systems.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from typing import Any

from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]


class StallingPassthrough(Operations):  # type: ignore[misc]
    def __init__(self, backing: str, control: str) -> None:
        self.backing = backing
        self.stall = os.path.join(control, "stall")
        self.stalled = os.path.join(control, "stalled")

    def _p(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def access(self, path: str, mode: int) -> None:
        if not os.access(self._p(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._p(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._p(path), uid, gid)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.lstat(self._p(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size")
        out = {key: getattr(st, key) for key in keys}
        out["st_uid"] = st.st_uid
        out["st_ino"] = st.st_ino
        return out

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._p(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._p(path))

    def mknod(self, path: str, mode: int, dev: int) -> None:
        os.mknod(self._p(path), mode, dev)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._p(path), mode)

    def statfs(self, path: str) -> dict[str, Any]:
        sv = os.statvfs(self._p(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files")
        out = {key: getattr(sv, key) for key in keys}
        out.update(f_flag=sv.f_flag, f_frsize=sv.f_frsize, f_namemax=sv.f_namemax)
        return out

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def symlink(self, name: str, target: str) -> None:
        os.symlink(target, self._p(name))

    def rename(self, old: str, new: str) -> None:
        os.rename(self._p(old), self._p(new))

    def link(self, target: str, name: str) -> None:
        os.link(self._p(name), self._p(target))

    def utimens(self, path: str, times: tuple[float, float] | None = None) -> None:
        os.utime(self._p(path), times)

    def open(self, path: str, flags: int) -> int:
        return os.open(self._p(path), flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC))

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return os.open(self._p(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path: str, length: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, length, offset)

    def write(self, path: str, buf: bytes, offset: int, fh: int) -> int:
        if os.path.exists(self.stall):
            open(self.stalled, "w").close()
            while os.path.exists(self.stall):
                time.sleep(0.01)
        return os.pwrite(fh, buf, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        with open(self._p(path), "r+") as f:
            f.truncate(length)

    def flush(self, path: str, fh: int) -> None:
        return None

    def release(self, path: str, fh: int) -> None:
        os.close(fh)

    def fsync(self, path: str, fdatasync: int, fh: int) -> None:
        os.fsync(fh)


def main() -> None:
    backing, mountpoint, control = sys.argv[1:4]
    FUSE(
        StallingPassthrough(backing, control),
        mountpoint,
        foreground=True,
        nothreads=False,
        use_ino=True,
        default_permissions=True,
    )


if __name__ == "__main__":
    main()
