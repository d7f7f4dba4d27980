"""What one file-store probe costs: ``python -m benchmarks.file_probe_cost [DIR ...]``.

Runs 1,000 probes (after 50 warm-up probes) of a file store rooted in each DIR through the public
session API (``await session.probe()``: the thread hop included) and prints the wall time and the
process CPU time per probe in µs. Default directories: /dev/shm (tmpfs) and the system temporary
directory (usually disk).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

from aiostore import StoreManager

N = 1000


async def measure(directory: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=directory) as root:
        config = {"probe": {"enabled": False}, "stores": {"f": {"driver": "file", "root": root}}}
        async with StoreManager(config) as manager, manager.session("f") as session:
            for _ in range(50):
                await session.probe()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(N):
                result = await session.probe()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert all(v.healthy for v in result.values()), result
    return wall / N * 1e6, cpu / N * 1e6


def main() -> None:
    dirs = sys.argv[1:] or ["/dev/shm", tempfile.gettempdir()]
    for d in dirs:
        wall, cpu = asyncio.run(measure(d))
        print(f"{d}: {wall:.0f} µs wall, {cpu:.0f} µs CPU per probe ({N} probes)")


if __name__ == "__main__":
    main()
