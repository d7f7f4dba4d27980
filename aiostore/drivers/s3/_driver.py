"""The ``s3`` driver: options, shared state of a store's sessions, and their opening.

Importing this module imports no vendor library: aiobotocore and botocore load when a driver
is built, and their absence is a ``BadStoreConfiguration`` naming the extra to install.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from ...errors import BackendUnavailable, BadStoreConfiguration, StoreError
from ...sdk import Capability, Driver, RetryPolicy, install_secret_filter
from ._options import BACKOFF_BASE, BACKOFF_MAX, S3Options

if TYPE_CHECKING:
    from ._client import Clients
    from ._errors import ErrorTables
    from ._multipart import UploadLedger
    from ._session import S3Session

__all__ = ["S3Driver"]

log = logging.getLogger("aiostore.s3")

#: What the driver needs installed: the ``s3`` extra.
_VENDOR_MODULES = ("aiobotocore.session", "botocore.exceptions")


def _require_vendor(store: str) -> None:
    for name in _VENDOR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing = (exc.name or name).split(".")[0]
            raise BadStoreConfiguration(
                f"the s3 driver needs aiobotocore ({missing} is not installed):"
                " pip install 'aiostore[s3]'",
                store=store,
                option="driver",
            ) from exc


class S3Driver(Driver[S3Options]):
    """Objects in an S3 bucket (AWS or any S3-compatible server), through aiobotocore.

    Native READ_RANDOM | WRITE_ACCESS | DRIVER_REUSABLE: ranged GETs give offset and chunk
    reads; objects cannot be patched in place.
    """

    name: ClassVar[str] = "s3"
    schemes: ClassVar[tuple[str, ...]] = ("s3",)
    native_capabilities: ClassVar[Capability] = (
        Capability.READ_RANDOM | Capability.WRITE_ACCESS | Capability.DRIVER_REUSABLE
    )
    Options: ClassVar[type[S3Options]] = S3Options
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: S3Options) -> None:
        _require_vendor(store)
        from ._client import Clients
        from ._errors import ErrorTables, describe, transient
        from ._multipart import UploadLedger

        super().__init__(store, options)
        o = options
        prefix = o.prefix
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        # Bytes and file inputs arrive in part-sized chunks: a part is then one chunk, no copy.
        self.chunk_size = o.part_size
        self._secrets = tuple(
            s for s in (o.access_key, o.secret_key, o.session_token) if s and len(s) >= 4
        )
        self.clients: Clients = Clients(o)
        self.errors: ErrorTables = ErrorTables.build(
            scrub=self.scrub,
            endpoint=o.endpoint_url or f"S3 in {o.region}",
            bucket=o.bucket,
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
        )
        self.retry = RetryPolicy(
            max_attempts=o.max_attempts,
            retryable=transient,
            base_delay=BACKOFF_BASE,
            max_delay=BACKOFF_MAX,
            describe=lambda exc: self.scrub(describe(exc)),
        )
        #: Multipart uploads started and not finished, across every session of this store.
        self.uploads: UploadLedger = UploadLedger()
        self._remove_filter: Callable[[], None] | None = None

    def location_prefix(self) -> str:
        return f"s3://{self.options.bucket}/{self.prefix}"

    def scrub(self, text: str) -> str:
        """``text`` with any credential replaced by ``***`` (for messages and logs)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def open_session(self) -> S3Session:
        from ._session import S3Session

        stack = contextlib.AsyncExitStack()
        try:
            client = await self.clients.open(stack)
        except BaseException as exc:
            await stack.aclose()
            if isinstance(exc, ValueError):
                raise BadStoreConfiguration(
                    f"cannot create the S3 client: {self.scrub(str(exc))}", store=self.store
                ) from exc
            if isinstance(exc, Exception) and self.errors.read.translate(exc) is not exc:
                raise BackendUnavailable(
                    f"cannot create the S3 client: {self.scrub(str(exc))}", store=self.store
                ) from exc
            raise
        return S3Session(self, client, stack)

    async def start(self) -> None:
        """Keep the credentials out of botocore's log records (until :meth:`aclose`); with
        ``create_bucket``, create the bucket unless it exists. Never raises for a backend that
        is merely down: the start-up probe reports it."""
        if self._remove_filter is None:
            o = self.options
            self._remove_filter = install_secret_filter(
                (o.access_key, o.secret_key, o.session_token)
            )
        if not self.options.create_bucket:
            return
        try:
            session = await self.open_session()
        except StoreError as exc:
            log.warning("store %r: cannot create the bucket: %s", self.store, exc)
            return
        try:
            await session.create_bucket()
        except StoreError as exc:
            log.warning("store %r: cannot create the bucket: %s", self.store, exc)
        finally:
            await session.aclose()

    async def aclose(self) -> None:
        """Abort the uploads whose abort failed earlier (bounded; a session closing on its loop
        tries first), then stop filtering botocore's logs."""
        try:
            if self.uploads.stranded():
                session = await self.open_session()
                await session.aclose()  # closing a session aborts stranded uploads (bounded)
        except StoreError as exc:
            log.warning("store %r: %s", self.store, exc)
        finally:
            left = self.uploads.stranded()
            if left:
                log.warning(
                    "store %r: %d multipart upload(s) could not be aborted: %s",
                    self.store,
                    len(left),
                    ", ".join(f"{s.key!r} ({s.upload_id})" for s in left),
                )
            remove, self._remove_filter = self._remove_filter, None
            if remove is not None:
                remove()
