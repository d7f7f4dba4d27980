"""Concurrency consistency: hundreds of tasks racing on a few keys never see a torn, mixed or
unacknowledged object, and create-only puts have exactly one winner."""

from __future__ import annotations

import asyncio
import itertools
import random

import aiostore
from aiostore import Duplicate, NotFound

from .model import HEADER, Model, payload

TASKS = 200
KEYS = [f"k/{i}" for i in range(6)]
SIZES = [HEADER, 100, 4096, 70_000, 300_000]


async def _worker(
    store: aiostore.Store, model: Model, rng: random.Random, ops: int, ids: itertools.count[int]
) -> None:
    for _ in range(ops):
        key = rng.choice(KEYS)
        op = rng.random()
        if op < 0.30:
            version, size = next(ids), rng.choice(SIZES)
            model.start(key, version, size)
            try:
                await store.put(key, payload(key, version, size), overwrite=True)
            except BaseException:
                model.fail(key, version)
                raise
            model.ack(key, version)
        elif op < 0.40:
            version, size = next(ids), rng.choice(SIZES)
            model.start(key, version, size)
            try:
                await store.put(key, payload(key, version, size), overwrite=False)
            except Duplicate:
                model.fail(key, version)
            else:
                model.ack(key, version)
        elif op < 0.70:
            try:
                data = await store.read(key)
            except NotFound:
                model.ops += 1
            else:
                model.check_whole(key, data)
        elif op < 0.90:
            offset, length = rng.randrange(0, 5000), rng.randrange(1, 5000)
            try:
                data = await store.read(key, offset=offset, length=length)
            except NotFound:
                model.ops += 1
            else:
                model.check_range(key, data, offset, length)
        else:
            try:
                await store.delete(key)
            except NotFound:
                pass
            model.ops += 1


async def test_random_operations_stay_consistent(
    manager: aiostore.StoreManager, driver_name: str
) -> None:
    """≥200 tasks of put/overwrite/create-only/read/ranged read/delete; every read is one
    started version, whole; the final state holds only acknowledged versions."""
    store = manager["s"]
    model = Model()
    ids = itertools.count(1)
    ops = 3 if driver_name == "s3" else 8
    await asyncio.gather(
        *(_worker(store, model, random.Random(seed), ops, ids) for seed in range(TASKS))
    )
    for key in KEYS:
        try:
            data = await store.read(key)
        except NotFound:
            continue
        model.check_whole(key, data, final=True)
    assert model.violations == []
    assert model.ops >= TASKS * ops * 0.5
    listed = {info.key async for info in store.list("k/")}
    for key in listed:
        assert key in KEYS  # no temp or partial object is listed
    print(f"\n[reliability] {driver_name}: {model.ops} ops, {model.bytes_verified} bytes verified")


async def test_create_only_has_exactly_one_winner(manager: aiostore.StoreManager) -> None:
    """50 concurrent create-only puts of one key: one succeeds, 49 get Duplicate, and the
    object is the winner's."""
    store = manager["s"]
    key = "race/one"

    async def attempt(version: int) -> int | None:
        try:
            await store.put(key, payload(key, version, 50_000))
        except Duplicate:
            return None
        return version

    results = await asyncio.gather(*(attempt(v) for v in range(1, 51)))
    winners = [v for v in results if v is not None]
    assert len(winners) == 1
    assert await store.read(key) == payload(key, winners[0], 50_000)
