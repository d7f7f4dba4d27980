"""The public conformance suite (aiostore.testing.conformance) against the azure driver on
Azurite: a fresh container per test, 256 KiB blocks so that the large objects are staged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from aiostore.testing.conformance import ConformanceSuite
from tests.support.cloudstores import conformance_config

from .conftest import BLOCK, ConfigFactory


class TestAzureConformance(ConformanceSuite):
    """Every contract check; objects above 256 KiB go up as staged blocks."""

    large_size = 3 * BLOCK + 17

    @pytest.fixture
    def store_config(self, azure_config: ConfigFactory) -> Mapping[str, Any]:
        return conformance_config(azure_config())
