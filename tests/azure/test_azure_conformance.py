"""The public conformance suite (aiostore.testing.conformance) against the azure driver on
Azurite: a fresh container per test, 256 KiB blocks so that the large objects are staged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from aiostore.testing.conformance import ConformanceSuite

from .conftest import ACCOUNT, BLOCK, KEY, Azurite


class TestAzureConformance(ConformanceSuite):
    """Every contract check; objects above 256 KiB go up as staged blocks."""

    large_size = 3 * BLOCK + 17

    @pytest.fixture
    def store_config(self, azurite: Azurite, container: str) -> Mapping[str, Any]:
        return {
            "driver": "azure",
            "account_url": azurite.url,
            "account_name": ACCOUNT,
            "account_key": KEY,
            "container": container,
            "block_size": BLOCK,
            "probe": {"interval": 5.0, "timeout": 5.0},
        }
