"""``[server] events_coalesce`` reaches the ``/events`` streams of ``create_app``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from aiostore import Capability
from aiostore.errors import BadStoreConfiguration
from aiostore.web import STORES, create_app
from aiostore.web._server_options import ServerOptions, parse_server_options

from .test_web_scale import RawEvents, many_stores


async def _second_change_delay(coalesce: float) -> float:
    """Seconds from a store's second change (0.05 s after its first) to the client seeing it."""
    app = create_app(
        many_stores(2), dashboard=False, server=ServerOptions(events_coalesce=coalesce)
    )
    async with TestServer(app, host="127.0.0.1") as server:
        manager = app[STORES]
        client = await RawEvents.open(server, "/events")
        try:
            got: list[tuple[str, Any]] = []
            while not any(kind == "snapshot" for kind, _ in got):
                got += await client.read_some(1 << 16)
            store = manager["t0000"]
            store.unset_capabilities(Capability.WRITE_ACCESS, reason="first")
            while not any(kind == "capability" for kind, _ in got):
                got += await client.read_some()  # the first change after a quiet spell: at once
            await asyncio.sleep(0.05)
            store.set_capabilities(Capability.WRITE_ACCESS)
            changed = time.monotonic()
            seen = 1
            while seen < 2:
                batch = await asyncio.wait_for(client.read_some(), 10)
                seen += sum(1 for kind, _ in batch if kind == "capability")
            return time.monotonic() - changed
        finally:
            await client.close()


async def test_events_coalesce_sets_how_often_a_client_is_written() -> None:
    slow = await _second_change_delay(2.0)
    assert slow >= 1.5, slow  # held back until the interval after the first write ended
    fast = await _second_change_delay(0.1)
    assert fast < 1.0, fast


@pytest.mark.parametrize("bad", [-1, 61, "x"])
def test_events_coalesce_is_validated(bad: Any) -> None:
    with pytest.raises(BadStoreConfiguration, match="events_coalesce"):
        parse_server_options({"events_coalesce": bad})
