"""What a driver package writes to run aiostore's conformance suite against its driver."""

from __future__ import annotations

from typing import Any

import pytest

from aiostore.testing.conformance import ConformanceSuite


class TestDictDriver(ConformanceSuite):
    """The whole suite, against a store using the driver by its entry point name."""

    @pytest.fixture
    def store_config(self) -> dict[str, Any]:
        return {"driver": "dictdrv", "chunk_size": 4096}
