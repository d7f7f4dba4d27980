"""GET /events: Server-Sent Events of capability changes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from aiostore import Capability, StorageWriteDenied
from aiostore.capabilities.flags import NAMED

from .support import next_event, next_event_of, rest_config, serve


async def test_snapshot_first_then_change_from_a_failing_put(backend: str, tmp_path: Path) -> None:
    """The stream opens with a snapshot (13 capabilities in NAMED order, every store); a put
    that hits a read-only backend is followed by one capability event within a second."""
    async with serve(rest_config(backend, tmp_path)) as (client, manager):
        resp = await client.get("/events")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        event, snap = await asyncio.wait_for(next_event(resp), 2)
        assert event == "snapshot"
        assert [c["name"] for c in snap["capabilities"]] == [c.name for c in NAMED]
        assert [c["value"] for c in snap["capabilities"]] == [int(c) for c in NAMED]
        assert list(snap["stores"]) == manager.names
        assert "WRITE_ACCESS" in snap["stores"]["s"]["current"]["names"]

        store = manager["s"]
        store.faults.read_only = True
        started = time.monotonic()
        with pytest.raises(StorageWriteDenied):
            await store.put("k", b"data")
        change = await next_event_of(resp, "capability", 1.0)
        assert time.monotonic() - started < 1.0
        assert change["store"] == "s"
        assert "WRITE_ACCESS" in change["revoked"]
        assert change["new"] == int(store.capabilities)
        assert change["old"] == int(store.configured_capabilities)
        assert "WRITE_ACCESS" in change["reason"]
        resp.close()


async def test_change_from_a_probe(tmp_path: Path) -> None:
    """A probe that finds the backend read-only, then healthy again: two events, each at once."""
    async with serve(rest_config("memory", tmp_path)) as (client, manager):
        resp = await client.get("/events")
        await next_event_of(resp, "snapshot", 2)
        store = manager["s"]
        store.faults.read_only = True
        await store.probe()
        change = await next_event_of(resp, "capability", 1.0)
        assert (
            change["revoked"]
            == [c.name for c in NAMED if c in Capability.WRITE_RANDOM | Capability.RW_ACCESS]
            or "WRITE_ACCESS" in change["revoked"]
        )
        store.faults.clear()
        await store.probe()
        change = await next_event_of(resp, "capability", 1.0)
        assert "WRITE_ACCESS" in change["restored"]
        assert change["new"] == int(store.configured_capabilities)
        resp.close()


async def test_changes_of_every_store_and_heartbeats(tmp_path: Path) -> None:
    """Changes of any store arrive on one stream; ': ping' comments keep it alive."""
    async with serve(rest_config("memory", tmp_path), heartbeat=0.2) as (client, manager):
        resp = await client.get("/events")
        await next_event_of(resp, "snapshot", 2)
        started = time.monotonic()
        kind, text = await asyncio.wait_for(next_event(resp, comments=True), 1.0)
        assert (kind, text) == (":", "ping")
        assert 0.1 < time.monotonic() - started < 1.0
        manager["tiny"].faults.read_only = True
        await manager["tiny"].probe()
        change = await next_event_of(resp, "capability", 1.0)
        assert change["store"] == "tiny"
        resp.close()


async def test_open_streams_end_when_the_app_stops(tmp_path: Path) -> None:
    """Shutting the app down ends open event streams promptly instead of waiting for them."""
    async with serve(rest_config("memory", tmp_path)) as (client, manager):
        resp = await client.get("/events")
        await next_event_of(resp, "snapshot", 2)
        started = time.monotonic()
        await client.server.close()
        assert time.monotonic() - started < 2.0
        with pytest.raises(EOFError):
            await asyncio.wait_for(next_event(resp), 2)
        assert manager.snapshot()["running"] is False
