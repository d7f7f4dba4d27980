"""The public conformance suite (aiostore.testing.conformance) against the gcs driver on
fake-gcs-server: a fresh bucket per test, 256 KiB chunks so that the large objects go up as
resumable uploads. fake-gcs-server ignores ifGenerationMatch=0, so create-only puts run on the
driver's per-process fallback here (tests/gcs/test_gcs_create_only.py covers both modes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from aiostore.testing.conformance import ConformanceSuite

from .conftest import CHUNK, FakeGCS


class TestGCSConformance(ConformanceSuite):
    """Every contract check; objects above 256 KiB go up as resumable uploads."""

    large_size = 3 * CHUNK + 17

    @pytest.fixture
    def store_config(self, fake_gcs: FakeGCS, bucket: str) -> Mapping[str, Any]:
        return {
            "driver": "gcs",
            "bucket": bucket,
            "endpoint_url": fake_gcs.url,
            "chunk_size": CHUNK,
            "probe": {"interval": 5.0, "timeout": 5.0},
        }
