"""Crash leftovers of the file driver (issue 15 #8): writers SIGKILLed mid-put leave nothing a
running store does not reclaim at once — on a file system with O_TMPFILE (this machine's), an
unfinished put has no name at all. (Without O_TMPFILE: tests/drivers/test_file_hardening.py.)"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aiostore

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 6


def _mid_put(pid: int, root: Path) -> bool:
    """True while process ``pid`` holds a file under ``root`` open for writing a put."""
    real = os.path.realpath(root)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(real + os.sep) and (
            target.endswith("(deleted)") or ".aiostore-tmp" in target
        ):
            return True
    return False


def _internal_files(root: Path) -> list[str]:
    """Temporary and probe files under ``root`` (sidecars are not leftovers)."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if ".aiostore-" in p.relative_to(root).as_posix()
        and not p.is_dir()
        and "aiostore-meta-" not in p.name
    )


def _kill_mid_put(root: Path, seed: int) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_child", str(root), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(random.Random(seed).uniform(0.05, 0.3))
        deadline = time.monotonic() + 20
        while not _mid_put(child.pid, root):
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never was mid-put"
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL


async def test_writers_killed_mid_put_leave_nothing_behind_a_running_store(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    config = {"probe": {"interval": 0.05}, "stores": {"f": {"driver": "file", "root": str(root)}}}
    async with aiostore.StoreManager(config) as manager:
        store = manager["f"]
        await store.put("kept", b"kept", metadata={"v": "1"})
        right_after = []
        for seed in range(1, ROUNDS + 1):
            await asyncio.to_thread(_kill_mid_put, root, seed)
            right_after.append(_internal_files(root))
            for _ in range(100):  # up to 5 s of probes every 50 ms
                if not _internal_files(root):
                    break
                await asyncio.sleep(0.05)
            assert _internal_files(root) == [], f"round {seed}: not reclaimed while running"
        # With O_TMPFILE a killed put has no name to leave (at most an overwrite's name for the
        # microseconds between its link and its rename).
        assert sum(1 for files in right_after if files) <= 1, right_after
        assert await store.read("kept") == b"kept"
        for info in [i async for i in store.list("obj/")]:
            assert info.size == len(await store.read(info.key))


@pytest.fixture(autouse=True)
def _needs_o_tmpfile(tmp_path: Path) -> None:
    try:
        fd = os.open(tmp_path, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except (AttributeError, OSError) as exc:
        pytest.skip(f"the test directory's file system has no O_TMPFILE: {exc}")
    os.close(fd)
