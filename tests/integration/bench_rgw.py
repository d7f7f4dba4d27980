"""Large-object throughput on Ceph RGW: aiostore's S3 driver against raw aiobotocore.

Both talk to the same gateway in the same run, with the same multipart shape: a stream of 1 MiB
chunks cut into 8 MiB parts, 4 in flight; gets stream the object in 1 MiB chunks. aiostore
also computes md5 + sha256 of what it puts; the raw client does not, so a third contender
(``aiobotocore+hash``) does the raw upload plus that hashing in a worker thread, the
like-for-like baseline for the facade's own cost.
Contenders alternate their order each round after a warm-up round; we report the median and
best MB/s and the client's CPU seconds (process time) per transfer.

By hand (starts its own cluster, installing Ceph if needed)::

    python -m tests.integration.bench_rgw [--size-mib 256] [--rounds 3]

``test_rgw_bench.py`` runs :func:`run_bench` on the session's cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiostore import StoreManager

from .ceph import CephCluster, RGWEndpoint
from .helpers import MiB, raw_client, rgw_store_config

CHUNK = MiB
PART = 8 * MiB
CONCURRENCY = 4


@dataclass
class Measure:
    """Seconds and client CPU seconds of each timed transfer of one contender and direction."""

    name: str
    size: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def mbps(self) -> list[float]:
        return [self.size / 1e6 / w for w in self.wall]

    @property
    def median(self) -> float:
        return statistics.median(self.mbps())

    @property
    def best(self) -> float:
        return max(self.mbps())

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def line(self) -> str:
        return (
            f"{self.name:<16} median {self.median:7.1f} MB/s  best {self.best:7.1f} MB/s  "
            f"client CPU {self.cpu_median:5.2f} s  (runs: "
            + ", ".join(f"{x:.0f}" for x in self.mbps())
            + ")"
        )


@dataclass
class BenchResult:
    size: int
    rounds: int
    put: dict[str, Measure]
    get: dict[str, Measure]

    def ratios(self) -> dict[str, float]:
        """Median over rounds of aiostore's MB/s over the baseline's in the same round (paired,
        so drift between rounds cancels). ``put+hash``: over raw aiobotocore that also hashes,
        the like-for-like figure for the facade's own cost."""

        def paired(a: Measure, b: Measure) -> float:
            return statistics.median(x / y for x, y in zip(a.mbps(), b.mbps(), strict=True))

        return {
            "put": paired(self.put["aiostore"], self.put["aiobotocore"]),
            "put+hash": paired(self.put["aiostore"], self.put["aiobotocore+hash"]),
            "get": paired(self.get["aiostore"], self.get["aiobotocore"]),
        }

    def lines(self) -> list[str]:
        r = self.ratios()
        out = [f"RGW throughput, {self.size // MiB} MiB objects, {self.rounds} timed rounds:"]
        for direction, group in (("put", self.put), ("get", self.get)):
            out += [f"  {direction} {m.line()}" for m in group.values()]
        out.append(
            f"  aiostore / raw aiobotocore (median of per-round ratios): put {r['put']:.2f}, "
            f"get {r['get']:.2f}; put / (raw + md5 + sha256) {r['put+hash']:.2f}"
        )
        return out


async def _stream(payload: bytes) -> AsyncIterator[bytes]:
    view = memoryview(payload)
    for i in range(0, len(payload), CHUNK):
        yield bytes(view[i : i + CHUNK])  # a fresh chunk, as a network stream would hand out


def _hash_both(hashes: tuple[Any, Any], chunk: bytes) -> None:
    for h in hashes:
        h.update(chunk)


async def _raw_put(
    client: Any, bucket: str, key: str, payload: bytes, *, hashed: bool = False
) -> None:
    """The multipart upload a careful user writes with aiobotocore by hand; with ``hashed``,
    also md5 + sha256 of the data in a worker thread per chunk (what aiostore's put must do)."""
    hashes = (hashlib.md5(), hashlib.sha256())
    mpu = await client.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id = mpu["UploadId"]
    parts: list[dict[str, Any]] = []
    slots = asyncio.Semaphore(CONCURRENCY)
    tasks: list[asyncio.Task[None]] = []

    async def upload(number: int, data: bytes) -> None:
        try:
            resp = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        finally:
            slots.release()

    async def flush(data: bytes) -> None:
        await slots.acquire()
        tasks.append(asyncio.create_task(upload(len(tasks) + 1, data)))

    buf = bytearray()
    try:
        async for chunk in _stream(payload):
            if hashed:
                await asyncio.to_thread(_hash_both, hashes, chunk)
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
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    parts.sort(key=lambda p: p["PartNumber"])
    await client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    if hashed:
        assert hashes[0].hexdigest() == hashlib.md5(payload).hexdigest()


async def _raw_get(client: Any, bucket: str, key: str) -> str:
    resp = await client.get_object(Bucket=bucket, Key=key)
    digest = hashlib.md5()
    async with resp["Body"] as body:
        async for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def _timed(measure: Measure | None, fn: Callable[[], Awaitable[Any]]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    result = await fn()
    if measure is not None:
        measure.wall.append(time.perf_counter() - wall)
        measure.cpu.append(time.process_time() - cpu)
    return result


async def run_bench(
    rgw: RGWEndpoint,
    bucket: str = "aiostore-bench",
    *,
    size: int = 256 * MiB,
    rounds: int = 3,
    cluster: CephCluster | None = None,
    log: Callable[[str], None] = print,
) -> BenchResult:
    """Warm up once, then ``rounds`` timed rounds of put + get per contender, order alternating.

    Every get is checked against the payload's md5 (outside the timing for raw; aiostore's
    reader is hashed in the loop for both, so the comparison is even). With ``cluster``, RGW's
    garbage collector runs between rounds so memstore does not fill up.
    """
    payload = os.urandom(size)
    expected = hashlib.md5(payload).hexdigest()
    cfg = rgw_store_config(
        rgw,
        bucket,
        part_size=PART,
        multipart_threshold=PART,
        max_concurrency=CONCURRENCY,
    )
    names = ("aiostore", "aiobotocore", "aiobotocore+hash")
    put = {n: Measure(n, size) for n in names}
    get = {n: Measure(n, size) for n in names[:2]}
    async with (
        StoreManager({"probe": {"interval": 3600.0}, "stores": {"rgw": cfg}}) as manager,
        raw_client(rgw, max_pool_connections=64) as client,
    ):
        store = manager["rgw"]

        async def aiostore_put(key: str, m: Measure | None) -> None:
            obj = await _timed(
                m, lambda: store.put(key, _stream(payload), size=size, overwrite=True)
            )
            assert obj.checksum == expected, "aiostore put: md5 differs"

        async def aiostore_get(key: str, m: Measure | None) -> None:
            async def read() -> str:
                digest = hashlib.md5()
                async with store.open(key) as reader:
                    async for chunk in reader:
                        digest.update(chunk)
                return digest.hexdigest()

            assert await _timed(m, read) == expected, "aiostore get: md5 differs"

        async def raw_put(key: str, m: Measure | None) -> None:
            await _timed(m, lambda: _raw_put(client, bucket, key, payload))

        async def raw_get(key: str, m: Measure | None) -> None:
            assert await _timed(m, lambda: _raw_get(client, bucket, key)) == expected

        async def raw_hash_put(key: str, m: Measure | None) -> None:
            await _timed(m, lambda: _raw_put(client, bucket, key, payload, hashed=True))

        contenders: dict[str, tuple[Any, Any, str]] = {
            "aiostore": (aiostore_put, aiostore_get, "aiostore.bin"),
            "aiobotocore": (raw_put, raw_get, "raw.bin"),
            "aiobotocore+hash": (raw_hash_put, None, "raw-hash.bin"),
        }
        for rnd in range(rounds + 1):  # round 0 warms up (connections, RGW caches)
            order = list(contenders) if rnd % 2 else list(reversed(contenders))
            for name in order:
                do_put, do_get, key = contenders[name]
                await do_put(key, put[name] if rnd else None)
                if do_get is not None:
                    await do_get(key, get[name] if rnd else None)
            if rnd:
                log(
                    f"round {rnd}: put "
                    + ", ".join(f"{n} {m.mbps()[-1]:.0f}" for n, m in put.items())
                    + "; get "
                    + ", ".join(f"{n} {m.mbps()[-1]:.0f}" for n, m in get.items())
                    + " MB/s"
                )
            if cluster is not None:
                await asyncio.to_thread(cluster.gc)
        for _, _, key in contenders.values():
            await store.delete(key)
    if cluster is not None:
        await asyncio.to_thread(cluster.gc)
    return BenchResult(size, rounds, put, get)


def main() -> None:
    from .ceph import running_cluster

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with running_cluster() as cluster:
        assert cluster.endpoint is not None
        result = asyncio.run(
            run_bench(
                cluster.endpoint, size=args.size_mib * MiB, rounds=args.rounds, cluster=cluster
            )
        )
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
