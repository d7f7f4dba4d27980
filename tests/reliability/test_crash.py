"""Crash safety of the file driver: a writer SIGKILLed at random points of large puts, again and
again; after each restart no partial object is visible, and existing objects are intact."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aiostore

from .model import payload, version_of

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("aiostore.drivers.file") is None,
    reason="the file driver is not built yet",
)
ROUNDS = 20
REPO = Path(__file__).resolve().parents[2]


async def _check(root: Path, stable: dict[str, str]) -> tuple[int, int]:
    config = {"probe": {"enabled": False}, "stores": {"f": {"driver": "file", "root": str(root)}}}
    verified = 0
    async with aiostore.StoreManager(config) as manager:
        store = manager["f"]
        for key, digest in stable.items():
            data = await store.read(key)
            assert hashlib.sha256(data).hexdigest() == digest, f"{key} was damaged"
            verified += len(data)
        listed = [info async for info in store.list()]
        for info in listed:
            assert info.key.startswith(("stable/", "obj/")), f"stray entry listed: {info.key}"
            if info.key.startswith("obj/"):
                data = await store.read(info.key)
                version = version_of(data)
                assert version is not None, f"{info.key}: partial or torn object"
                assert data == payload(info.key, version, len(data)), f"{info.key}: torn object"
                assert info.size == len(data)
                meta = (await store.stat(info.key)).metadata
                assert meta.get("v") == str(version), "metadata does not belong to the object"
                verified += len(data)
    return len(listed), verified


def test_sigkill_during_large_puts_leaves_no_partial_object(tmp_path: Path) -> None:
    """20 × SIGKILL at a random moment of a stream of 1-8 MiB overwrites."""
    root = tmp_path / "root"
    rng = random.Random(1234)
    stable: dict[str, str] = {}

    async def seed() -> None:
        config = {"stores": {"f": {"driver": "file", "root": str(root)}}}
        async with aiostore.StoreManager(config) as manager:
            for i in range(3):
                data = os.urandom(3 * 1024 * 1024 + i)
                await manager["f"].put(f"stable/{i}", data)
                stable[f"stable/{i}"] = hashlib.sha256(data).hexdigest()

    asyncio.run(seed())
    acked = 0
    verified = 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_ in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash_child", str(root), str(round_ + 1)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=env,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.strip() == "ready", child.stderr.read() if child.stderr else line
            time.sleep(rng.uniform(0.02, 0.6))
            child.send_signal(signal.SIGKILL)
            out, _ = child.communicate(timeout=10)
            acked += out.count("acked")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL
        _, v = asyncio.run(_check(root, stable))
        verified += v
    print(
        f"\n[reliability] crash: {ROUNDS} SIGKILLs survived, {acked} puts acknowledged,"
        f" {verified} bytes verified"
    )
