"""Hardening of the file driver (issues 14 and 15): one read is one version, no empty directory
blocks a key, every valid key is accepted (as by the memory store), a full store is reported as
*full*, crash leftovers are reclaimed while the store runs, and a put hung in a system call can be
cancelled at once without ever committing.

The scenarios that need real mounts (tmpfs, ramfs, a FUSE file system whose writes hang) run in a
child process under ``unshare -m`` (see ``in_mount_namespace`` in conftest.py); this module is
that child too: ``python test_file_hardening.py SCENARIO WORKDIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__)
REPO = HERE.resolve().parents[2]
KiB = 1024
MiB = 1024 * KiB
Observations = dict[str, Any]
Run = Callable[[Path, str], Observations]


def _manager(root: Path, **options: Any) -> Any:
    from aiostore import StoreManager

    probe = {"interval": 0.05, "timeout": 5.0, **options.pop("probe", {})}
    table = {"driver": "file", "root": str(root), "probe": probe, **options}
    return StoreManager({"stores": {"f": table}})


def _temp_files(root: Path) -> list[str]:
    """Temporary files under ``root`` (not sidecars, not directories)."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_dir() or "aiostore-meta-" in p.name:
            continue
        if any(part.startswith(".") and ".aiostore-" in part for part in rel.split("/")):
            out.append(rel)
    return sorted(out)


async def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def body(version: int, size: int) -> bytes:
    """A body that names its version in every 10 bytes: any mix of two versions shows."""
    unit = b"%09d|" % version
    return (unit * (size // len(unit) + 1))[:size]


# -- the child side: scenarios on real mounts -------------------------------------------------


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _spawn(*cmd: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, text=True, **kw)


@contextlib.asynccontextmanager
async def _fuse(work: Path) -> AsyncIterator[tuple[Path, Path, Path]]:
    """A stalling passthrough FUSE file system (fuse_stall.py): (mountpoint, backing, control)."""
    backing, mnt, control = work / "backing", work / "mnt", work / "control"
    for d in (backing, mnt, control):
        d.mkdir()
    fuse = str(HERE.parent / "fuse_stall.py")
    server = _spawn(sys.executable, fuse, str(backing), str(mnt), str(control))
    try:
        mounted = await _eventually(lambda: os.path.ismount(mnt) or server.poll() is not None)
        assert mounted and server.poll() is None, "the FUSE file system did not mount"
        yield mnt, backing, control
    finally:
        (control / "stall").unlink(missing_ok=True)
        _stop_fuse(server, mnt)


def _stop_fuse(server: subprocess.Popen[str], mnt: Path) -> None:
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def scenario_fuse_stalled_put(work: Path) -> Observations:
    """A put whose write(2) hangs in a FUSE file system: cancelled, control comes back at once;
    after the file system wakes up, nothing was committed and no temporary file remains."""
    from aiostore import errors

    obs: Observations = {}
    fuse = _fuse(work)
    async with (
        fuse as (mnt, backing, control),
        _manager(mnt / "store", probe={"enabled": False}) as manager,
    ):
        store = manager["f"]
        await store.put("kept", b"old version", metadata={"v": "old"})
        for key, overwrite in (("new", False), ("kept", True)):
            (control / "stall").touch()
            with contextlib.suppress(FileNotFoundError):
                (control / "stalled").unlink()
            data = body(7, 3 * MiB)
            task = asyncio.create_task(store.put(key, data, overwrite=overwrite))
            # A write hangs in the kernel now.
            assert await _eventually(lambda t=task: (control / "stalled").exists() or t.done())
            assert not task.done(), task
            await asyncio.sleep(0.1)
            # A safety net for a driver that waits for its thread: release after 4 s.
            releaser = asyncio.get_running_loop().call_later(
                4, lambda: (control / "stall").unlink(missing_ok=True)
            )
            started = time.monotonic()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                obs[f"{key}_outcome"] = "cancelled"
            except Exception as exc:
                obs[f"{key}_outcome"] = type(exc).__name__
            else:
                obs[f"{key}_outcome"] = "completed"
            obs[f"{key}_cancel_took"] = time.monotonic() - started
            releaser.cancel()
            obs[f"{key}_temp_while_hung"] = bool(_temp_files(backing / "store"))
            (control / "stall").unlink(missing_ok=True)  # the file system wakes up
            await _eventually(lambda: not _temp_files(backing / "store"))
            await asyncio.sleep(0.2)  # an abandoned thread that could still commit would now
            obs[f"{key}_temp_after"] = _temp_files(backing / "store")
            try:
                got = await store.read(key)
                obs[f"{key}_after"] = got.decode() if len(got) < 100 else f"{len(got)} bytes"
            except errors.NotFound:
                obs[f"{key}_after"] = None
        obs["kept_meta"] = dict((await store.stat("kept")).metadata)
        obs["listed"] = [info.key async for info in store.list()]
    return obs


async def scenario_tmpfs_free_space_verdicts(work: Path) -> Observations:
    """The probe's WRITE_ACCESS verdict on a real 2 MiB tmpfs: *full* (not a plain failure)
    below min_free_bytes and when the file system is completely full; a plain failure when
    read-only."""
    from aiostore import Capability

    mnt = work / "mnt"
    mnt.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt))
    root = mnt / "store"
    obs: Observations = {}

    def verdict_of(result: Any) -> dict[str, Any]:
        v = result[Capability.WRITE_ACCESS]
        return {"healthy": v.healthy, "full": v.out_of_space, "reason": v.reason}

    async with _manager(root, min_free_bytes=MiB, probe={"enabled": False}) as manager:
        store = manager["f"]
        async with manager.session("f") as session:
            obs["empty"] = verdict_of(await session.probe())
            await store.put("filler", b"f" * (MiB + MiB // 2))
            obs["below_minimum"] = verdict_of(await session.probe())
            await store.delete("filler")
            obs["after_delete"] = verdict_of(await session.probe())
    async with _manager(root, probe={"enabled": False}) as manager:
        # Fill the file system to the last block behind the store's back.
        fd = os.open(mnt / "ballast", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"b" * 4096)
        finally:
            os.close(fd)
        async with manager.session("f") as session:
            obs["enospc"] = verdict_of(await session.probe())
        os.unlink(mnt / "ballast")
        sh("mount", "-o", "remount,ro", str(mnt))
        async with manager.session("f") as session:
            obs["read_only"] = verdict_of(await session.probe())
    return obs


async def scenario_fuse_dead_writer_reclaimed(work: Path) -> Observations:
    """On a FUSE file system (no O_TMPFILE, no user xattrs) a writer process SIGKILLed mid-put
    leaves a temporary file; a store that is running reclaims it within a few probes, while the
    temporary file of its own put in progress (a stalled client) stays and still commits."""
    obs: Observations = {}
    async with _fuse(work) as (mnt, _, _), _manager(mnt / "store") as manager:
        root = mnt / "store"
        store = manager["f"]
        release = asyncio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield b"s" * (2 * MiB)  # past chunk_size: the temporary file exists
            await release.wait()
            yield b"t" * 10

        live = asyncio.create_task(store.put("live", stalled()))
        assert await _eventually(lambda: bool(_temp_files(root)))
        own = _temp_files(root)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for seed in range(3, 10):  # until a kill lands mid-put (not between two puts)
            child = _spawn(
                sys.executable, "-m", "tests.reliability.crash_child", str(root), str(seed),
                stdout=subprocess.PIPE, cwd=REPO, env=env,
            )  # fmt: skip
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            # Kill the child mid-put: while its temporary file exists.
            assert await _eventually(lambda: len(_temp_files(root)) > len(own), 20)
            child.kill()
            child.wait()
            if len(_temp_files(root)) > len(own):
                break
        obs["after_kill"] = len(_temp_files(root)) - len(own)
        started = time.monotonic()
        await _eventually(lambda: _temp_files(root) == own, 5)
        obs["reclaimed_after"] = time.monotonic() - started
        obs["left"] = [name for name in _temp_files(root) if name not in own]
        obs["own_kept"] = _temp_files(root) == own
        await asyncio.sleep(0.3)  # more probes: a live put's file is never taken
        obs["own_kept_later"] = _temp_files(root) == own
        release.set()
        await live
        obs["live_size"] = (await store.stat("live")).size
        obs["temp_files_at_end"] = _temp_files(root)
    return obs


SCENARIOS = {
    name.removeprefix("scenario_"): fn
    for name, fn in dict(globals()).items()
    if name.startswith("scenario_")
}


# -- the tests: scenarios in a private mount namespace ----------------------------------------


def _needs_fuse() -> None:
    import shutil

    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")
    if shutil.which("fusermount") is None and shutil.which("fusermount3") is None:
        pytest.skip("needs fuse3 (.ci/system-deps installs it)")
    pytest.importorskip("fuse", reason="needs fusepy (the test extra)")


@pytest.mark.needs_root
def test_a_put_hung_in_a_system_call_is_cancelled_at_once_and_never_commits(
    in_mount_namespace: Run,
) -> None:
    """Issue 14: cancel() returns within 1 s although write(2) hangs; once the file system
    wakes up, the abandoned thread removes its temporary file and commits nothing."""
    _needs_fuse()
    obs = in_mount_namespace(HERE, "fuse_stalled_put")
    for key in ("new", "kept"):
        assert obs[f"{key}_outcome"] == "cancelled", obs
        assert obs[f"{key}_cancel_took"] < 1.0, obs
        assert obs[f"{key}_temp_after"] == [], obs
    assert obs["new_after"] is None  # never committed, not even after the write went through
    assert obs["kept_after"] == "old version" and obs["kept_meta"] == {"v": "old"}
    assert obs["listed"] == ["kept"]


@pytest.mark.needs_root
def test_lack_of_space_is_reported_as_full_not_as_a_failure(in_mount_namespace: Run) -> None:
    """Issue 15 #3, driver side: WRITE_ACCESS fails with ``Verdict.full`` when free space is
    below min_free_bytes or the file system is full (ENOSPC), so the core lets deletes through;
    a read-only file system is a plain failure."""
    obs = in_mount_namespace(HERE, "tmpfs_free_space_verdicts")
    assert obs["empty"]["healthy"] and not obs["empty"]["full"]
    below = obs["below_minimum"]
    assert not below["healthy"] and below["full"], below
    assert below["reason"].startswith("disk full:") and "min_free_bytes" in below["reason"]
    assert obs["after_delete"]["healthy"]
    enospc = obs["enospc"]
    assert not enospc["healthy"] and enospc["full"], enospc
    read_only = obs["read_only"]
    assert not read_only["healthy"] and not read_only["full"], read_only
    assert read_only["reason"] == "read-only file system"


@pytest.mark.needs_root
def test_a_dead_writers_temporary_file_is_reclaimed_while_the_store_runs(
    in_mount_namespace: Run,
) -> None:
    """Issue 15 #8 where O_TMPFILE is missing (FUSE, NFS): SIGKILL a writer mid-put; a running
    store reclaims its temporary file within seconds, never the file of a live put."""
    _needs_fuse()
    obs = in_mount_namespace(HERE, "fuse_dead_writer_reclaimed")
    assert obs["after_kill"] >= 1, obs  # the kill left something to reclaim
    assert obs["left"] == [], obs
    assert obs["reclaimed_after"] < 5, obs
    assert obs["own_kept"] and obs["own_kept_later"], obs
    assert obs["live_size"] == 2 * MiB + 10
    assert obs["temp_files_at_end"] == []


# -- the tests: in-process, on the test machine's file system ---------------------------------


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[Any]:
    async with _manager(tmp_path / "root", chunk_size=64 * KiB, probe={"interval": 3600}) as m:
        yield m


async def test_one_read_is_one_version_while_two_writers_overwrite(manager: Any) -> None:
    """Issue 15 #2: 2 writers overwrite one key with 10 B, 700 KB and 2 MB bodies; 4 readers
    open it again and again. Every reader's ``info`` (size, metadata, etag) describes exactly
    the bytes it reads."""
    store = manager["f"]
    sizes = [10, 700_000, 2_000_000]
    await store.put("k", body(0, 10), metadata={"v": "0"})
    stop = asyncio.Event()
    checked = {"reads": 0, "versions": set()}
    etags: dict[str, int] = {}
    problems: list[str] = []

    async def writer(n: int) -> None:
        rng = random.Random(n)
        version = n * 1_000_000
        while not stop.is_set():
            version += 1
            data = body(version, rng.choice(sizes))
            await store.put("k", data, overwrite=True, metadata={"v": str(version)})

    async def reader() -> None:
        async with manager.session("f") as session:
            while not stop.is_set():
                r = await session.open("k", 0, None)
                try:
                    info = r.info
                    parts = []
                    while chunk := await r.read_chunk():
                        parts.append(chunk)
                finally:
                    await r.aclose()
                data = b"".join(parts)
                if info is None:
                    problems.append("reader.info is None")
                    return
                version = int(info.metadata["v"])
                if info.size != len(data) or r.size != len(data):
                    problems.append(f"info.size {info.size}, reader.size {r.size}, {len(data)}")
                if data != body(version, len(data)):
                    problems.append(f"body is not version {version} ({len(data)} bytes)")
                if info.key != "k" or not info.etag or info.modified is None:
                    problems.append(f"incomplete info {info}")
                elif etags.setdefault(info.etag, version) != version:
                    problems.append(f"etag {info.etag} names two versions")
                checked["reads"] += 1
                checked["versions"].add(version)

    tasks = [asyncio.create_task(writer(n)) for n in (1, 2)]
    tasks += [asyncio.create_task(reader()) for _ in range(4)]
    await asyncio.sleep(3)
    stop.set()
    await asyncio.gather(*tasks)
    assert problems[:5] == []
    assert checked["reads"] > 20 and len(checked["versions"]) > 4, checked


async def test_a_ranged_read_reports_the_full_size_of_its_version(manager: Any) -> None:
    store = manager["f"]
    await store.put("r", body(5, 300 * KiB), metadata={"v": "5"})
    async with manager.session("f") as session:
        r = await session.open("r", 1000, 10)
        try:
            assert await r.read_chunk() == body(5, 300 * KiB)[1000:1010]
            assert r.size == 10
            assert r.info is not None
            assert (r.info.size, dict(r.info.metadata)) == (300 * KiB, {"v": "5"})
            stat = await store.stat("r")
            assert r.info.etag == stat.etag and stat.etag is not None
        finally:
            await r.aclose()
        await store.write("r", b"patched", offset=0)
        assert (await store.stat("r")).etag != stat.etag  # a patch makes a new version


def _stores(tmp_path: Path) -> Any:
    from aiostore import StoreManager

    return StoreManager(
        {
            "probe": {"interval": 3600},
            "stores": {
                "memory": {"driver": "memory"},
                "file": {"driver": "file", "root": str(tmp_path / "root"), "chunk_size": 4096},
            },
        }
    )


async def _outcome(aw: Any) -> str:
    try:
        await aw
    except Exception as exc:
        return type(exc).__name__
    return "ok"


async def _fails(_: bytes = b"") -> AsyncIterator[bytes]:
    yield b"x" * 10_000
    raise RuntimeError("the client went away")


@pytest.mark.parametrize("driver", ["memory", "file"])
async def test_no_empty_directory_blocks_a_key(tmp_path: Path, driver: str) -> None:
    """Issue 15 #4: after a failed put, an aborted upload, a cancelled put or deleting the last
    key under a prefix, that prefix is free again as a key — as on the memory store."""
    async with _stores(tmp_path) as m:
        store = m[driver]
        # A failed put under a long (300-byte) name: its directories go with it.
        assert await _outcome(store.put("zz/" + "n" * 300, _fails())) != "ok"
        assert await _outcome(store.put("zz", b"zz")) == "ok"
        await store.put("pb/c", b"c")
        await store.delete("pb/c")
        assert await _outcome(store.put("pb", b"pb")) == "ok"
        await store.put("a/b/c/d", b"deep")
        await store.delete("a/b/c/d")
        assert await _outcome(store.put("a/b", b"ab")) == "ok"
        assert await _outcome(store.put("a", b"a")) == "ok" or driver == "file"  # a/b exists
        assert await _outcome(store.put("up/x", _fails())) != "ok"
        assert await _outcome(store.put("up", b"up")) == "ok"
        task = asyncio.create_task(store.put("cx/y", _stall()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _outcome(store.put("cx", b"cx", overwrite=True)) == "ok"
        for key in ("zz", "pb", "a/b", "up", "cx"):
            assert await store.read(key) == key.replace("/", "").encode()
    if driver == "file":
        root = tmp_path / "root"
        assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
            "a",
            "cx",
            "pb",
            "up",
            "zz",
        ]


async def _stall() -> AsyncIterator[bytes]:
    yield b"y" * 10_000
    await asyncio.sleep(3600)
    yield b""


async def test_removing_emptied_directories_never_fails_a_concurrent_put(tmp_path: Path) -> None:
    """Deletes remove the directories they empty while other puts create entries in them: the
    puts retry, none fails and none is lost."""
    async with _stores(tmp_path) as m:
        store = m["file"]

        async def churn(n: int) -> int:
            done = 0
            for i in range(150):
                key = f"p/q/{n}"
                await store.put(key, b"%d" % i, overwrite=True)
                assert await store.read(key) == b"%d" % i
                await store.delete(key)
                done += 1
            return done

        assert await asyncio.gather(*(churn(n) for n in range(4))) == [150] * 4
        assert [info.key async for info in store.list()] == []
        assert not (tmp_path / "root" / "p").exists()


async def test_a_delete_never_removes_the_directory_of_a_put_in_flight(tmp_path: Path) -> None:
    """A put's unnamed temporary file is no directory entry, so the directory it will be linked
    into looks empty until the commit. A delete in the same store must not remove it meanwhile
    (a put that keeps losing that race used to run out of retries and fail with EPERM, which
    revoked WRITE_ACCESS): it stays while the put runs, and goes once nothing uses it."""
    root = tmp_path / "root"
    async with _stores(tmp_path) as m:
        store = m["file"]
        go = asyncio.Event()

        async def held(first: bytes) -> AsyncIterator[bytes]:
            yield first * 10_000  # more than chunk_size (4096): the file is created at once
            await go.wait()
            yield first

        task = asyncio.create_task(store.put("p/q/a", held(b"a")))
        assert await _eventually(lambda: (root / "p" / "q").is_dir())
        for _ in range(3):
            await store.put("p/q/b", b"b")
            await store.delete("p/q/b")  # empties p/q: the put in flight still needs it
            assert (root / "p" / "q").is_dir()
        go.set()
        await task
        assert await store.read("p/q/a") == b"a" * 10_001
        await store.delete("p/q/a")
        assert not (root / "p").exists()

        # A put that is cancelled gives its directories back: nothing stays.
        stalled = asyncio.create_task(store.put("s/t/a", _stall()))
        assert await _eventually(lambda: (root / "s" / "t").is_dir())
        await store.put("s/t/b", b"b")
        await store.delete("s/t/b")
        assert (root / "s" / "t").is_dir()
        stalled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stalled
        assert await _eventually(lambda: not (root / "s").exists())
        assert [info.key async for info in store.list()] == []


def test_a_put_whose_directory_keeps_vanishing_revokes_nothing(tmp_path: Path) -> None:
    """Another process's deletes may still remove a put's directory under it; after its retries
    the put fails with an error that says so and revokes nothing (ext4 refuses an O_TMPFILE in
    a removed directory with EPERM, which must not pass for a permission fault). Here the
    directory really is removed after every walk, as if such a delete won every race."""
    from aiostore.drivers.file._errors import FILE_ERRORS
    from aiostore.drivers.file._options import FileOptions
    from aiostore.drivers.file._tree import Tree
    from aiostore.drivers.file._write import Put
    from aiostore.errors import BackendUnavailable, StoreError

    class LosingTree(Tree):
        walks = 0

        def parent(self, key: str, *, create: bool, write: bool) -> tuple[int, list[str]]:
            dfd, parts = super().parent(key, create=create, write=write)
            if create:
                self.walks += 1
                os.rmdir(os.path.join(self.root, *parts[:-1]))
            return dfd, parts

    root = tmp_path / "root"
    root.mkdir()
    for overwrite in (True, False):
        tree = LosingTree(str(root), FileOptions(root=str(root)))
        put = Put(tree, "p/q/x", overwrite, None)
        with pytest.raises(Exception) as caught:
            put.run("small", [b"data"])
        put.abort()
        err = FILE_ERRORS.translate(caught.value, key="p/q/x", operation="put")
        assert isinstance(err, BackendUnavailable), repr(err)
        assert isinstance(err, StoreError) and not err.revokes, repr(err)
        assert "removed" in str(err)
        assert tree.walks > 1
        assert sorted(p.name for p in root.iterdir()) in ([], [".aiostore-tmp"])
        assert _temp_files(root) == []


def _generated_keys() -> list[str]:
    rng = random.Random(15)
    atoms = [".", "aiostore-", "aiostore", "meta-", "tmp-", "probe-", "key-", "1", "x", "-", " ",
             "+", "%", "~", "é", "日本", "\\", "#", "..", "a.b", "\u00a0", "\t"]  # fmt: skip
    keys = {"L" * 300, "é" * 200 + "/x", ".x.aiostore-" + "b" * 300, "a" * 1000,
            "n" * 254, "n" * 255, "n" * 256, "\u65e5" * 85 + "/y", "\u65e5" * 86,
            ".x.aiostore-meta-1", ".x.aiostore-tmp-0123", ".aiostore-probe-1",
            "d/.real.aiostore-tmp-0123456789ab", ".a.aiostore-meta-1/b", ".aiostore-tmp",
            ".aiostore-tmp/x", "\\.x.aiostore-meta-1", "#x", "..x", "x.."}  # fmt: skip
    while len(keys) < 400:
        segs = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            segs.append("".join(rng.choice(atoms) for _ in range(rng.randint(1, 6))))
        if rng.random() < 0.1:
            segs.append(rng.choice(atoms) * rng.randint(60, 300))  # past NAME_MAX, often
        keys.add("/".join(segs))
    return sorted(keys)


async def test_file_and_memory_accept_exactly_the_same_keys(tmp_path: Path) -> None:
    """Issue 15 #9: names that look like the driver's own files, and segments longer than a file
    name may be, are ordinary keys; the file store accepts, lists and reads back exactly what
    the memory store does."""
    keys = _generated_keys()
    async with _stores(tmp_path) as m:
        outcomes: dict[str, dict[str, str]] = {"memory": {}, "file": {}}
        for name in outcomes:
            for key in keys:
                # Path-shaped clashes (a key and a longer key below it) are the file store's own
                # rule (KeyConflict); give every key its own directory to compare the key sets.
                full = f"{abs(hash(key)) % 10**8}/{key}"
                data = full.encode("utf-8", "surrogatepass")
                outcomes[name][key] = await _outcome(m[name].put(full, data, metadata={"k": "v"}))
        assert outcomes["file"] == outcomes["memory"]
        assert list(outcomes["memory"].values()).count("ok") > 150
        listed = {}
        for name in outcomes:
            listed[name] = [info.key async for info in m[name].list()]
        assert sorted(listed["file"]) == sorted(listed["memory"])
        for key in listed["file"]:
            assert await m["file"].read(key) == key.encode()
            assert dict((await m["file"].stat(key)).metadata) == {"k": "v"}
        long_keys = [k for k in listed["memory"] if len(k.encode()) > 300][:10]
        assert long_keys
        for key in long_keys:  # listing prefixes that end inside a long segment
            for cut in (len(key) // 3, len(key) // 2, len(key) - 1):
                got = {name: [i.key async for i in m[name].list(key[:cut])] for name in outcomes}
                assert sorted(got["file"]) == sorted(got["memory"]), key[:cut]
        for key in listed["file"]:
            await m["file"].delete(key)
        assert [info async for info in m["file"].list()] == []
    leftover_dirs = [p for p in (tmp_path / "root").rglob("*") if p.name != ".aiostore-tmp"]
    assert leftover_dirs == []  # every emptied directory went with the last key under it


if __name__ == "__main__":
    name, workdir = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(asyncio.run(SCENARIOS[name](workdir))))
