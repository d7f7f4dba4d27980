"""Stores for the reliability suite: every driver that can take writes, on real backends."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import aiostore
from aiostore.testing import S3Server

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.reliability)


WRITABLE_DRIVERS = ["memory", "file", "s3"]


def _available(driver: str) -> bool:
    return importlib.util.find_spec(f"aiostore.drivers.{driver}") is not None


@pytest.fixture(params=WRITABLE_DRIVERS)
def driver_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if not _available(name):
        pytest.skip(f"the {name} driver is not built yet")
    return name


@pytest.fixture
def store_config(
    driver_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., dict[str, Any]]:
    """A function returning a store table for the parametrized driver (extra options merged)."""

    def make(**extra: Any) -> dict[str, Any]:
        if driver_name == "memory":
            cfg: dict[str, Any] = {"driver": "memory"}
        elif driver_name == "file":
            cfg = {"driver": "file", "root": str(tmp_path / "root")}
        else:
            s3 = request.getfixturevalue("reliability_s3")
            cfg = {"driver": "s3", **s3}
        cfg.update(extra)
        return cfg

    return make


@pytest.fixture
async def manager(
    store_config: Callable[..., dict[str, Any]],
) -> AsyncIterator[aiostore.StoreManager]:
    config = {
        "probe": {"interval": 0.2, "timeout": 10.0},
        "stores": {"s": store_config()},
    }
    async with aiostore.StoreManager(config) as m:
        yield m


@pytest.fixture
def reliability_s3(s3_server: S3Server) -> dict[str, Any]:
    """S3 options on a fresh bucket of the moto server of aiostore's pytest plugin."""
    options = s3_server.store_config(
        bucket=f"rel-{uuid.uuid4().hex[:12]}",
        part_size=5 * 1024 * 1024,
        multipart_threshold=5 * 1024 * 1024,
        # Under 200 concurrent tasks moto answers probes slowly; latency-based degradation is
        # tested in tests/s3, here it would only hide the consistency checks behind 503s.
        degraded_latency=60.0,
    )
    del options["driver"]
    return options
