"""Cancellation at random points leaks nothing: no file descriptor, task, temp file, session or
partial object, and an existing object survives a cancelled overwrite."""

from __future__ import annotations

import asyncio
import gc
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio

import aiostore

from .model import payload, version_of


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _slow_source(data: bytes, chunk: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        await asyncio.sleep(0)
        yield data[i : i + chunk]


async def test_cancelled_puts_and_reads_leak_nothing(
    store_config: Callable[..., dict[str, Any]], driver_name: str, tmp_path: Path
) -> None:
    """Cancel 60 puts and 60 reads at random points with asyncio.timeout and anyio scopes."""
    # No background probes: an in-flight probe legitimately holds the session and sockets.
    config = {"probe": {"enabled": False}, "stores": {"s": store_config()}}
    async with aiostore.StoreManager(config) as manager:
        await _cancel_everything(manager["s"], driver_name, tmp_path)


async def _cancel_everything(store: aiostore.Store, driver_name: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    base = payload("keep", 1, 2 * 1024 * 1024)
    await store.put("keep", base)
    await store.read("keep")  # warm the shared session before counting descriptors
    before = _fds()
    cancelled = 0
    started = {1: len(base)}
    for i in range(60):
        big = payload("keep", 1000 + i, rng.choice([300_000, 3 * 1024 * 1024]))
        delay = rng.uniform(0, 0.01)
        if i % 2:
            try:
                async with asyncio.timeout(delay):
                    await store.put("keep", _slow_source(big, 65536), overwrite=True)
            except TimeoutError:
                cancelled += 1
        else:
            with anyio.move_on_after(delay) as scope:
                await store.put("keep", _slow_source(big, 65536), overwrite=True)
            cancelled += scope.cancelled_caught
        data = await store.read("keep")
        if driver_name == "s3":
            # An S3 PUT whose body was fully sent can still complete on the server after the
            # client gave up; S3 has no way to take it back. The object is always whole.
            started[1000 + i] = len(big)
            version = version_of(data)
            assert version in started and data == payload("keep", version, started[version])
        else:
            # Either the overwrite completed (then it is whole) or the old object is untouched:
            # a cancelled put never commits later behind the caller's back.
            assert data in (base, big)
        base = data
        with anyio.move_on_after(rng.uniform(0, 0.005)):
            async with store.open("keep", offset=rng.randrange(0, 1000)) as reader:
                async for _ in reader:
                    await asyncio.sleep(0)
    assert cancelled > 10, "the test did not cancel enough operations to mean anything"
    gc.collect()
    await asyncio.sleep(0.05)
    assert _fds() <= before, "file descriptors leaked"
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert all(t.get_name().startswith("aiostore-") for t in others), others
    stats = store.statistics()["sessions"]
    assert stats["users"] == 0
    if driver_name == "file":
        leftovers = [p.name for p in (tmp_path / "root").rglob("*") if "tmp" in p.name]
        assert leftovers == []
    keys = [info.key async for info in store.list()]
    assert keys == ["keep"]
