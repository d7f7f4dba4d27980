"""Integration tests: the S3 driver against a real single-node Ceph RADOS Gateway (issue #10).

Opt-in, because they install Debian packages (root) and start a Ceph cluster (~10 s, plus 20-40 s
of apt-get the first time). They run when any of these holds:

- ``AIOSTORE_INTEGRATION=1`` in the environment;
- pytest was pointed at this directory or a file in it (``pytest tests/integration``, which is
  what ``nox -s integration`` does);
- the marker expression selects them (``pytest -m integration``).

Otherwise (the plain ``pytest`` of the README, which collects ``tests/``) nothing here is
collected. Once they run they never skip: no root or no apt-get fails with the reason.
``AIOSTORE_CEPH_KEEP=1`` keeps the cluster's temp dir (config, daemon logs) after the run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .ceph import CephCluster, CephError, RGWEndpoint, ensure_installed, start_cluster
from .helpers import REPORT

HERE = Path(__file__).resolve().parent


def _enabled(config: pytest.Config) -> bool:
    if os.environ.get("AIOSTORE_INTEGRATION") == "1":
        return True
    if "integration" in (config.getoption("markexpr", "") or "").split():
        return True
    base = config.invocation_params.dir
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.parent == HERE and collection_path.name != "conftest.py":
        return None if _enabled(config) else True
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs a real Ceph RGW (root, apt-get); see tests/integration"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("Ceph RGW integration")
        for line in REPORT:
            terminalreporter.write_line(line)


def _log(msg: str) -> None:
    print(f"[ceph] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def ceph_installed() -> None:
    """Debian's Ceph packages, installed with apt-get when missing. Fails, never skips, when
    that is impossible (not root, no apt-get, apt-get failed)."""
    try:
        took = ensure_installed(_log)
    except CephError as exc:
        pytest.fail(f"cannot install Ceph for the integration tests:\n{exc}", pytrace=False)
    REPORT.append(
        "install: already installed" if took is None else f"install (apt-get): {took:.1f} s"
    )


@pytest.fixture(scope="session")
def ceph_cluster(ceph_installed: None) -> Iterator[CephCluster]:
    """A running single-node Ceph cluster with radosgw for the whole session. Fails, never
    skips, when it does not come up (the message holds the daemons' log tails)."""
    try:
        cluster = start_cluster(_log, keep=os.environ.get("AIOSTORE_CEPH_KEEP") == "1")
    except CephError as exc:
        pytest.fail(str(exc), pytrace=False)
    t = cluster.timings
    REPORT.append(
        f"cluster start: {t['ready']:.1f} s (mon {t['mon']:.1f}, osd up {t['osd']:.1f}, pools "
        f"{t['pools']:.1f}, rgw answering {t['rgw']:.1f}, warmed up {t['warm']:.1f})"
    )
    try:
        yield cluster
    finally:
        started = time.monotonic()
        cluster.stop()
        REPORT.append(f"cluster stop: {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="session")
def rgw(ceph_cluster: CephCluster) -> RGWEndpoint:
    """Endpoint and credentials of the gateway."""
    assert ceph_cluster.endpoint is not None
    return ceph_cluster.endpoint


@pytest.fixture(scope="session")
def bucket() -> str:
    """The bucket the tests share (each test writes under its own key prefix)."""
    return "aiostore-it"
