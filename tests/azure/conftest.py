"""Fixtures of the azure driver tests: Azurite (the Azure Blob emulator, from npm) on 127.0.0.1
for the whole session, a fresh container per test, store configurations and a fault proxy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("azure.storage.blob", reason="the azure extra is not installed")

from azure.storage.blob import BlobServiceClient, ContainerClient

from aiostore import Store, StoreManager
from tests.support.cloudstores import ConfigFactory, config_factory, emulator, installed
from tests.support.faultproxy import FaultProxy

__all__ = ["ACCOUNT", "BLOCK", "KEY", "Azurite", "ConfigFactory", "blobs"]

ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public, from Azurite's documentation).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
KiB = 1 << 10
#: Small blocks keep the staged-upload paths fast.
BLOCK = 256 * KiB


@dataclass(frozen=True, slots=True)
class Azurite:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/{ACCOUNT}"

    def connection_string(self, url: str | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={url or self.url};"
        )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's blob service on a free loopback port, stopped at the end of the session."""
    exe = installed("azurite-blob", "npm install -g azurite; .ci/system-deps installs it")
    location: Path = tmp_path_factory.mktemp("azurite")
    with emulator(
        "azurite-blob",
        lambda port: [
            exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
            "--skipApiVersionCheck", "--loose", "--disableTelemetry",
        ],
    ) as port:  # fmt: skip
        yield Azurite("127.0.0.1", port)


@pytest.fixture(scope="session")
def admin(azurite: Azurite) -> Iterator[BlobServiceClient]:
    """A plain (sync) client on the emulator, to set up and inspect containers."""
    client = BlobServiceClient(
        azurite.url, credential={"account_name": ACCOUNT, "account_key": KEY}
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def container(admin: BlobServiceClient) -> Iterator[str]:
    """A fresh container, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    admin.create_container(name)
    yield name
    admin.delete_container(name)


def blobs(admin: BlobServiceClient, container: str, *, uncommitted: bool = False) -> list[str]:
    """Names of the blobs in ``container`` (with ``uncommitted``: blobs that have only
    uncommitted blocks too)."""
    client: ContainerClient = admin.get_container_client(container)
    include = ["uncommittedblobs"] if uncommitted else None
    return sorted(b.name for b in client.list_blobs(include=include))


@pytest.fixture
def azure_config(azurite: Azurite, container: str) -> ConfigFactory:
    """``azure_config(**options)``: a manager configuration with one ``azure`` store named
    "azure" in a fresh container (256 KiB blocks); ``probe=`` replaces the probe settings."""
    return config_factory(
        "azure",
        {
            "driver": "azure",
            "account_url": azurite.url,
            "account_name": ACCOUNT,
            "account_key": KEY,
            "container": container,
            "block_size": BLOCK,
        },
    )


@pytest.fixture
async def manager(azure_config: ConfigFactory) -> AsyncIterator[StoreManager]:
    async with StoreManager(azure_config()) as m:
        yield m


@pytest.fixture
async def store(manager: StoreManager) -> Store:
    return manager["azure"]


@pytest.fixture
async def proxy(azurite: Azurite) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of Azurite (``proxy.url`` + ``/devstoreaccount1`` is the
    account URL to give the store)."""
    async with FaultProxy(
        azurite.host, azurite.port, error_code="ServerBusy", error_message="The server is busy."
    ) as p:
        yield p
