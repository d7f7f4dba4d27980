"""The conformance suite (aiostore.testing.conformance) against every built-in driver.

Drivers that are not importable are skipped, so this module passes whatever is installed.
S3 runs on the plugin's moto server; HTTP is read-only (write-side tests skip), seeded by
writing files into the static server's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiostore import Store
from aiostore.testing import HTTPServerStore, S3Server
from aiostore.testing.conformance import ConformanceSuite, Seeder


class TestMemory(ConformanceSuite):
    """The in-process memory driver."""

    @pytest.fixture
    def store_config(self) -> dict[str, Any]:
        return {"driver": "memory"}


class TestFile(ConformanceSuite):
    """The filesystem driver, rooted in a fresh directory."""

    @pytest.fixture
    def store_config(self, tmp_path: Path) -> dict[str, Any]:
        pytest.importorskip("aiostore.drivers.file")
        return {"driver": "file", "root": str(tmp_path / "root")}


class TestS3(ConformanceSuite):
    """The S3 driver on moto, a fresh bucket per test."""

    @pytest.fixture
    def store_config(self, s3_server: S3Server) -> dict[str, Any]:
        pytest.importorskip("aiostore.drivers.s3")
        return s3_server.store_config()


class TestHTTP(ConformanceSuite):
    """The read-only HTTP driver on an aiohttp static server."""

    supports_listing = False

    @pytest.fixture
    def store(self, http_server_store: HTTPServerStore) -> Store:
        return http_server_store.store

    @pytest.fixture
    def seed(self, http_server_store: HTTPServerStore) -> Seeder:
        return http_server_store.seed
