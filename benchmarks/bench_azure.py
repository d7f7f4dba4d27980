"""Azure Blob Storage (Azurite, own process): aiostore's azure driver against the raw
azure-storage-blob asyncio client making the same calls, on 4 KiB objects.

* small put: create-only uploads (aiostore: If-None-Match: *, md5 + sha256 of each object;
  raw: ``upload_blob(overwrite=False)``), 32 in flight;
* small get: whole-object reads, 32 in flight.

Azurite itself is the bottleneck here: compare the client CPU per operation.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._harness import (
    Contender,
    ContenderSpec,
    Group,
    Scenario,
    ServerProcess,
    Skip,
    block,
    free_port,
    rmtree,
    run_limited,
    small_payload,
)

ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public, from Azurite's documentation).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "bench"


class _Base(Contender):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.url: str = self.env["url"]
        self.count: int = params["count"]
        self.conc: int = params["concurrency"]
        base = block()
        self.payloads = [small_payload(base, i) for i in range(self.count)]

    def small_key(self, rnd: int, i: int) -> str:
        return f"w/{self.slug}/r{rnd}-{i}"

    async def op_put_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.put_one(self.small_key(rnd, i), self.payloads[i])

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def op_get_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.get_one(f"small/{i}.bin")

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def put_one(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def get_one(self, key: str) -> None:
        raise NotImplementedError


class Aiostore(_Base):
    requires = ("aiostore.drivers.azure",)

    async def setup(self) -> None:
        from aiostore import StoreManager

        cfg = {
            "driver": "azure",
            "account_url": self.url,
            "account_name": ACCOUNT,
            "account_key": KEY,
            "container": CONTAINER,
            "probe_write": False,
        }
        self.manager = StoreManager({"probe": {"interval": 3600}, "stores": {"a": cfg}})
        await self.manager.__aenter__()
        self.store = self.manager["a"]

    async def teardown(self) -> None:
        await self.manager.__aexit__(None, None, None)

    async def put_one(self, key: str, data: bytes) -> None:
        await self.store.put(key, data)

    async def get_one(self, key: str) -> None:
        await self.store.read(key)


class RawAzure(_Base):
    requires = ("azure.storage.blob.aio",)

    async def setup(self) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        self.service = BlobServiceClient(
            self.url, credential={"account_name": ACCOUNT, "account_key": KEY}
        )
        self.container = self.service.get_container_client(CONTAINER)

    async def teardown(self) -> None:
        await self.service.close()

    async def put_one(self, key: str, data: bytes) -> None:
        await self.container.get_blob_client(key).upload_blob(data, overwrite=False)

    async def get_one(self, key: str) -> None:
        downloader = await self.container.get_blob_client(key).download_blob()
        await downloader.readall()


CONTENDERS = (
    ContenderSpec("aiostore", "benchmarks.bench_azure:Aiostore", "aiostore"),
    ContenderSpec("raw azure-storage-blob", "benchmarks.bench_azure:RawAzure"),
)


class AzureGroup(Group):
    name = "azure"

    def __init__(self, quick: bool, tmp: Path, log_dir: Path) -> None:
        super().__init__(quick, tmp, log_dir)
        self.root = tmp / "azurite"
        self.small = {"size": 0, "count": 200 if quick else 2000, "concurrency": 32}
        count = self.small["count"]
        self.scenarios = [
            Scenario(
                name="azure-small",
                title=f"Azure Blob (Azurite, own process), 4 KiB × {count:,}, 32 in flight",
                what=(
                    f"put: {count:,} objects of 4 KiB, 32 in flight (aiostore: create-only,"
                    f" md5 + sha256; raw: upload_blob(overwrite=False)); get: read {count:,}"
                    " objects of 4 KiB, 32 in flight. Azurite is the bottleneck: compare client"
                    " CPU per op."
                ),
                ops=("put", "get"),
                kind="small",
                contenders=CONTENDERS,
                params=self.small,
                group=self.name,
                warmup=True,
                method_suffix="_small",
                timeout=300 if quick else 900,
            )
        ]

    @contextlib.contextmanager
    def env(self) -> Iterator[dict[str, Any]]:
        exe = shutil.which("azurite-blob")
        if exe is None:
            raise Skip("azurite is not installed (npm install -g azurite)")
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError as exc:
            raise Skip("the azure extra is not installed") from exc
        self.root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}/{ACCOUNT}"
        argv = [
            exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(self.root),
            "--skipApiVersionCheck", "--loose", "--disableTelemetry",
        ]  # fmt: skip
        self.server = ServerProcess(argv, url, self.log_dir / "azurite.log")
        try:
            admin = BlobServiceClient(url, credential={"account_name": ACCOUNT, "account_key": KEY})
            with admin:
                container = admin.create_container(CONTAINER)
                base = block()
                for i in range(int(self.small["count"])):
                    container.upload_blob(f"small/{i}.bin", small_payload(base, i))
            yield {"url": url}
        finally:
            self.server.stop()
            rmtree(self.root)
