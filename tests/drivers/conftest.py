"""Helpers for driver tests: file stores under ``tmp_path`` and a runner for scenarios that need
real mounts, each in a private mount namespace of its own."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiostore import StoreManager

#: Probe settings of the file stores built here: fast enough for health changes to show.
FAST_PROBE: dict[str, Any] = {"interval": 0.05, "timeout": 5.0}


def file_manager(
    root: Path | str, *, probe: dict[str, Any] | None = None, **options: Any
) -> StoreManager:
    """A manager with one file store ``"f"`` at ``root``."""
    probe = {**FAST_PROBE, **(probe or {})}
    table = {"driver": "file", "root": str(root), "probe": probe, **options}
    return StoreManager({"stores": {"f": table}})


def leftovers(root: Path) -> list[str]:
    """The driver's own files (temporary files, sidecars, probe files) under ``root``; its
    directory for named temporary files does not count, the files in it do."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if ".aiostore-" in p.relative_to(root).as_posix() and not p.is_dir()
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def open_fds_under(root: Path) -> list[str]:
    """Paths under ``root`` this process holds open."""
    real = os.path.realpath(root)
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == real or target.startswith(real + os.sep):
            found.append(target)
    return found


@functools.cache
def _namespaces_unavailable() -> str | None:
    """Why mount-namespace scenarios cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "needs root: the scenarios mount file systems (CI runs as root)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs unshare(1) and mount(8) (util-linux)"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"cannot create a mount namespace here: {probe.stderr.strip()}"
    return None


@pytest.fixture
def in_mount_namespace(tmp_path: Path) -> Callable[[Path, str], dict[str, Any]]:
    """``run(script, scenario)``: run ``python script scenario WORKDIR`` under
    ``unshare -m --propagation private`` (its mounts vanish with it, even when it crashes) and
    return the JSON object it prints last. Skips, saying why, where namespaces are impossible."""
    reason = _namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)

    def run(script: Path, scenario: str) -> dict[str, Any]:
        work = tmp_path / scenario
        work.mkdir()
        cmd = ["unshare", "-m", "--propagation", "private", sys.executable, str(script)]
        proc = subprocess.run(
            [*cmd, scenario, str(work)], capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            pytest.fail(
                f"scenario {scenario!r} exited with {proc.returncode}\n--- stdout\n{proc.stdout}"
                f"\n--- stderr\n{proc.stderr}",
                pytrace=False,
            )
        lines = proc.stdout.strip().splitlines()
        if not lines:
            pytest.fail(f"scenario {scenario!r} printed nothing\n{proc.stderr}", pytrace=False)
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    return run
