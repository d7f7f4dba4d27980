"""Fixtures of the aiostore.web and CLI tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aiostore import StoreManager

from .support import BACKENDS, rest_config, serve


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The real driver of store ``s``: memory, and file once aiostore.drivers.file exists."""
    return str(request.param)


@pytest.fixture
async def rest(
    backend: str, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], StoreManager]]:
    """(client, manager) of a running app with stores s (backend), ro, tiny and seq."""
    async with serve(rest_config(backend, tmp_path)) as pair:
        yield pair
