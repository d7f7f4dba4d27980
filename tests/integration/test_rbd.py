"""The ``rbd`` driver on the real single-node Ceph: the conformance suite, key names, native
in-place writes, a cancelled 13 MiB streaming put, and ``ceph osd pause``/``unpause`` faults."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aiostore import Capability, Store, StoreGetNotSupported, StoreManager
from aiostore.testing.conformance import ConformanceSuite

from .ceph import BINDINGS, BINDINGS_DIR, RBD_POOL, CephCluster
from .helpers import REPORT, MiB

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def rbd_bindings(ceph_installed: None) -> Iterator[None]:
    """Debian's rados/rbd modules, visible to this interpreter the way docs/rbd.md shows: their
    two extension files linked into a directory on ``sys.path``."""
    with tempfile.TemporaryDirectory(prefix="aiostore-rbd-bindings-") as tmp:
        for name in BINDINGS:
            for so in BINDINGS_DIR.glob(f"{name}.cpython-*.so"):
                (Path(tmp) / so.name).symlink_to(so)
        sys.path.insert(0, tmp)
        try:
            yield
        finally:
            sys.path.remove(tmp)


def rbd_config(cluster: CephCluster, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "driver": "rbd",
        "pool": RBD_POOL,
        "conffile": str(cluster.conf),
        "chunk_size": 1 * MiB,
        "connect_timeout": 5.0,
    }
    cfg.update(overrides)
    return cfg


class TestRBDConformance(ConformanceSuite):
    """Every contract check on RBD images (with RW_RANDOM: in-place writes too)."""

    @pytest.fixture
    def store_config(self, ceph_cluster: CephCluster, rbd_bindings: None) -> dict[str, Any]:
        return rbd_config(ceph_cluster)


@pytest.fixture
async def store(ceph_cluster: CephCluster, rbd_bindings: None) -> AsyncIterator[Store]:
    async with StoreManager({"stores": {"rbd": rbd_config(ceph_cluster)}}) as manager:
        yield manager["rbd"]


def _images(cluster: CephCluster) -> list[str]:
    import rados
    import rbd

    client = rados.Rados(conffile=str(cluster.conf))
    client.connect(timeout=10)
    try:
        with client.open_ioctx(RBD_POOL) as ioctx:
            return list(rbd.RBD().list(ioctx))
    finally:
        client.shutdown()


async def test_keys_round_trip_through_image_names(store: Store) -> None:
    prefix = f"names-{uuid.uuid4().hex[:8]}/"
    keys = [
        "plain",
        "with space/and+plus%25~tilde",
        "ü ñ/日本語/😀",
        "at@sign/semi;colon,#hash?q",
        "_underscore_.dot-",
        "x" * (1024 - len(prefix)),  # hashed name
        "é" * ((1024 - len(prefix)) // 2),  # hashed, multibyte
    ]
    for i, key in enumerate(keys):
        await store.put(prefix + key, f"{i}".encode(), metadata={"i": str(i)})
    listed = {info.key: info async for info in store.list(prefix)}
    assert sorted(listed) == sorted(prefix + k for k in keys)
    for i, key in enumerate(keys):
        assert await store.read(prefix + key) == f"{i}".encode()
        assert dict(listed[prefix + key].metadata) == {"i": str(i)}
    assert {i.key async for i in store.list(prefix + "ü ñ/")} == {prefix + keys[2]}


async def test_write_patches_in_place_and_grows(store: Store) -> None:
    key = f"patch-{uuid.uuid4().hex[:8]}"
    await store.put(key, b"0123456789")
    before = (await store.stat(key)).etag
    assert await store.write(key, b"AB", offset=3) == 2
    assert await store.write(key, b"XYZ", offset=9) == 3  # grows the image
    assert await store.read(key) == b"012AB5678XYZ"
    assert (await store.stat(key)).etag == before  # the same image, patched
    assert await store.read(key, offset=4, length=3) == b"B56"


@pytest.mark.parametrize("cancels", [1, 3])
async def test_cancelled_13_mib_streaming_put_leaves_nothing(
    store: Store, ceph_cluster: CephCluster, cancels: int
) -> None:
    key = f"cancelled-{uuid.uuid4().hex[:8]}"
    sent = asyncio.Event()

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(13):
            yield os.urandom(MiB)
        sent.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put(key, stream(), size=13 * MiB + 1))
    await asyncio.wait_for(sent.wait(), 60)
    await asyncio.sleep(0.1)
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.exists(key)
    await _no_temporary_images(ceph_cluster)


async def _no_temporary_images(cluster: CephCluster, within: float = 15.0) -> None:
    """No ``t.*`` image is left (a clean-up still in a worker thread gets ``within`` s)."""
    deadline = time.monotonic() + within
    while names := [n for n in await asyncio.to_thread(_images, cluster) if n.startswith("t.")]:
        assert time.monotonic() < deadline, f"temporary images stayed behind: {names}"
        await asyncio.sleep(0.2)


INTERVAL, TIMEOUT, FAILURES = 0.5, 2.0, 2


@pytest.fixture
async def probed(ceph_cluster: CephCluster, rbd_bindings: None) -> AsyncIterator[Store]:
    probe = {"interval": INTERVAL, "timeout": TIMEOUT, "failures_to_revoke": FAILURES,
             "successes_to_restore": 2}  # fmt: skip
    config = {"stores": {"rbd": {**rbd_config(ceph_cluster), "probe": probe}}}
    try:
        async with StoreManager(config) as manager:
            yield manager["rbd"]
    finally:
        await asyncio.to_thread(ceph_cluster.unpause)


async def test_osd_pause_revokes_cancels_promptly_and_unpause_restores(
    probed: Store, ceph_cluster: CephCluster
) -> None:
    store = probed
    key = f"paused-{uuid.uuid4().hex[:8]}"
    await store.put(key, b"before the pause")
    assert store.capabilities == store.configured_capabilities, store.health
    await asyncio.to_thread(ceph_cluster.ceph, "osd", "pause")
    paused = time.monotonic()
    try:
        # A put that hangs in librbd: the caller gets control back at once when cancelled.
        stuck = asyncio.create_task(store.put(f"{key}-stuck", b"x" * 1000, overwrite=True))
        await asyncio.sleep(1.0)
        assert not stuck.done()
        t = time.monotonic()
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        cancelled_in = time.monotonic() - t
        assert cancelled_in < 0.5
        bound = FAILURES * (TIMEOUT + 1.1 * INTERVAL) + 3.0
        async with asyncio.timeout(bound + 10):
            await store.wait_for(Capability.WRITE_ACCESS, present=False)
        revoked = time.monotonic() - paused
        assert revoked < bound, store.health
    finally:
        unpaused = time.monotonic()
        await asyncio.to_thread(ceph_cluster.unpause)
    async with asyncio.timeout(30):
        await store.wait_healthy()
    restored = time.monotonic() - unpaused
    assert store.capabilities == store.configured_capabilities
    assert await store.read(key) == b"before the pause"
    assert not await store.exists(f"{key}-stuck")
    # The abandoned put's thread removes its temporary image itself once the OSD is back.
    await _no_temporary_images(ceph_cluster, within=30)
    REPORT.append(
        f"rbd osd pause: cancelled a hung put in {cancelled_in:.2f} s; WRITE_ACCESS revoked "
        f"after {revoked:.1f} s (bound {bound:.1f}); restored {restored:.1f} s after unpause"
    )


async def test_cluster_down_revokes_everything_and_back_restores(
    probed: Store, ceph_cluster: CephCluster
) -> None:
    """The monitor and the OSD stopped (SIGSTOP): probes hang, every capability goes; SIGCONT
    brings them back."""
    store = probed
    assert store.capabilities == store.configured_capabilities, store.health
    daemons = [p for name, p in ceph_cluster.procs.items() if name.startswith(("mon.", "osd."))]
    assert len(daemons) == 2
    for proc in daemons:
        proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        async with asyncio.timeout(30):
            await store.wait_for(Capability.READ_ACCESS, present=False)
            await store.wait_for(Capability.WRITE_ACCESS, present=False)
        revoked = time.monotonic() - stopped
        held = store.capabilities & ~Capability.DRIVER_REUSABLE
        assert held == Capability.NONE, store.health
        with pytest.raises(StoreGetNotSupported) as info:
            await store.read("anything")
        assert info.value.transient
    finally:
        for proc in daemons:
            proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    async with asyncio.timeout(60):
        await store.wait_healthy()
    REPORT.append(
        f"rbd cluster down (mon+osd SIGSTOP): everything revoked after {revoked:.1f} s; "
        f"restored {time.monotonic() - resumed:.1f} s after SIGCONT"
    )
    await asyncio.to_thread(ceph_cluster.wait_active_clean, 60)


async def test_unreachable_cluster_fails_within_connect_timeout(
    rbd_bindings: None, tmp_path: Path
) -> None:
    """No monitor answers: the probe and an operation fail after ``connect_timeout``, not later,
    and the manager starts and closes without hanging."""
    from tests.support.net import free_port

    conf = tmp_path / "ceph.conf"
    conf.write_text(
        f"[global]\nmon host = 127.0.0.1:{free_port()}\nauth client required = none\n"
        "ms client mode = crc\nms mon client mode = crc\n"
    )
    table = {**{"driver": "rbd", "conffile": str(conf), "connect_timeout": 1.0},
             "probe": {"interval": 60, "timeout": 10}}  # fmt: skip
    t0 = time.monotonic()
    async with StoreManager({"stores": {"down": table}}) as manager:
        store = manager["down"]
        report = await store.probe()
        assert not report.healthy
        assert "connect" in str(report), str(report)
        held = store.capabilities & ~Capability.DRIVER_REUSABLE
        assert held == Capability.NONE, store.health
    assert time.monotonic() - t0 < 10


def _threads_in_connect() -> list[str]:
    """Names of the threads now inside the driver's blocking connect (librados' ``connect``
    or ``open_ioctx``), found by walking every thread's stack."""
    from aiostore.drivers.rbd._session import RBDSession

    code = RBDSession._connect_blocking.__code__
    frames = sys._current_frames()
    names = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident) if thread.ident is not None else None
        while frame is not None:
            if frame.f_code is code:
                names.append(thread.name)
                break
            frame = frame.f_back
    return names


def _unreachable_conf(path: Path, extra: str = "") -> Path:
    """A ceph.conf whose only monitor is a loopback port where nothing listens."""
    from tests.support.net import free_port

    path.write_text(
        f"[global]\nmon host = 127.0.0.1:{free_port()}\nauth client required = none\n"
        f"ms client mode = crc\nms mon client mode = crc\n{extra}"
    )
    return path


@pytest.mark.parametrize(
    ("extra", "gives_up_after"),
    [("", None), ("[client]\nclient mount timeout = 8\n", 8.0)],
    ids=["driver-bound", "conffile-wins"],
)
async def test_an_abandoned_connect_thread_gives_up_with_connect_timeout(
    rbd_bindings: None, tmp_path: Path, extra: str, gives_up_after: float | None
) -> None:
    """The worker thread a timed-out connect leaves behind does not wait out librados' own
    limit (``client_mount_timeout``, 300 s by default), which would hold the interpreter's
    exit that long: librados gives up about when ``connect_timeout`` runs out. A limit the
    configuration file sets itself is kept."""
    timeout = 1.0
    conf = _unreachable_conf(tmp_path / "ceph.conf", extra)
    table = {**{"driver": "rbd", "conffile": str(conf), "connect_timeout": timeout},
             "probe": {"interval": 600, "timeout": 30}}  # fmt: skip
    async with StoreManager({"stores": {"down": table}}) as manager:
        t0 = time.monotonic()
        report = await manager["down"].probe()  # a new connect, abandoned after its timeout
        left = time.monotonic()
        assert not report.healthy
        assert left - t0 < timeout + 3, left - t0
        if gives_up_after is not None:
            # The configuration file's longer limit holds: librados is still trying.
            assert time.monotonic() - t0 < gives_up_after - 1
            assert _threads_in_connect()
    # No connect starts once the manager is closed (the prober re-probes until then).
    closed = time.monotonic()
    limit = (gives_up_after or timeout) + 3.0
    while stuck := _threads_in_connect():
        waited = time.monotonic() - closed
        assert waited < limit, f"{stuck} still in librados' connect {waited:.1f} s after close"
        await asyncio.sleep(0.1)
    REPORT.append(
        f"rbd unreachable monitor ({'conffile limit' if gives_up_after else 'driver limit'}): "
        f"probe failed after {left - t0:.1f} s, the last connect thread returned "
        f"{time.monotonic() - closed:.1f} s after close (connect_timeout {timeout:g} s)"
    )


async def test_a_reader_keeps_its_version_across_delete_and_overwrite(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleted and replaced images wait in the trash: an open reader still reads the bytes it
    started with (a removed image would read as zeros); once the old data may be gone, the
    reader fails instead of returning zeros."""
    from aiostore import ChecksumMismatch
    from aiostore.drivers.rbd import _blocking

    data = os.urandom(4 * MiB)
    for change in ("delete", "overwrite"):
        key = f"kept-{change}-{uuid.uuid4().hex[:8]}"
        await store.put(key, data)
        got = bytearray()
        async with store.open(key) as reader:
            got += await reader.__anext__()
            if change == "delete":
                await store.delete(key)
                assert not await store.exists(key)
            else:
                await store.put(key, b"new", overwrite=True)
                assert await store.read(key) == b"new"
            async for chunk in reader:
                got += chunk
        assert bytes(got) == data, change
    monkeypatch.setattr(_blocking, "TRASH_DELAY", 0)
    key = f"gone-{uuid.uuid4().hex[:8]}"
    await store.put(key, data)
    async with store.open(key) as reader:
        await reader.__anext__()
        await store.delete(key)
        with pytest.raises(ChecksumMismatch):
            async for _ in reader:
                pass
