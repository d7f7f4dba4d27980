"""The ``gcs`` driver: configured once per store, opens one session per event loop, and
remembers what the probe found out about the server's create-only preconditions."""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, ClassVar, Final
from urllib.parse import urlsplit

import aiohttp

from ...errors import BadStoreConfiguration, StoreError
from ...sdk import Capability, Driver, ErrorMap, RetryPolicy
from ._guard import NameGuard
from ._options import GCSOptions

if TYPE_CHECKING:
    from ._session import GCSSession

__all__ = ["GCSDriver"]

log = logging.getLogger("aiostore.gcs")

GOOGLE: Final = "https://storage.googleapis.com"
ENFORCED: Final = "create-only puts: the server enforces ifGenerationMatch=0"
NOT_ENFORCED: Final = (
    "create-only puts: the server ignores ifGenerationMatch=0, so a put looks first and writes"
    " while holding a per-process guard of the name (atomic within this process only)"
)
UNKNOWN: Final = (
    "create-only puts: not known whether the server enforces ifGenerationMatch=0 (no probe"
    " write yet), so a put looks first and writes under a per-process guard of the name"
)


class GCSDriver(Driver[GCSOptions]):
    """Objects in a Google Cloud Storage bucket (or an emulator), through gcloud-aio-storage.
    Native READ_RANDOM | WRITE_ACCESS | DRIVER_REUSABLE."""

    name: ClassVar[str] = "gcs"
    schemes: ClassVar[tuple[str, ...]] = ("gs", "gcs")
    native_capabilities: ClassVar[Capability] = (
        Capability.READ_RANDOM | Capability.WRITE_ACCESS | Capability.DRIVER_REUSABLE
    )
    Options: ClassVar[type[GCSOptions]] = GCSOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: GCSOptions) -> None:
        if importlib.util.find_spec("gcloud.aio.storage") is None:
            raise BadStoreConfiguration(
                "the gcs driver needs gcloud-aio-storage: pip install 'aiostore[gcs]'",
                store=store,
                option="driver",
            )
        super().__init__(store, options)
        prefix = options.prefix
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        # Bytes and file inputs arrive in chunk-sized pieces: an upload chunk is then one piece.
        self.chunk_size = options.chunk_size
        self.api_root = (options.endpoint_url or GOOGLE).rstrip("/")
        #: An emulator endpoint without a credentials file: no authentication.
        self.anonymous = options.endpoint_url is not None and options.service_file is None
        self.timeout = aiohttp.ClientTimeout(
            sock_connect=options.connect_timeout, sock_read=options.read_timeout
        )
        #: Whether the server enforces ``ifGenerationMatch=0``: None until a probe wrote.
        self.enforces_create_only: bool | None = None
        self.guard = NameGuard()
        from ._errors import build_error_map, describe, retryable

        self.errors: ErrorMap = build_error_map(str, self.api_root)
        self.retry = RetryPolicy(
            max_attempts=options.max_attempts, retryable=retryable, describe=describe
        )

    @property
    def create_only(self) -> str:
        """How create-only puts are made atomic on this server (for the health report)."""
        if self.enforces_create_only is None:
            return UNKNOWN
        return ENFORCED if self.enforces_create_only else NOT_ENFORCED

    def discovered(self, enforced: bool) -> None:
        """The probe found out whether the server enforces ``ifGenerationMatch=0``."""
        if enforced != self.enforces_create_only:
            log.info("store %r: %s", self.store, ENFORCED if enforced else NOT_ENFORCED)
        self.enforces_create_only = enforced

    def rebase(self, session_uri: str) -> str:
        """A resumable upload's session URI, on ``endpoint_url`` when one is configured (an
        emulator answers with its own address, which a proxy in front of it would miss)."""
        if self.options.endpoint_url is None:
            return session_uri
        parts, root = urlsplit(session_uri), urlsplit(self.api_root)
        return parts._replace(scheme=root.scheme, netloc=root.netloc).geturl()

    def location_prefix(self) -> str:
        return f"gs://{self.options.bucket}/{self.prefix}"

    async def open_session(self) -> GCSSession:
        from ._session import open_session

        try:
            return await open_session(self)
        except (OSError, ValueError, KeyError) as exc:  # an unreadable or bad credentials file
            raise BadStoreConfiguration(
                f"cannot load the GCS credentials: {type(exc).__name__}: {exc}",
                store=self.store,
                option="service_file",
            ) from None

    async def start(self) -> None:
        """With ``create_bucket``, create the bucket unless it exists. Never raises for a
        server that is merely down: the start-up probe reports it."""
        if not self.options.create_bucket:
            return
        session = await self.open_session()
        try:
            await session.create_bucket()
        except StoreError as exc:
            log.warning("store %r: cannot create the bucket: %s", self.store, exc)
        finally:
            await session.aclose()
