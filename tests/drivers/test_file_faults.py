"""Real faults under the file driver, made with real mounts.

Each scenario runs in a child process under ``unshare -m --propagation private`` (see the
``in_mount_namespace`` fixture): it mounts what it needs, runs a store against it, and prints its
observations as JSON, which the test asserts on. The mounts vanish with the child, even when it
crashes. This module is that child too: ``python test_file_faults.py SCENARIO WORKDIR``.
Scenarios skip, saying why, only where mount namespaces are impossible (not root).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__)
MiB = 1024 * 1024
Observations = dict[str, Any]

# -- the child side ---------------------------------------------------------------------------


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _manager(root: Path, **options: Any) -> Any:
    from aiostore import StoreManager

    probe = {"interval": 0.05, "timeout": 5.0, **options.pop("probe", {})}
    return StoreManager(
        {"stores": {"f": {"driver": "file", "root": str(root), "probe": probe, **options}}}
    )


def _caps(store: Any) -> list[str]:
    return list(store.capabilities.names)


async def _until(store: Any, capability: Any, present: bool = True) -> float:
    """Seconds until ``capability`` is (or is no longer) held; raises after 10 s."""
    started = time.monotonic()
    async with asyncio.timeout(10):
        await store.wait_for(capability, present=present)
    return time.monotonic() - started


def _tmp_files(root: Path) -> list[str]:
    """The driver's temporary files and sidecars (not the prober's file: it probes meanwhile)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if ".aiostore-" in p.name and not p.name.startswith(".aiostore-probe-")
    )


async def _error_of(awaitable: Awaitable[Any]) -> str | None:
    try:
        await awaitable
    except Exception as exc:
        return type(exc).__name__
    return None


async def scenario_tmpfs_full(work: Path) -> Observations:
    """A 2 MiB tmpfs: a 3 MiB put fails with StorageFull and revokes WRITE_ACCESS at once; the
    prober restores it after the file system grows."""
    from aiostore import Capability

    mnt = work / "mnt"
    mnt.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt))
    root = mnt / "store"
    obs: Observations = {}
    # The probe alone must not revoke here (the test is about the passive signal), and the
    # minimum keeps the store revoked while the disk stays nearly full.
    probe = {"failures_to_revoke": 1000, "successes_to_restore": 2}
    async with _manager(root, min_free_bytes=1 * MiB, probe=probe) as manager:
        store = manager["f"]
        obs["caps_at_start"] = _caps(store)
        await store.put("filler", b"f" * (1 * MiB + MiB // 2))
        obs["filler_ok"] = await store.read("filler") == b"f" * (1 * MiB + MiB // 2)
        try:
            await store.put("big", b"x" * (3 * MiB))
        except Exception as exc:
            obs["put_error"] = type(exc).__name__
            obs["put_error_message"] = str(exc)
            obs["put_error_cause_errno"] = getattr(exc.__cause__, "errno", None)
        obs["caps_after_put"] = _caps(store)
        obs["big_exists"] = await store.exists("big")
        obs["tmp_files_after_put"] = _tmp_files(root)
        obs["put_now"] = await _error_of(store.put("more", b"y"))
        await asyncio.sleep(0.3)  # several probes: still full, still revoked
        obs["caps_while_full"] = _caps(store)
        obs["reason_while_full"] = store.health.capabilities["WRITE_ACCESS"].reason
        sh("mount", "-o", "remount,size=16m", str(mnt))
        obs["restored_after"] = await _until(store, Capability.WRITE_ACCESS)
        await store.put("big", b"x" * (3 * MiB))
        obs["big_after_grow"] = (await store.stat("big")).size
        obs["filler_intact"] = await store.read("filler", length=4) == b"ffff"
    return obs


async def scenario_readonly_bind(work: Path) -> Observations:
    """A bind mount switched read-only: EROFS → StorageWriteDenied, revoked at once while reads
    go on; switched back read-write: the prober restores writes."""
    from aiostore import Capability

    a, b = work / "a", work / "b"
    a.mkdir()
    b.mkdir()
    sh("mount", "--bind", str(a), str(b))
    root = b / "store"
    obs: Observations = {}
    async with _manager(root, probe={"failures_to_revoke": 1000}) as manager:
        store = manager["f"]
        await store.put("kept", b"kept", metadata={"m": "1"})
        sh("mount", "-o", "remount,ro,bind", str(b))
        try:
            await store.put("new", b"data" * 100_000)
        except Exception as exc:
            obs["put_error"] = type(exc).__name__
            obs["put_error_cause_errno"] = getattr(exc.__cause__, "errno", None)
        obs["caps_after_put"] = _caps(store)
        obs["read_while_ro"] = (await store.read("kept")).decode()
        obs["meta_while_ro"] = dict((await store.stat("kept")).metadata)
        obs["put_now"] = await _error_of(store.put("new", b"x"))
        obs["delete_now"] = await _error_of(store.delete("kept"))
        await asyncio.sleep(0.2)
        obs["reason_while_ro"] = store.health.capabilities["WRITE_ACCESS"].reason
        sh("mount", "-o", "remount,rw,bind", str(b))
        obs["restored_after"] = await _until(store, Capability.WRITE_ACCESS)
        await store.put("new", b"x")
        obs["new_after"] = (await store.read("new")).decode()
        obs["tmp_files"] = _tmp_files(root)
    return obs


async def scenario_root_under_readonly_parent(work: Path) -> Observations:
    """The root's parent is read-only at start-up: the store still starts, the start-up probe
    revokes; once the parent turns writable, a probe creates the root and restores."""
    from aiostore import Capability

    parent = work / "parent"
    parent.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "ro,size=4m", "tmpfs", str(parent))
    root = parent / "store"
    obs: Observations = {}
    async with _manager(root, probe={"successes_to_restore": 2}) as manager:
        store = manager["f"]
        obs["configured"] = list(store.configured_capabilities.names)
        obs["caps_at_start"] = _caps(store)
        obs["reason_at_start"] = store.health.capabilities["WRITE_ACCESS"].reason
        obs["put_at_start"] = await _error_of(store.put("x", b"x"))
        sh("mount", "-o", "remount,rw", str(parent))
        obs["restored_after"] = await _until(store, Capability.WRITE_ACCESS)
        obs["caps_after"] = _caps(store)
        obs["root_is_dir"] = root.is_dir()
        await store.put("x", b"hello")
        obs["read_after"] = (await store.read("x")).decode()
    return obs


async def scenario_mount_appears_later(work: Path) -> Observations:
    """The late network mount: at start-up the mount point is an empty read-only placeholder;
    later the real file system (with objects on it) is mounted there."""
    from aiostore import Capability

    mnt, staging = work / "mnt", work / "staging"
    mnt.mkdir()
    staging.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt))
    root = mnt / "data"
    obs: Observations = {}
    async with _manager(root) as manager:
        store = manager["f"]
        obs["caps_at_start"] = _caps(store)
        obs["reason_at_start"] = store.health.capabilities["READ_ACCESS"].reason
        obs["read_at_start"] = await _error_of(store.read("hello"))
        # The real file system arrives, already holding an object.
        sh("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(staging))
        (staging / "data").mkdir()
        (staging / "data" / "hello").write_bytes(b"from the late mount")
        sh("mount", "--bind", str(staging), str(mnt))
        obs["read_restored_after"] = await _until(store, Capability.READ_ACCESS)
        obs["write_restored_after"] = await _until(store, Capability.WRITE_ACCESS)
        obs["read_after"] = (await store.read("hello")).decode()
        await store.put("new", b"n")
        obs["listed"] = [i.key async for i in store.list()]
    return obs


async def scenario_no_user_xattrs(work: Path) -> Observations:
    """ramfs has no user xattrs: metadata goes to inode-keyed sidecars, still atomic with the
    object; create-only puts stay atomic; listings hide the sidecars."""
    import aiostore

    mnt = work / "ramfs"
    mnt.mkdir()
    sh("mount", "-t", "ramfs", "ramfs", str(mnt))
    root = mnt / "store"
    obs: Observations = {}
    try:
        os.setxattr(mnt, "user.probe", b"1")
        obs["ramfs_has_user_xattrs"] = True
    except OSError:
        obs["ramfs_has_user_xattrs"] = False
    async with _manager(root, chunk_size=64 * 1024) as manager:
        store = manager["f"]
        obs["caps"] = _caps(store)
        await store.put("d/obj", b"one", metadata={"v": "1", "ü": ["x"]})
        obs["meta"] = dict((await store.stat("d/obj")).metadata)
        obs["files_after_put"] = _tmp_files(root)
        obs["ino"] = (root / "d" / "obj").stat().st_ino
        await store.put("d/obj", b"two" * 50_000, metadata={"v": "2"}, overwrite=True)
        obs["ino2"] = (root / "d" / "obj").stat().st_ino
        obs["files_after_overwrite"] = _tmp_files(root)
        obs["listed"] = [[i.key, dict(i.metadata)] async for i in store.list()]
        results = await asyncio.gather(
            *(store.put("race", bytes([i]) * 1000, metadata={"i": str(i)}) for i in range(20)),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if isinstance(r, aiostore.StoredObject)]
        obs["race_winners"] = len(winners)
        obs["race_losers"] = sorted({type(r).__name__ for r in results if isinstance(r, Exception)})
        obs["race_meta_matches"] = dict((await store.stat("race")).metadata) == {
            "i": str(winners[0])
        } and await store.read("race", length=1) == bytes([winners[0]])
        await store.delete("d/obj")
        await store.delete("race")
        obs["files_after_delete"] = _tmp_files(root)
    return obs


SCENARIOS: dict[str, Callable[[Path], Awaitable[Observations]]] = {
    "tmpfs_full": scenario_tmpfs_full,
    "readonly_bind": scenario_readonly_bind,
    "root_under_readonly_parent": scenario_root_under_readonly_parent,
    "mount_appears_later": scenario_mount_appears_later,
    "no_user_xattrs": scenario_no_user_xattrs,
}


# -- the tests ----------------------------------------------------------------------------------

Run = Callable[[Path, str], Observations]
WRITE_NAMES = {"WRITE_ACCESS", "WRITE_OFFSET", "WRITE_CHUNK", "WRITE_RANDOM"}
READ_NAMES = {"READ_ACCESS", "READ_OFFSET", "READ_CHUNK", "READ_RANDOM"}


@pytest.mark.needs_root
def test_a_full_tmpfs_revokes_writes_until_it_grows(in_mount_namespace: Run) -> None:
    obs = in_mount_namespace(HERE, "tmpfs_full")
    assert "WRITE_ACCESS" in obs["caps_at_start"]
    assert obs["filler_ok"]
    assert obs["put_error"] == "StorageFull", obs
    assert obs["put_error_cause_errno"] == 28  # ENOSPC, chained as __cause__
    assert "key 'big'" in obs["put_error_message"] and "store 'f'" in obs["put_error_message"]
    assert not WRITE_NAMES & set(obs["caps_after_put"])  # revoked at once, passively
    assert set(obs["caps_after_put"]) >= READ_NAMES
    assert obs["big_exists"] is False
    assert obs["tmp_files_after_put"] == []  # no partial file, no temp file
    assert obs["put_now"] == "StoreAddDisabled"  # refused before any I/O now
    assert not WRITE_NAMES & set(obs["caps_while_full"])
    assert obs["reason_while_full"].startswith("disk full:")
    assert "< min_free_bytes 1.0 MiB" in obs["reason_while_full"]
    assert obs["restored_after"] < 5
    assert obs["big_after_grow"] == 3 * MiB
    assert obs["filler_intact"]


@pytest.mark.needs_root
def test_a_read_only_bind_mount_revokes_writes_until_it_is_writable(
    in_mount_namespace: Run,
) -> None:
    obs = in_mount_namespace(HERE, "readonly_bind")
    assert obs["put_error"] == "StorageWriteDenied", obs
    assert obs["put_error_cause_errno"] == 30  # EROFS
    assert not WRITE_NAMES & set(obs["caps_after_put"])
    assert set(obs["caps_after_put"]) >= READ_NAMES
    assert obs["read_while_ro"] == "kept" and obs["meta_while_ro"] == {"m": "1"}
    assert obs["put_now"] == "StoreAddDisabled"
    assert obs["delete_now"] == "StoreDeleteNotSupported"
    assert obs["reason_while_ro"] == "read-only file system"
    assert obs["restored_after"] < 5
    assert obs["new_after"] == "x"
    assert obs["tmp_files"] == []


@pytest.mark.needs_root
def test_a_root_under_a_read_only_parent_is_created_when_it_can_be(
    in_mount_namespace: Run,
) -> None:
    obs = in_mount_namespace(HERE, "root_under_readonly_parent")
    assert "WRITE_RANDOM" in obs["configured"]  # configured keeps it: probes can restore it
    assert not WRITE_NAMES & set(obs["caps_at_start"])
    assert obs["reason_at_start"].startswith("root missing:"), obs["reason_at_start"]
    assert "EROFS" in obs["reason_at_start"]
    assert obs["put_at_start"] == "StoreAddDisabled"
    assert obs["restored_after"] < 5
    assert set(obs["caps_after"]) >= WRITE_NAMES | READ_NAMES
    assert obs["root_is_dir"]
    assert obs["read_after"] == "hello"


@pytest.mark.needs_root
def test_a_mount_that_appears_after_start_up_restores_the_store(
    in_mount_namespace: Run,
) -> None:
    obs = in_mount_namespace(HERE, "mount_appears_later")
    assert not (WRITE_NAMES | READ_NAMES) & set(obs["caps_at_start"])
    assert obs["reason_at_start"].startswith("root missing:")
    assert obs["read_at_start"] == "StoreGetNotSupported"
    assert obs["read_restored_after"] < 5 and obs["write_restored_after"] < 5
    assert obs["read_after"] == "from the late mount"
    assert obs["listed"] == ["hello", "new"]


@pytest.mark.needs_root
def test_without_user_xattrs_metadata_lives_in_inode_keyed_sidecars(
    in_mount_namespace: Run,
) -> None:
    obs = in_mount_namespace(HERE, "no_user_xattrs")
    assert obs["ramfs_has_user_xattrs"] is False  # else this tests nothing
    assert obs["meta"] == {"v": "1", "ü": ["x"]}
    assert obs["files_after_put"] == [f"d/.obj.aiostore-meta-{obs['ino']}"]
    assert obs["files_after_overwrite"] == [f"d/.obj.aiostore-meta-{obs['ino2']}"]
    assert obs["listed"] == [["d/obj", {"v": "2"}]]
    assert obs["race_winners"] == 1 and obs["race_losers"] == ["Duplicate"]
    assert obs["race_meta_matches"]
    assert obs["files_after_delete"] == []


if __name__ == "__main__":
    name, workdir = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(asyncio.run(SCENARIOS[name](workdir))))
