"""HTTP: aiostore's (read-only) http driver against raw aiohttp, obstore's HTTPStore and opendal's
http service, all reading from the same aiohttp static server, which runs in a process of its
own (``benchmarks/_static_server.py``: Range, HEAD, sendfile, no access log).

* large get: stream one object (raw aiohttp: ``content.iter_any()``, the same reads aiostore's
  driver makes; obstore: ``stream(min_chunk_size=1 MiB)``; opendal: ``read(1 MiB)`` calls);
* small get: 4 KiB objects, 64 in flight.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._harness import (
    Contender,
    ContenderSpec,
    Group,
    MiB,
    Scenario,
    ServerProcess,
    block,
    chunks,
    free_port,
    rmtree,
    run_limited,
    small_payload,
)

CHUNK = MiB


class _Base(Contender):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.url: str = self.env["url"]
        self.count: int = params["count"]
        self.conc: int = params["concurrency"]

    @staticmethod
    def get_key(i: int | None = None) -> str:
        return "large.bin" if i is None else f"small/{i}.bin"

    async def op_get_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.get_one(self.get_key(i))

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def get_one(self, key: str) -> None:
        raise NotImplementedError


class Aiostore(_Base):
    requires = ("aiostore.drivers.http",)

    async def setup(self) -> None:
        from aiostore import StoreManager

        cfg = {"driver": "http", "base_url": self.url + "/", "probe_path": self.get_key(0)}
        self.manager = StoreManager({"probe": {"interval": 3600}, "stores": {"h": cfg}})
        await self.manager.__aenter__()
        self.store = self.manager["h"]
        await self.get_one(self.get_key(0))

    async def teardown(self) -> None:
        await self.manager.__aexit__(None, None, None)

    async def op_get(self, rnd: int) -> int:
        n = 0
        async with self.store.open(self.get_key()) as reader:
            async for chunk in reader:
                n += len(chunk)
        return n

    async def get_one(self, key: str) -> None:
        await self.store.read(key)


class Aiohttp(_Base):
    requires = ("aiohttp",)

    async def setup(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(auto_decompress=False)
        await self.get_one(self.get_key(0))

    async def teardown(self) -> None:
        await self.session.close()

    async def op_get(self, rnd: int) -> int:
        n = 0
        async with self.session.get(f"{self.url}/{self.get_key()}") as resp:
            resp.raise_for_status()
            async for chunk in resp.content.iter_any():
                n += len(chunk)
        return n

    async def get_one(self, key: str) -> None:
        async with self.session.get(f"{self.url}/{key}") as resp:
            resp.raise_for_status()
            await resp.read()


class Obstore(_Base):
    requires = ("obstore",)

    async def setup(self) -> None:
        from obstore.store import HTTPStore

        self.store = HTTPStore.from_url(self.url, client_options={"allow_http": True})
        await self.get_one(self.get_key(0))

    async def op_get(self, rnd: int) -> int:
        import obstore as obs

        n = 0
        resp = await obs.get_async(self.store, self.get_key())
        async for chunk in resp.stream(min_chunk_size=CHUNK):
            n += len(chunk)
        return n

    async def get_one(self, key: str) -> None:
        import obstore as obs

        resp = await obs.get_async(self.store, key)
        await resp.bytes_async()


class Opendal(_Base):
    requires = ("opendal",)

    async def setup(self) -> None:
        import opendal

        self.op = opendal.AsyncOperator("http", endpoint=self.url)
        await self.get_one(self.get_key(0))

    async def op_get(self, rnd: int) -> int:
        n = 0
        async with await self.op.open(self.get_key(), "rb") as f:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        return n

    async def get_one(self, key: str) -> None:
        await self.op.read(key)


CONTENDERS = (
    ContenderSpec("aiostore", "benchmarks.peers_http:Aiostore", "aiostore"),
    ContenderSpec("raw aiohttp", "benchmarks.peers_http:Aiohttp", "baseline"),
    ContenderSpec("obstore", "benchmarks.peers_http:Obstore"),
    ContenderSpec("opendal", "benchmarks.peers_http:Opendal"),
)


class HttpGroup(Group):
    name = "http"

    def __init__(self, quick: bool, tmp: Path, log_dir: Path) -> None:
        super().__init__(quick, tmp, log_dir)
        self.root = tmp / "http"
        large = {"size": (8 if quick else 64) * MiB, "count": 0, "concurrency": 64}
        small = {"size": 0, "count": 200 if quick else 2000, "concurrency": 64}
        self.large_size, self.small_count = large["size"], small["count"]
        repeat = 4 if quick else 8
        self.scenarios = [
            Scenario(
                name="http-large",
                title=f"HTTP static server (own process), {large['size'] // MiB} MiB get",
                what=(
                    f"get: stream one {large['size'] // MiB} MiB object ({repeat} times back to"
                    " back per measurement)."
                ),
                ops=("get",),
                kind="large",
                repeat={"get": repeat},
                contenders=CONTENDERS,
                params=large,
                group=self.name,
                timeout=300,
            ),
            Scenario(
                name="http-small",
                title=f"HTTP static server (own process), 4 KiB × {small['count']:,} gets",
                what=f"get: {small['count']:,} objects of 4 KiB, 64 in flight.",
                ops=("get",),
                kind="small",
                contenders=CONTENDERS,
                params=small,
                group=self.name,
                warmup=True,
                method_suffix="_small",
                timeout=300,
            ),
        ]

    @contextlib.contextmanager
    def env(self) -> Iterator[dict[str, Any]]:
        base = block()
        (self.root / "small").mkdir(parents=True, exist_ok=True)
        with open(self.root / "large.bin", "wb") as f:
            for chunk in chunks(base, self.large_size):
                f.write(chunk)
        for i in range(self.small_count):
            (self.root / "small" / f"{i}.bin").write_bytes(small_payload(base, i))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.server = ServerProcess(
            [sys.executable, "-m", "benchmarks._static_server", str(self.root), str(port)],
            f"{url}/small/0.bin",
            self.log_dir / "static-server.log",
        )
        try:
            yield {"url": url}
        finally:
            self.server.stop()
            rmtree(self.root)
