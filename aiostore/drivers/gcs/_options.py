"""Options of the ``gcs`` driver, validated by :func:`aiostore.sdk.parse_options`."""

from __future__ import annotations

import dataclasses
import math
from typing import Final

from ...errors import BadStoreConfiguration

__all__ = ["GCSOptions"]

KiB: Final = 1 << 10
MiB: Final = 1 << 20
#: Every chunk of a resumable upload but the last is a multiple of this (GCS's rule).
CHUNK_QUANTUM: Final = 256 * KiB


@dataclasses.dataclass(frozen=True, slots=True)
class GCSOptions:
    """Options of the ``gcs`` driver (documented in docs/configuration.md)."""

    #: The bucket (required).
    bucket: str
    #: Object name prefix inside the bucket; a trailing ``/`` is added when missing.
    prefix: str = ""
    #: Endpoint of an emulator (``http://127.0.0.1:4443``); Google's when unset. Without
    #: ``service_file`` an endpoint is used without authentication.
    endpoint_url: str | None = None
    #: Service-account (or other credentials) JSON file; application default credentials when
    #: unset (and no ``endpoint_url``).
    service_file: str | None = None
    #: Project that owns a bucket created by ``create_bucket``.
    project: str | None = None
    #: Create the bucket at start-up when it does not exist.
    create_bucket: bool = False
    #: Objects up to this size go up with one request; larger ones as a resumable upload in
    #: chunks of this size (a multiple of 256 KiB).
    chunk_size: int = 8 * MiB
    connect_timeout: float = 10.0
    #: Seconds without any byte from the server before a request fails.
    read_timeout: float = 60.0
    #: Requests one step of an operation may make, the first included.
    max_attempts: int = 3
    #: Let the probe write, range-read and delete tiny objects under ``<prefix>.aiostore-probe/``
    #: (which is also how it finds out whether the server enforces ``ifGenerationMatch=0``).
    probe_write: bool = True
    #: A probe slower than this (seconds) revokes READ_RANDOM ("degraded").
    degraded_latency: float = 1.0

    def __post_init__(self) -> None:
        if not self.bucket or "/" in self.bucket:
            raise _bad("bucket", f"must be a bucket name, not {self.bucket!r}")
        if self.prefix.startswith("/"):
            raise _bad("prefix", "must not start with '/'")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise _bad(
                "endpoint_url", f"must be an http:// or https:// URL, not {self.endpoint_url!r}"
            )
        if self.chunk_size < CHUNK_QUANTUM or self.chunk_size % CHUNK_QUANTUM:
            raise _bad(
                "chunk_size",
                f"must be a positive multiple of 256 KiB ({CHUNK_QUANTUM}), not {self.chunk_size}",
            )
        if self.max_attempts < 1:
            raise _bad("max_attempts", f"must be ≥ 1 (the first included), not {self.max_attempts}")
        for name in ("connect_timeout", "read_timeout", "degraded_latency"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise _bad(name, f"must be a positive number of seconds, not {value!r}")


def _bad(option: str, message: str) -> BadStoreConfiguration:
    return BadStoreConfiguration(message, option=option)
