"""The public conformance suite (aiostore.testing.conformance) against the gcs driver on
fake-gcs-server: a fresh bucket per test, 256 KiB chunks so that the large objects go up as
resumable uploads. fake-gcs-server ignores ifGenerationMatch=0, so create-only puts run on the
driver's per-process fallback here; the second class runs the suite behind a proxy that
enforces the precondition, where the server decides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from aiostore.testing.conformance import ConformanceSuite

from .conftest import CHUNK, FakeGCS
from .preconditions import PreconditionProxy


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


@pytest.fixture
async def enforcing(fake_gcs: FakeGCS) -> AsyncIterator[PreconditionProxy]:
    async with PreconditionProxy(fake_gcs.url) as proxy:
        yield proxy


class TestGCSConformanceEnforcing(ConformanceSuite):
    """The same checks against a server that enforces ifGenerationMatch=0 (fake-gcs-server
    behind tests/gcs/preconditions.py): create-only puts are decided by the server."""

    large_size = 3 * CHUNK + 17

    @pytest.fixture
    def store_config(self, enforcing: PreconditionProxy, bucket: str) -> Mapping[str, Any]:
        return {
            "driver": "gcs",
            "bucket": bucket,
            "endpoint_url": enforcing.url,
            "chunk_size": CHUNK,
            "probe": {"interval": 5.0, "timeout": 5.0},
        }
