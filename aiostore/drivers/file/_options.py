"""The ``file`` driver's options."""

from __future__ import annotations

import dataclasses

from ...errors import BadStoreConfiguration

__all__ = ["FileOptions"]


@dataclasses.dataclass(frozen=True, slots=True)
class FileOptions:
    """Options of the ``file`` driver (``read_only`` and the other common options are the
    manager's)."""

    #: The directory holding the objects; created at start-up when missing.
    root: str
    #: Bytes per read and per write thread hop; objects up to this size take a single hop.
    chunk_size: int = 1 << 20
    #: WRITE_ACCESS is revoked (as *full*: deletes still pass) while the file system has less
    #: free space than this.
    min_free_bytes: int = 0
    #: ... or less than this percentage of its size free.
    min_free_percent: float = 0.0
    #: fsync every object and its directory before a put or write returns.
    fsync: bool = True
    #: Permission bits of new objects (applied exactly, whatever the umask).
    file_mode: int = 0o644

    def __post_init__(self) -> None:
        if not self.root or "\0" in self.root:
            raise BadStoreConfiguration("must be a non-empty path", option="root")
        if not 4096 <= self.chunk_size <= 1 << 30:
            raise BadStoreConfiguration(
                f"must be between 4096 and 1 GiB, not {self.chunk_size!r}", option="chunk_size"
            )
        if self.min_free_bytes < 0:
            raise BadStoreConfiguration(
                f"must be ≥ 0, not {self.min_free_bytes!r}", option="min_free_bytes"
            )
        if not 0.0 <= self.min_free_percent <= 100.0:
            raise BadStoreConfiguration(
                f"must be between 0 and 100, not {self.min_free_percent!r}",
                option="min_free_percent",
            )
        if not 0 <= self.file_mode <= 0o7777:
            raise BadStoreConfiguration(
                f"must be permission bits (0 to 0o7777), not {self.file_mode!r}",
                option="file_mode",
            )
