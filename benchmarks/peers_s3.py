"""S3 on loopback: aiostore's S3 driver against raw aiobotocore, s3fs, obstore and opendal, all
talking to the same moto server, which runs in a process of its own.

moto (pure Python, one core) is the bottleneck of every S3 scenario, so besides ops/s and MB/s
we report the client's CPU per operation (and moto's): that is where clients differ.

* large put: a stream of 1 MiB chunks as 8 MiB multipart parts, 4 in flight (s3fs cannot
  stream a put from memory: it gets the whole object as bytes, already in memory before the
  measurement starts); aiostore also computes md5 + sha256 of the data, the peers do not;
* large get: stream the object in 1 MiB chunks;
* small: 4 KiB objects, 64 in flight; the gets read objects written before the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
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
    Skip,
    achunks,
    block,
    free_port,
    run_limited,
    small_payload,
)

CHUNK = MiB
PART = 8 * MiB
PART_CONCURRENCY = 4
BUCKET = "bench"
ACCESS_KEY = "bench-access"
SECRET_KEY = "bench-secret"
REGION = "us-east-1"


def _botocore_config() -> Any:
    """The client configuration raw aiobotocore uses (the same calls as aiostore's driver)."""
    from aiobotocore.config import AioConfig

    return AioConfig(s3={"addressing_style": "path"}, max_pool_connections=64)


class _Base(Contender):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.url: str = self.env["url"]
        self.size: int = params["size"]
        self.count: int = params["count"]
        self.conc: int = params["concurrency"]
        self.base = block()
        self.payloads = [small_payload(self.base, i) for i in range(self.count)]

    def put_key(self, rnd: int) -> str:
        return f"w/{self.slug}/r{rnd}.bin"

    def small_key(self, rnd: int, i: int) -> str:
        return f"w/{self.slug}/r{rnd}-{i}"

    @staticmethod
    def get_key(i: int | None = None) -> str:
        return "large.bin" if i is None else f"small/{i}.bin"

    async def op_put_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.put_one(self.small_key(rnd, i), self.payloads[i])

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def op_get_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.get_one(self.get_key(i))

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def put_one(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    async def get_one(self, key: str) -> None:
        raise NotImplementedError


class Aiostore(_Base):
    requires = ("aiostore.drivers.s3",)
    #: The driver's ``transport`` option (None: its default).
    transport: str | None = None

    async def setup(self) -> None:
        from aiostore import StoreManager
        from aiostore.drivers.s3 import S3Driver  # type: ignore[import-not-found]

        cfg: dict[str, Any] = {
            "driver": "s3",
            "bucket": BUCKET,
            "endpoint_url": self.url,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "region": REGION,
            "addressing_style": "path",
        }
        fields = {f.name for f in dataclasses.fields(S3Driver.Options)}
        if self.transport is not None:
            if "transport" not in fields:
                raise Skip("this version of the s3 driver has one transport only")
            cfg["transport"] = self.transport
        # The same multipart shape as the peers, where the driver lets us say so.
        for name, value in (("part_size", PART), ("max_concurrency", PART_CONCURRENCY)):
            if name in fields:
                cfg[name] = value
        self.manager = StoreManager({"probe": {"interval": 3600}, "stores": {"s": cfg}})
        await self.manager.__aenter__()
        self.store = self.manager["s"]
        await self.store.read(self.get_key(0))  # the shared session, connected

    async def teardown(self) -> None:
        await self.manager.__aexit__(None, None, None)

    async def op_put(self, rnd: int) -> int:
        obj = await self.store.put(self.put_key(rnd), achunks(self.base, self.size), size=self.size)
        return int(obj.size)

    async def op_get(self, rnd: int) -> int:
        n = 0
        async with self.store.open(self.get_key()) as reader:
            async for chunk in reader:
                n += len(chunk)
        return n

    async def put_one(self, key: str, data: bytes) -> None:
        await self.store.put(key, data)

    async def get_one(self, key: str) -> None:
        await self.store.read(key)


class AiostoreBotocore(Aiostore):
    """aiostore with ``transport = "botocore"``: every request through aiobotocore."""

    transport = "botocore"


class Aiobotocore(_Base):
    requires = ("aiobotocore",)

    async def setup(self) -> None:
        from aiobotocore.session import get_session

        self._ctx = get_session().create_client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=_botocore_config(),
        )
        self.c = await self._ctx.__aenter__()
        await self.get_one(self.get_key(0))

    async def teardown(self) -> None:
        await self._ctx.__aexit__(None, None, None)

    async def op_put(self, rnd: int) -> int:
        c, key = self.c, self.put_key(rnd)
        mpu = await c.create_multipart_upload(Bucket=BUCKET, Key=key)
        upload_id = mpu["UploadId"]
        parts: list[dict[str, Any]] = []
        slots = asyncio.Semaphore(PART_CONCURRENCY)
        tasks: list[asyncio.Task[None]] = []

        async def upload(number: int, data: bytes) -> None:
            try:
                resp = await c.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            finally:
                slots.release()

        async def flush(data: bytes) -> None:
            await slots.acquire()
            tasks.append(asyncio.create_task(upload(len(tasks) + 1, data)))

        buf = bytearray()
        try:
            async for chunk in achunks(self.base, self.size):
                buf += chunk
                if len(buf) >= PART:
                    await flush(bytes(buf))
                    buf.clear()
            if buf or not tasks:
                await flush(bytes(buf))
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await c.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
            raise
        parts.sort(key=lambda p: p["PartNumber"])
        await c.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        return self.size

    async def op_get(self, rnd: int) -> int:
        n = 0
        resp = await self.c.get_object(Bucket=BUCKET, Key=self.get_key())
        async with resp["Body"] as body:
            async for chunk in body.iter_chunks(CHUNK):
                n += len(chunk)
        return n

    async def put_one(self, key: str, data: bytes) -> None:
        await self.c.put_object(Bucket=BUCKET, Key=key, Body=data)

    async def get_one(self, key: str) -> None:
        resp = await self.c.get_object(Bucket=BUCKET, Key=key)
        async with resp["Body"] as body:
            await body.read()


class S3fs(_Base):
    requires = ("s3fs",)

    async def setup(self) -> None:
        import s3fs

        self.fs = s3fs.S3FileSystem(
            asynchronous=True,
            key=ACCESS_KEY,
            secret=SECRET_KEY,
            endpoint_url=self.url,
            client_kwargs={"region_name": REGION},
            config_kwargs={"s3": {"addressing_style": "path"}, "max_pool_connections": 64},
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        self.session = await self.fs.set_session()
        # s3fs cannot stream a put from an iterator: it gets the whole object, made here
        # (before the RSS baseline) so that only what s3fs itself allocates is counted.
        self.whole = b"".join(self.base for _ in range(self.size // len(self.base)))
        await self.get_one(self.get_key(0))

    async def teardown(self) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()

    async def op_put(self, rnd: int) -> int:
        await self.fs._pipe_file(
            f"{BUCKET}/{self.put_key(rnd)}",
            self.whole,
            chunksize=PART,
            max_concurrency=PART_CONCURRENCY,
        )
        return self.size

    async def op_get(self, rnd: int) -> int:
        n = 0
        f = await self.fs.open_async(f"{BUCKET}/{self.get_key()}", "rb")
        try:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        finally:
            await f.close()
        return n

    async def put_one(self, key: str, data: bytes) -> None:
        await self.fs._pipe_file(f"{BUCKET}/{key}", data)

    async def get_one(self, key: str) -> None:
        await self.fs._cat_file(f"{BUCKET}/{key}")


class Obstore(_Base):
    requires = ("obstore",)

    async def setup(self) -> None:
        from obstore.store import S3Store

        self.store = S3Store(
            BUCKET,
            endpoint=self.url,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region=REGION,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
        await self.get_one(self.get_key(0))

    async def op_put(self, rnd: int) -> int:
        import obstore as obs

        await obs.put_async(
            self.store,
            self.put_key(rnd),
            achunks(self.base, self.size),
            chunk_size=PART,
            max_concurrency=PART_CONCURRENCY,
        )
        return self.size

    async def op_get(self, rnd: int) -> int:
        import obstore as obs

        n = 0
        resp = await obs.get_async(self.store, self.get_key())
        async for chunk in resp.stream(min_chunk_size=CHUNK):
            n += len(chunk)
        return n

    async def put_one(self, key: str, data: bytes) -> None:
        import obstore as obs

        await obs.put_async(self.store, key, data)

    async def get_one(self, key: str) -> None:
        import obstore as obs

        resp = await obs.get_async(self.store, key)
        await resp.bytes_async()


class Opendal(_Base):
    requires = ("opendal",)

    async def setup(self) -> None:
        import opendal

        self.op = opendal.AsyncOperator(
            "s3",
            bucket=BUCKET,
            endpoint=self.url,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            disable_config_load="true",
            disable_ec2_metadata="true",
        )
        await self.get_one(self.get_key(0))

    async def op_put(self, rnd: int) -> int:
        async with await self.op.open(
            self.put_key(rnd), "wb", chunk=PART, concurrent=PART_CONCURRENCY
        ) as f:
            async for chunk in achunks(self.base, self.size):
                await f.write(chunk)
        return self.size

    async def op_get(self, rnd: int) -> int:
        n = 0
        async with await self.op.open(self.get_key(), "rb") as f:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        return n

    async def put_one(self, key: str, data: bytes) -> None:
        await self.op.write(key, data)

    async def get_one(self, key: str) -> None:
        await self.op.read(key)


CONTENDERS = (
    ContenderSpec("aiostore", "benchmarks.peers_s3:Aiostore", "aiostore"),
    ContenderSpec("aiostore, botocore transport", "benchmarks.peers_s3:AiostoreBotocore"),
    ContenderSpec("raw aiobotocore", "benchmarks.peers_s3:Aiobotocore", "baseline"),
    ContenderSpec("s3fs", "benchmarks.peers_s3:S3fs"),
    ContenderSpec("obstore", "benchmarks.peers_s3:Obstore"),
    ContenderSpec("opendal", "benchmarks.peers_s3:Opendal"),
)


#: The CPU aiostore spends on top of the transfer: hashing the object (s3-large put only).
REFERENCES = (
    ContenderSpec("ref: md5 + sha256 only", "benchmarks.peers_file:HashOnly", "reference"),
)


class S3Group(Group):
    name = "s3"

    def __init__(self, quick: bool, tmp: Path, log_dir: Path) -> None:
        super().__init__(quick, tmp, log_dir)
        self.notes: list[str] = []
        large = {"size": (16 if quick else 256) * MiB, "count": 0, "concurrency": 64}
        small = {"size": 0, "count": 200 if quick else 2000, "concurrency": 64}
        self.large_size, self.small_count = large["size"], small["count"]
        self._runner: asyncio.Runner | None = None
        self._client: Any = None
        repeat = 4 if quick else 2
        self.scenarios = [
            Scenario(
                name="s3-large",
                title=f"S3 (moto, own process), {large['size'] // MiB} MiB put / get",
                what=(
                    f"put: a {large['size'] // MiB} MiB stream of 1 MiB chunks as 8 MiB parts, "
                    "4 in flight (aiostore also hashes md5 + sha256; s3fs gets the object as one "
                    f"bytes); get: stream it back in 1 MiB chunks ({repeat} times back to back"
                    " per measurement)."
                ),
                ops=("put", "get"),
                kind="large",
                repeat={"get": repeat},
                contenders=CONTENDERS + REFERENCES,
                params=large,
                group=self.name,
                # The first large put on a fresh moto costs it more (its heap grows): not
                # charged to whichever contender happens to come first.
                warmup=True,
                timeout=300 if quick else 900,
                after=self._after,
            ),
            Scenario(
                name="s3-small",
                title=f"S3 (moto, own process), 4 KiB × {small['count']:,}, 64 in flight",
                what=(
                    f"put: {small['count']:,} objects of 4 KiB, 64 in flight (aiostore: "
                    f"create-only, md5 + sha256); get: read {small['count']:,} objects of 4 KiB,"
                    " 64 in flight. moto is the bottleneck: compare client CPU per op."
                ),
                ops=("put", "get"),
                kind="small",
                contenders=CONTENDERS,
                params=small,
                group=self.name,
                warmup=True,
                method_suffix="_small",
                timeout=300 if quick else 900,
                after=self._after,
            ),
        ]

    def _call(self, coro: Any) -> Any:
        assert self._runner is not None
        return self._runner.run(coro)

    def _after(self, env: dict[str, Any], spec: ContenderSpec, op: str, rnd: int) -> None:
        if op == "put":
            self._call(self._delete_prefix(f"w/{spec.slug}/"))

    async def _delete_prefix(self, prefix: str) -> None:
        c = self._client
        paginator = c.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                await c.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})

    async def _open_client(self, url: str) -> None:
        from aiobotocore.session import get_session

        self._ctx = get_session().create_client(
            "s3",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=_botocore_config(),
        )
        self._client = await self._ctx.__aenter__()

    async def _prepare(self) -> None:
        c = self._client
        await c.create_bucket(Bucket=BUCKET)
        base = block()
        mpu = await c.create_multipart_upload(Bucket=BUCKET, Key="large.bin")
        parts = []
        per_part = PART // len(base)
        for n in range(self.large_size // PART):
            resp = await c.upload_part(
                Bucket=BUCKET,
                Key="large.bin",
                UploadId=mpu["UploadId"],
                PartNumber=n + 1,
                Body=base * per_part,
            )
            parts.append({"PartNumber": n + 1, "ETag": resp["ETag"]})
        await c.complete_multipart_upload(
            Bucket=BUCKET,
            Key="large.bin",
            UploadId=mpu["UploadId"],
            MultipartUpload={"Parts": parts},
        )

        async def one(i: int) -> None:
            await c.put_object(Bucket=BUCKET, Key=f"small/{i}.bin", Body=small_payload(base, i))

        await run_limited(self.small_count, one, 64)

    @contextlib.contextmanager
    def env(self) -> Iterator[dict[str, Any]]:
        missing = [m for m in ("moto", "flask") if importlib.util.find_spec(m) is None]
        if missing:
            names = ", ".join(missing)
            raise Skip(f"no S3 server: {names} not installed (pip install 'moto[server]')")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.server = ServerProcess(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            url + "/",
            self.log_dir / "moto.log",
        )
        self._runner = asyncio.Runner()
        try:
            self._call(self._open_client(url))
            self._call(self._prepare())
            yield {"url": url}
        finally:
            with contextlib.suppress(Exception):
                self._call(self._ctx.__aexit__(None, None, None))
            self._runner.close()
            self._runner = None
            self.server.stop()
