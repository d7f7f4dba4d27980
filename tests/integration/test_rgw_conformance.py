"""The shared conformance suite (aiostore.testing.conformance) against the S3 driver on RGW."""

from __future__ import annotations

from typing import Any

import pytest

from aiostore.testing.conformance import ConformanceSuite

from .ceph import RGWEndpoint
from .helpers import rgw_store_config

pytestmark = pytest.mark.integration


class TestRGW(ConformanceSuite):
    """Every contract check on the real gateway (the suite's ``large_size``, 3 MiB + 17, is a
    single PUT here; ``test_rgw.py`` covers the multipart paths)."""

    @pytest.fixture
    def store_config(self, rgw: RGWEndpoint, bucket: str) -> dict[str, Any]:
        return rgw_store_config(rgw, bucket)


class TestRGWLean(ConformanceSuite):
    """The same checks with the lean transport (signed aiohttp requests)."""

    @pytest.fixture
    def store_config(self, rgw: RGWEndpoint, bucket: str) -> dict[str, Any]:
        return rgw_store_config(rgw, bucket, transport="lean")
