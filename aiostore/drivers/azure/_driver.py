"""The ``azure`` driver: configured once per store, opens one session per event loop."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final
from urllib.parse import parse_qsl

from ...errors import BadStoreConfiguration, StoreError
from ...sdk import Capability, Driver, ErrorMap, RetryPolicy, install_secret_filter
from ._options import AzureOptions

if TYPE_CHECKING:
    from ._session import AzureSession

__all__ = ["AZURE_LOGGERS", "AzureDriver"]

log = logging.getLogger("aiostore.azure")

#: azure-core and azure-storage loggers that print request URLs and headers (the SDK's
#: HTTP logging policy at INFO, its storage logging policy at DEBUG, transports).
AZURE_LOGGERS: Final = (
    "azure",
    "azure.core",
    "azure.core.pipeline",
    "azure.core.pipeline.policies",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.core.pipeline.policies._universal",
    "azure.core.pipeline.transport",
    "azure.core.pipeline.transport._aiohttp",
    "azure.storage",
    "azure.storage.blob",
    "azure.storage.blob._shared",
    "azure.storage.blob._shared.policies",
    "azure.storage.blob._shared.policies_async",
    "azure.storage.blob._shared.base_client",
    "azure.storage.blob._shared.base_client_async",
    "aiohttp.client",
)


class AzureDriver(Driver[AzureOptions]):
    """Blobs in an Azure Blob Storage container (or Azurite), through azure-storage-blob's
    asyncio client. Native READ_RANDOM | WRITE_ACCESS | DRIVER_REUSABLE."""

    name: ClassVar[str] = "azure"
    schemes: ClassVar[tuple[str, ...]] = ("azure",)
    native_capabilities: ClassVar[Capability] = (
        Capability.READ_RANDOM | Capability.WRITE_ACCESS | Capability.DRIVER_REUSABLE
    )
    Options: ClassVar[type[AzureOptions]] = AzureOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: AzureOptions) -> None:
        if importlib.util.find_spec("azure.storage.blob") is None:
            raise BadStoreConfiguration(
                "the azure driver needs azure-storage-blob: pip install 'aiostore[azure]'",
                store=store,
                option="driver",
            )
        super().__init__(store, options)
        prefix = options.prefix
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        # Bytes and file inputs arrive in block-sized chunks: a block is then one chunk, no copy.
        self.chunk_size = options.block_size
        self._secrets = _secrets(options)
        self.url = options.url or _connection_url(options.connection_string or "")
        self._remove_filter: Callable[[], None] | None = None
        from ._errors import build_error_map, describe, retryable

        self.errors: ErrorMap = build_error_map(self.scrub, self.url or "the blob service")
        self.retry = RetryPolicy(
            max_attempts=options.max_attempts,
            retryable=retryable,
            describe=lambda exc: self.scrub(describe(exc)),
        )

    def location_prefix(self) -> str:
        return f"azure://{self.options.container}/{self.prefix}"

    def scrub(self, text: str) -> str:
        """``text`` with every credential replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def open_session(self) -> AzureSession:
        from ._session import AzureSession, open_client

        try:
            service = open_client(self)
        except ValueError as exc:  # a malformed connection string or URL
            raise BadStoreConfiguration(
                f"cannot create the Azure client: {self.scrub(str(exc))}", store=self.store
            ) from None
        return AzureSession(self, service, asyncio.get_running_loop())

    async def start(self) -> None:
        """Keep the credentials out of the SDK's log records (until :meth:`aclose`); with
        ``create_container``, create the container unless it exists. Never raises for a
        service that is merely down: the start-up probe reports it."""
        if self._remove_filter is None:
            self._remove_filter = install_secret_filter(self._secrets, AZURE_LOGGERS)
        if not self.options.create_container:
            return
        session = await self.open_session()
        try:
            await session.create_container()
        except StoreError as exc:
            log.warning("store %r: cannot create the container: %s", self.store, exc)
        finally:
            await session.aclose()

    async def aclose(self) -> None:
        remove, self._remove_filter = self._remove_filter, None
        if remove is not None:
            remove()


def _secrets(o: AzureOptions) -> tuple[str, ...]:
    """Every secret and every secret part of one (a SAS signature, a connection string's key)
    that could show in a URL, a header or a message."""
    found: list[str] = []
    for value in (o.account_key, o.sas_token, o.connection_string):
        if not value:
            continue
        found.append(value)
        for part in value.split(";"):
            name, _, item = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature") and item:
                found.append(item)
                found.extend(v for k, v in parse_qsl(item.lstrip("?")) if k == "sig")
        found.extend(v for k, v in parse_qsl(value.lstrip("?")) if k == "sig")
    # Very short strings would redact ordinary words; real secrets are longer.
    return tuple(sorted({s for s in found if len(s) >= 8}, key=len, reverse=True))


def _connection_url(connection_string: str) -> str | None:
    """The blob endpoint a connection string names (for messages only)."""
    parts = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return parts.get("BlobEndpoint") or (
        f"https://{parts['AccountName']}.blob.core.windows.net" if "AccountName" in parts else None
    )
