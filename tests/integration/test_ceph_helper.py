"""The cluster helper itself: it fails loudly and cleans up after itself."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from . import ceph

pytestmark = pytest.mark.integration


def test_not_root_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ceph.shutil, "which", lambda _name: None)
    monkeypatch.setattr(ceph.os, "geteuid", lambda: 1000)
    with pytest.raises(ceph.CephError, match="needs root") as info:
        ceph.ensure_installed(lambda _msg: None)
    assert "apt-get install --no-install-recommends ceph-mon" in str(info.value)


def test_no_apt_get_fails_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ceph.shutil, "which", lambda _name: None)
    monkeypatch.setattr(ceph.os, "geteuid", lambda: 0)
    with pytest.raises(ceph.CephError, match="no apt-get"):
        ceph.ensure_installed(lambda _msg: None)


def test_stop_without_start_is_a_no_op() -> None:
    cluster = ceph.CephCluster(log=lambda _msg: None)
    cluster.stop()
    cluster.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_daemon_that_cannot_start_fails_fast_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, ceph_installed: None
) -> None:
    """radosgw's port taken: start() raises within seconds with radosgw's own log, every daemon
    it started is gone and its temp dir is removed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # _prepare takes two ports for the monitor, then one for radosgw.
        ports = iter([ceph.free_port(), ceph.free_port(), taken.getsockname()[1]])
        monkeypatch.setattr(ceph, "free_port", lambda: next(ports))
        cluster = ceph.CephCluster(log=lambda _msg: None)
        spawned: list[subprocess.Popen[bytes]] = []
        roots: list[Path] = []
        real_spawn, real_prepare = cluster._spawn, cluster._prepare

        def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
            spawned.append(real_spawn(name, argv))
            return spawned[-1]

        def prepare() -> None:
            real_prepare()
            assert cluster.root is not None
            roots.append(cluster.root)

        monkeypatch.setattr(cluster, "_spawn", spawn)
        monkeypatch.setattr(cluster, "_prepare", prepare)
        started = time.monotonic()
        with pytest.raises(ceph.CephError) as info:
            cluster.start(timeout=120)
        took = time.monotonic() - started
    message = str(info.value)
    # 98 is EADDRINUSE. (radosgw's own "Address already in use" line is not always flushed to
    # its log before it exits, so the test does not insist on it.)
    assert "client.rgw.a (pid" in message and "exited with 98" in message, message
    assert "==> client.rgw.a.log <==" in message, message  # the daemons' logs are in the error
    assert took < 60, f"the failure took {took:.0f} s to notice"
    assert len(spawned) == 4  # mon, mgr, osd, radosgw
    assert all(proc.returncode is not None for proc in spawned)  # reaped
    assert not any(_alive(proc.pid) for proc in spawned)
    assert len(roots) == 1 and not roots[0].exists()
    assert cluster.procs == {} and cluster.root is None
