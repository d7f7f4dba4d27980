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
from tests.support.cloudstores import conformance_config

from .conftest import CHUNK, ConfigFactory, FakeGCS
from .preconditions import PreconditionProxy


class TestGCSConformance(ConformanceSuite):
    """Every contract check; objects above 256 KiB go up as resumable uploads."""

    large_size = 3 * CHUNK + 17

    @pytest.fixture
    def store_config(self, gcs_config: ConfigFactory) -> Mapping[str, Any]:
        return conformance_config(gcs_config())


@pytest.fixture
async def enforcing(fake_gcs: FakeGCS) -> AsyncIterator[PreconditionProxy]:
    async with PreconditionProxy(fake_gcs.url) as proxy:
        yield proxy


class TestGCSConformanceEnforcing(ConformanceSuite):
    """The same checks against a server that enforces ifGenerationMatch=0 (fake-gcs-server
    behind tests/gcs/preconditions.py): create-only puts are decided by the server."""

    large_size = 3 * CHUNK + 17

    @pytest.fixture
    def store_config(
        self, gcs_config: ConfigFactory, enforcing: PreconditionProxy
    ) -> Mapping[str, Any]:
        return conformance_config(gcs_config(endpoint_url=enforcing.url))
