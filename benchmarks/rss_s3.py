"""Peak RSS growth of one large S3 put with the driver's default options (issue 16, item 3).

moto runs in a process of its own; each put runs in a fresh client process, which warms up
(client created, one small put), resets its high-water mark (``/proc/self/clear_refs``), streams
the object from 1 MiB chunks (a fresh ``bytes`` per chunk, as a real source would hand out) and
reports ``VmHWM - VmRSS(before)``::

    python -m benchmarks.rss_s3 256 2048          # sizes in MiB
    python -m benchmarks.rss_s3 --endpoint http://127.0.0.1:5000 256

The goal is at most 64 MiB of growth at any object size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ._harness import ServerProcess, free_port

MiB = 1 << 20
BUCKET = "rss"
CREDENTIALS = {"access_key": "rss-access", "secret_key": "rss-secret"}


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS


async def _client(endpoint: str, size: int, options: dict[str, Any]) -> dict[str, Any]:
    from aiostore import StoreManager

    config = {
        "probe": {"interval": 3600},
        "stores": {
            "s3": {
                "driver": "s3",
                "bucket": BUCKET,
                "endpoint_url": endpoint,
                "create_bucket": True,
                **CREDENTIALS,
                **options,
            }
        },
    }
    block = os.urandom(MiB)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(size // MiB):
            yield bytes(memoryview(block))  # a fresh 1 MiB object per chunk

    async with StoreManager(config) as manager:
        store = manager["s3"]
        await store.put("warm", b"x" * 4096, overwrite=True)
        _reset_hwm()
        rss0 = _kib("VmRSS")
        started = time.perf_counter()
        cpu0 = time.process_time()
        stored = await store.put("big", source(), overwrite=True)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        hwm = _kib("VmHWM")
        assert stored.size == size
        await store.delete("big")
    return {
        "size_mib": size // MiB,
        "growth_mib": round((hwm - rss0) / 1024, 1),
        "rss0_mib": round(rss0 / 1024, 1),
        "mb_s": round(size / wall / 1e6, 1),
        "cpu_s": round(cpu, 2),
    }


def measure(endpoint: str, size_mib: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One put of ``size_mib`` MiB in a fresh process; its figures."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.rss_s3",
            "--client",
            endpoint,
            json.dumps(options or {}),
            str(size_mib),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[256, 2048], help="MiB")
    parser.add_argument("--endpoint", help="an S3 server (default: moto in its own process)")
    parser.add_argument("--options", default="{}", help="driver options as JSON")
    parser.add_argument(
        "--client", nargs=2, metavar=("ENDPOINT", "OPTIONS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.client:
        endpoint, options = args.client
        (size,) = args.sizes
        print(json.dumps(asyncio.run(_client(endpoint, size * MiB, json.loads(options)))))
        return
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        log = Path(tempfile.gettempdir()) / f"rss-s3-moto-{port}.log"
        server = ServerProcess(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], endpoint, log
        )
    try:
        for size in args.sizes:
            print(json.dumps(measure(endpoint, size, json.loads(args.options))), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
