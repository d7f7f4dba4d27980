"""Child process for the crash-safety test: writes large objects forever until SIGKILLed."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator

import aiostore
from tests.reliability.model import payload


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 256 * 1024):
        yield data[i : i + 256 * 1024]
        await asyncio.sleep(0)


async def main(root: str, seed: int) -> None:
    rng = random.Random(seed)
    config = {"probe": {"enabled": False}, "stores": {"f": {"driver": "file", "root": root}}}
    async with aiostore.StoreManager(config) as manager:
        store = manager["f"]
        print("ready", flush=True)
        version = seed * 1_000_000
        while True:
            version += 1
            key = f"obj/{rng.randrange(3)}"
            data = payload(key, version, rng.choice([1, 4, 8]) * 1024 * 1024)
            await store.put(key, chunks(data), overwrite=True, metadata={"v": str(version)})
            print(f"acked {key} {version} {len(data)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
