"""The ``s3`` driver's options and S3's fixed limits (no vendor import here)."""

from __future__ import annotations

import dataclasses
import math
from typing import Final, Literal

__all__ = [
    "ABORT_TIMEOUT",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MAX_POOL_CONNECTIONS",
    "MAX_SINGLE_PUT",
    "MIN_PART_SIZE",
    "PROBE_AREA",
    "PROBE_BODY",
    "READ_CHUNK",
    "S3Options",
]

MiB: Final = 1 << 20
#: S3's limits on multipart uploads.
MIN_PART_SIZE: Final = 5 * MiB
MAX_PART_SIZE: Final = 5 * 1024 * MiB
MAX_PARTS: Final = 10_000
#: Largest single PUT S3 accepts.
MAX_SINGLE_PUT: Final = 5 * 1024 * MiB
#: Bytes asked of the response body per read (aiohttp hands out what it has, up to this).
READ_CHUNK: Final = 1 * MiB
#: Connections per client (aiohttp pool); at least 2 × max_concurrency.
MAX_POOL_CONNECTIONS: Final = 64
#: Bound on aborting a failed or cancelled multipart upload (shielded from cancellation).
ABORT_TIMEOUT: Final = 30.0
#: Bound on aborting, at close, the uploads whose abort failed earlier.
CLOSE_ABORT_TIMEOUT: Final = 3.0
#: Back-off between attempts: full jitter, up to ``BACKOFF_BASE * 2**n``, at most ``BACKOFF_MAX``.
BACKOFF_BASE: Final = 0.1
BACKOFF_MAX: Final = 5.0
#: Under the driver prefix: the probe's scratch objects (skipped by ``list``).
PROBE_AREA: Final = ".aiostore-probe/"
PROBE_BODY: Final = b"aiostore probe object\n"


@dataclasses.dataclass(frozen=True, slots=True)
class S3Options:
    """Options of the ``s3`` driver (see CONTRACT.md section 5)."""

    #: The bucket (required).
    bucket: str
    #: Key prefix inside the bucket; a trailing ``/`` is added when missing.
    prefix: str = ""
    #: Endpoint of an S3-compatible server (``http://127.0.0.1:9000``); AWS when unset.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    #: Static credentials; when unset, botocore's default credential chain is used.
    access_key: str | None = dataclasses.field(default=None, repr=False, metadata={"secret": True})
    secret_key: str | None = dataclasses.field(default=None, repr=False, metadata={"secret": True})
    session_token: str | None = dataclasses.field(
        default=None, repr=False, metadata={"secret": True}
    )
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: Create the bucket at start-up when it does not exist.
    create_bucket: bool = False
    #: Objects larger than this are uploaded in parts; smaller ones with one PUT.
    multipart_threshold: int = 8 * MiB
    #: Part size (≥ 5 MiB; grown automatically when a known size needs more than 10,000 parts).
    part_size: int = 8 * MiB
    #: Parts in flight per multipart upload (memory: see ``_multipart``).
    max_concurrency: int = 4
    connect_timeout: float = 10.0
    #: Seconds without any byte from the server before a request fails (per socket read).
    read_timeout: float = 60.0
    #: Requests of one logical step, the first included (botocore's own retries are off).
    max_attempts: int = 3
    #: Let the probe write, range-read and delete a tiny object under ``<prefix>.aiostore-probe/``.
    probe_write: bool = True
    #: A probe slower than this (seconds) revokes READ_RANDOM ("degraded"); None disables.
    degraded_latency: float | None = 1.0
    #: "lean": signed requests sent straight on aiohttp; "botocore": through aiobotocore.
    transport: Literal["lean", "botocore"] = "lean"

    def __post_init__(self) -> None:
        if not self.bucket or "/" in self.bucket:
            raise ValueError(f"bucket must be a bucket name, not {self.bucket!r}")
        if self.prefix.startswith("/"):
            raise ValueError("prefix must not start with '/'")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                f"endpoint_url must be an http:// or https:// URL, not {self.endpoint_url!r}"
            )
        if not self.region:
            raise ValueError("region must not be empty")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key must be given together (or neither)")
        if self.session_token is not None and self.access_key is None:
            raise ValueError("session_token needs access_key and secret_key")
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"part_size must be between 5 MiB ({MIN_PART_SIZE}) and 5 GiB, not {self.part_size}"
            )
        if not 0 <= self.multipart_threshold <= MAX_SINGLE_PUT:
            raise ValueError(
                f"multipart_threshold must be between 0 and 5 GiB, not {self.multipart_threshold}"
            )
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be ≥ 1, not {self.max_concurrency}")
        if self.max_attempts < 1:
            raise ValueError(
                f"max_attempts must be ≥ 1 (it counts the first attempt), not {self.max_attempts}"
            )
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.degraded_latency is not None and not self.degraded_latency > 0:
            raise ValueError(
                f"degraded_latency must be positive seconds, not {self.degraded_latency!r}"
            )
