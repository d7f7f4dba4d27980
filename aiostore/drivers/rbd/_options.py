"""Options of the ``rbd`` driver."""

from __future__ import annotations

import dataclasses

from ...errors import BadStoreConfiguration

__all__ = ["RBDOptions"]


@dataclasses.dataclass(frozen=True, slots=True)
class RBDOptions:
    """Options of the ``rbd`` driver (see docs/configuration.md)."""

    #: The RADOS pool holding the images.
    pool: str = "rbd"
    #: The Ceph configuration file (monitors, auth settings).
    conffile: str = "/etc/ceph/ceph.conf"
    #: The Ceph client id (``admin`` for ``client.admin``).
    user: str = "admin"
    #: A keyring file for ``user``; unset: what ``conffile`` says.
    keyring: str | None = None
    #: Bytes per write and per read, and the images' object size (a power of two, 4 KiB-32 MiB).
    chunk_size: int = 8 << 20
    #: Seconds to connect to the cluster before giving up.
    connect_timeout: float = 10.0
    #: The probe writes (and removes) a small probe image to check WRITE_ACCESS.
    probe_write: bool = True

    def __post_init__(self) -> None:
        if not self.pool:
            raise BadStoreConfiguration("must not be empty", option="pool")
        size = self.chunk_size
        if size < 4096 or size > 32 << 20 or size & (size - 1):
            raise BadStoreConfiguration(
                "must be a power of two from 4096 to 33554432", option="chunk_size"
            )
        if not 0 < self.connect_timeout < float("inf"):
            raise BadStoreConfiguration("must be a positive number", option="connect_timeout")

    @property
    def order(self) -> int:
        """log2 of the image object size."""
        return self.chunk_size.bit_length() - 1
