"""The object service with a thousand stores: ``GET /stores`` pages and filters, ``/events``
merges a storm of changes per store and never buffers more than one entry per store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aiostore import Capability, StoreManager
from aiostore.drivers.memory import MemoryDriver
from aiostore.web import STORES, object_routes, setup
from aiostore.web._events import BATCH, ChangeStream
from aiostore.web._keys import EVENT_STREAMS

from .support import next_event_of, serve

WRITE = Capability.WRITE_ACCESS


def many_stores(n: int) -> dict[str, Any]:
    """``n`` memory stores ``t0000``… (the driver class itself: no entry-point scan per store);
    no background probing: the tests change capabilities themselves."""
    return {
        "probe": {"enabled": False},
        "stores": {f"t{i:04d}": {"driver": MemoryDriver} for i in range(n)},
    }


def degrade(manager: StoreManager, names: list[str]) -> None:
    """An operator's unset of WRITE_ACCESS on each of ``names``: they turn degraded."""
    for name in names:
        manager[name].unset_capabilities(WRITE, reason="maintenance")


# -- GET /stores ------------------------------------------------------------------------------


async def test_without_arguments_the_whole_snapshot_as_before() -> None:
    """No query argument: exactly ``manager.snapshot()``, every store, no paging fields; an
    unknown argument changes nothing either."""
    async with serve(many_stores(30)) as (client, manager):
        for path in ("/stores", "/stores?unknown=1"):
            body = await (await client.get(path)).json()
            assert list(body["stores"]) == manager.names
            assert "next" not in body and "names" not in body
            assert body["stores"] == json.loads(json.dumps(manager.snapshot()["stores"]))


@pytest.mark.parametrize("sort", ["config", "name", "degraded"])
async def test_cursor_pages_cover_every_store_once_in_order(sort: str) -> None:
    """``?limit=`` pages, chained by ``next``, give each of 1,000 stores once, in the order
    asked for (configuration order, here the reverse of name order; name order; degraded
    first, then configuration order), even when a store changes state between two pages; the
    last page's ``next`` is null; each page holds full snapshot entries."""
    config = many_stores(1000)
    config["stores"] = dict(reversed(config["stores"].items()))
    async with serve(config) as (client, manager):
        degrade(manager, ["t0003", "t0500"])
        want = {
            "config": manager.names,
            "name": sorted(manager.names),
            "degraded": ["t0500", "t0003"]
            + [n for n in manager.names if n not in ("t0003", "t0500")],
        }[sort]
        seen: list[str] = []
        url = f"/stores?limit=300&sort={sort}"
        pages = 0
        while True:
            resp = await client.get(url)
            assert resp.status == 200
            body = await resp.json()
            pages += 1
            assert list(body["stores"]) == body["names"]
            assert len(body["names"]) <= 300
            assert body["total"] == body["matched"] == 1000
            assert body["degraded"] == 2 + (pages - 1) * (sort != "degraded")
            assert body["offset"] == len(seen)
            assert body["capabilities"][0]["name"] == "READ_ACCESS"
            entry = body["stores"][body["names"][0]]
            assert entry["current"]["value"] == int(manager[body["names"][0]].capabilities)
            assert "health" in entry and "probe" in entry
            seen += body["names"]
            if body["next"] is None:
                break
            if sort != "degraded":
                # A store of a later page changes state: the cursor still continues in order.
                degrade(manager, [want[len(seen) + 10]])
            url = f"/stores?limit=300&sort={sort}&cursor={body['next']}"
        assert pages == 4
        assert seen == want


async def test_filter_by_name_and_state_degraded_first() -> None:
    """``?q=`` matches a name substring (any case), ``?state=`` healthy or degraded, and
    ``?sort=degraded`` lists degraded stores first (then configuration order)."""
    async with serve(many_stores(200)) as (client, manager):
        bad = ["t0150", "t0007", "t0199", "t0100"]
        degrade(manager, bad)

        body = await (await client.get("/stores?q=T01")).json()
        assert body["names"] == [f"t{i:04d}" for i in range(100, 200)]
        assert body["matched"] == 100 and body["total"] == 200 and body["degraded"] == 4

        body = await (await client.get("/stores?state=degraded")).json()
        assert body["names"] == ["t0007", "t0100", "t0150", "t0199"]
        for name in body["names"]:
            assert "WRITE_ACCESS" not in body["stores"][name]["current"]["names"]
            assert body["stores"][name]["unset"]["reason"] == "maintenance"
        body = await (await client.get("/stores?state=healthy&limit=5")).json()
        assert body["names"] == ["t0000", "t0001", "t0002", "t0003", "t0004"]
        assert body["matched"] == 196

        body = await (await client.get("/stores?sort=degraded&limit=6")).json()
        assert body["names"] == ["t0007", "t0100", "t0150", "t0199", "t0000", "t0001"]
        # The next page continues after t0001, in the same order.
        body = await (
            await client.get(f"/stores?sort=degraded&limit=3&cursor={body['next']}")
        ).json()
        assert body["names"] == ["t0002", "t0003", "t0004"]
        body = await (await client.get("/stores?sort=degraded&q=t019&state=degraded")).json()
        assert body["names"] == ["t0199"] and body["next"] is None

        body = await (await client.get("/stores?sort=name&limit=2&offset=198")).json()
        assert body["names"] == ["t0198", "t0199"] and body["next"] is None
        body = await (await client.get("/stores?limit=2&offset=500")).json()
        assert body["names"] == [] and body["stores"] == {} and body["next"] is None


async def test_the_dashboard_query_follows_a_change() -> None:
    """What the dashboard asks (degraded first, a page of 24, a filter) sees a store that was
    just revoked at the top, and it leaves the top when restored."""
    async with serve(many_stores(300)) as (client, manager):
        url = "/stores?sort=degraded&limit=24&offset=0&q=t02"
        body = await (await client.get(url)).json()
        assert body["names"][0] == "t0200" and body["degraded"] == 0
        manager["t0287"].unset_capabilities(WRITE, reason="disk swap")
        body = await (await client.get(url)).json()
        assert body["names"][:2] == ["t0287", "t0200"] and body["degraded"] == 1
        manager["t0287"].set_capabilities(WRITE)
        body = await (await client.get(url)).json()
        assert body["names"][0] == "t0200" and body["degraded"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "offset=-1",
        "state=broken",
        "sort=size",
        "cursor=!!!",
        "cursor=bm90IGpzb24",  # base64 of "not json"
        "q=" + "x" * 201,
        "cursor=WyJjb25maWciLDFd&offset=3",  # both cursor and offset
    ],
)
async def test_bad_arguments_are_400(query: str) -> None:
    """Every bad paging argument is a JSON 400 naming the argument."""
    async with serve(many_stores(3)) as (client, _manager):
        resp = await client.get(f"/stores?{query}")
        assert resp.status == 400
        body = await resp.json()
        assert body["error"] == "BadRequest"
        assert query.split("=")[0] in body["message"]


async def test_a_cursor_of_another_order_is_400() -> None:
    """A cursor only continues the order it came from."""
    async with serve(many_stores(5)) as (client, _manager):
        body = await (await client.get("/stores?limit=2")).json()
        resp = await client.get(f"/stores?sort=degraded&cursor={body['next']}")
        assert resp.status == 400
        assert "cursor" in (await resp.json())["message"]
        resp = await client.get("/events?snapshot=everything")
        assert resp.status == 400
        assert "snapshot" in (await resp.json())["message"]


# -- /events: merging ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def events_app(
    config: dict[str, Any], *, coalesce: float, heartbeat: float = 15.0
) -> AsyncIterator[tuple[TestServer, web.Application]]:
    """A real server with ``object_routes(coalesce=...)``; the ``/events`` socket's send
    buffer is made small, so a slow client really holds the server's writes."""

    async def small_send_buffer(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/events" and request.transport is not None:
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

    app = web.Application()
    setup(app, config)
    app.add_routes(object_routes(coalesce=coalesce, heartbeat=heartbeat, dashboard=False))
    app.on_response_prepare.append(small_send_buffer)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server, app


class RawEvents:
    """A Server-Sent-Events client on a plain socket with a small receive buffer (HTTP/1.0:
    the body is not chunked), so reading slowly pushes back on the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""
        self.bytes = 0

    @classmethod
    async def open(cls, server: TestServer, path: str) -> RawEvents:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port or 0))
        reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        return cls(reader, writer)

    async def read_some(self, n: int = 4096) -> list[tuple[str, Any]]:
        """Up to ``n`` more bytes, and the complete events they finish."""
        chunk = await self.reader.read(n)
        if not chunk:
            raise EOFError("the event stream ended")
        self.bytes += len(chunk)
        self.buffer += chunk
        events = []
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            kind, data = "message", None
            for line in block.decode().split("\n"):
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if data is not None:
                events.append((kind, data))
        return events

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def only_stream(app: web.Application) -> ChangeStream:
    """The one open ``/events`` stream of ``app``."""
    streams = list(app[EVENT_STREAMS])
    assert len(streams) == 1
    return streams[0]


@pytest.mark.parametrize("pace", [0.005, 0.0], ids=["slow-client", "fast-client"])
async def test_a_storm_of_1000_flapping_stores_reaches_the_client_merged(pace: float) -> None:
    """1,000 stores flap 20 times while a client reads (slowly: 4 KiB every 5 ms through a
    small socket; or as fast as it can): the server holds at most one entry per store and at
    most one batch in the transport, flushes at most once per interval (at most one event per
    store each), sends far fewer events than there were changes, never skips a transition the
    client saw (each event's ``old`` is the state it last had), and every store's final state
    arrives."""
    n, rounds, interval = 1000, 20, 0.2
    async with events_app(many_stores(n), coalesce=interval) as (server, app):
        manager = app[STORES]
        client = await RawEvents.open(server, "/events")
        state: dict[str, int] = {}
        events = 0
        while not state:  # the snapshot, read at full speed
            for kind, data in await client.read_some(1 << 16):
                if kind == "snapshot":
                    state = {name: s["current"]["value"] for name, s in data["stores"].items()}
        snapshot_bytes = client.bytes
        stream = only_stream(app)
        transport = next(iter(server.runner.server.connections)).transport  # type: ignore[union-attr]
        assert transport is not None
        most_buffered = 0
        storm_over = asyncio.Event()

        def apply(batch: list[tuple[str, Any]]) -> None:
            nonlocal events
            for kind, data in batch:
                assert kind == "capability"
                events += 1
                assert data["old"] == state[data["store"]], data  # no transition skipped
                state[data["store"]] = data["new"]

        async def read_slowly() -> None:
            nonlocal most_buffered
            while not storm_over.is_set():
                apply(await client.read_some(4096 if pace else 1 << 16))
                most_buffered = max(most_buffered, transport.get_write_buffer_size())
                await asyncio.sleep(pace)

        reading = asyncio.create_task(read_slowly())
        names = manager.names
        started = time.monotonic()
        for r in range(rounds):
            for i, name in enumerate(names):
                store = manager[name]
                if r % 2 == 0:
                    store.unset_capabilities(WRITE, reason=f"round {r}")
                elif i % 3:  # the last round leaves every third store degraded
                    store.set_capabilities(WRITE)
            most_buffered = max(most_buffered, transport.get_write_buffer_size())
            await asyncio.sleep(0.02)
        storm = time.monotonic() - started
        storm_over.set()
        await reading
        want = {name: int(manager[name].capabilities) for name in names}
        assert sum(v != int(manager[n].configured_capabilities) for n, v in want.items()) == 334
        async with asyncio.timeout(60):
            while state != want:
                apply(await client.read_some(1 << 16))
        stats = stream.statistics()
        await client.close()

    # Every store is unset once; the 666 that flap are set and unset again each pair of rounds.
    changes = n + (rounds - 1) * (n - 334)
    print(
        f"\n{n} stores, {rounds} rounds in {storm:.2f} s: {stats['changes']} changes -> "
        f"{stats['events']} events in {stats['flushes']} flushes, {stats['writes']} writes, "
        f"{client.bytes - snapshot_bytes} bytes after the snapshot's {snapshot_bytes}; "
        f"peak pending {stats['peak_pending']}, largest write {stats['largest_write']} B, "
        f"most in the transport {most_buffered} B"
    )
    assert stats["changes"] == changes  # the hook saw every change, none dropped
    assert events <= stats["events"]  # a flap back may still be on its way
    assert stats["peak_pending"] <= n
    if pace:  # held by the client: merged, not queued
        assert stats["events"] < changes / 3
    assert stats["events"] <= n * stats["flushes"]
    elapsed = time.monotonic() - started
    assert stats["flushes"] <= elapsed / interval + 2
    # Bounded per client: aiohttp drains the transport once more than 64 KiB were written
    # since the last drain, so at most two batches beyond that sit in it, never the storm.
    assert stats["largest_write"] <= BATCH * 700
    assert most_buffered <= 2 * BATCH * 700 + (1 << 16)


async def test_changes_in_one_interval_become_one_event() -> None:
    """The first change after a quiet spell is written at once; a flap within the interval
    that follows is one event (``changes`` 2, back where it started); other stores' changes
    come in the same write."""
    async with events_app(many_stores(3), coalesce=1.0) as (server, app):
        manager = app[STORES]
        client = await RawEvents.open(server, "/events?snapshot=summary")
        (kind, summary), *_ = await client.read_some(1 << 16)
        assert kind == "snapshot"
        assert summary["total"] == 3 and summary["degraded"] == 0 and "stores" not in summary
        assert len(summary["capabilities"]) == 13

        t0 = manager["t0000"]
        configured = int(t0.configured_capabilities)
        started = time.monotonic()
        t0.unset_capabilities(WRITE, reason="first")
        (kind, first), *_ = await asyncio.wait_for(client.read_some(1 << 16), 5)
        assert time.monotonic() - started < 0.5
        assert first["store"] == "t0000" and first["changes"] == 1
        assert "WRITE_ACCESS" in first["revoked"] and first["reason"] == "unset by operator: first"

        t0.set_capabilities(WRITE)
        t0.unset_capabilities(WRITE, reason="again")
        manager["t0002"].unset_capabilities(WRITE, reason="other")
        got: list[Any] = []
        async with asyncio.timeout(5):
            while len(got) < 2:
                got += [data for _kind, data in await client.read_some(1 << 16)]
        assert time.monotonic() - started > 0.9  # held for the interval
        flap, other = got
        assert flap["store"] == "t0000" and flap["changes"] == 2
        assert flap["old"] == flap["new"] == first["new"] != configured
        assert flap["revoked"] == flap["restored"] == []
        assert flap["reason"] == "unset by operator: again"
        assert other["store"] == "t0002" and other["changes"] == 1
        await client.close()


async def test_a_burst_larger_than_a_subscription_buffer_loses_no_store() -> None:
    """1,000 stores changed in one go, without yielding to the loop (more than a
    ``manager.changes()`` buffer holds): each store's change arrives, one event each."""
    async with events_app(many_stores(1000), coalesce=0.1) as (server, app):
        manager = app[STORES]
        client = await RawEvents.open(server, "/events?snapshot=summary")
        assert (await client.read_some(1 << 16))[0][0] == "snapshot"
        degrade(manager, manager.names)
        got: dict[str, Any] = {}
        async with asyncio.timeout(30):
            while len(got) < 1000:
                for _kind, data in await client.read_some(1 << 16):
                    assert data["store"] not in got
                    got[data["store"]] = data
        assert all("WRITE_ACCESS" in d["revoked"] and d["changes"] == 1 for d in got.values())
        await client.close()


async def test_a_change_from_another_thread_arrives() -> None:
    """A change made on another thread (a manager shared with sync code) is merged on the
    server's loop and sent."""
    async with serve(many_stores(2), heartbeat=5.0) as (client, manager):
        resp = await client.get("/events?snapshot=summary")
        await next_event_of(resp, "snapshot", 5)
        thread = threading.Thread(
            target=manager["t0001"].unset_capabilities, args=(WRITE,), kwargs={"reason": "thread"}
        )
        thread.start()
        thread.join()
        change = await next_event_of(resp, "capability", 5)
        assert change["store"] == "t0001" and "WRITE_ACCESS" in change["revoked"]
        resp.close()


async def test_a_client_that_leaves_is_forgotten() -> None:
    """When the client goes away mid-storm its stream closes and stops listening: later
    changes cost it nothing and nothing of it stays registered."""
    async with events_app(many_stores(50), coalesce=0.05) as (server, app):
        manager = app[STORES]
        client = await RawEvents.open(server, "/events?snapshot=summary")
        await client.read_some()
        stream = only_stream(app)
        degrade(manager, manager.names[:25])
        await client.close()
        async with asyncio.timeout(10):
            while len(app[EVENT_STREAMS]):
                for store in manager:  # keep writing until the server notices
                    if WRITE in store.capabilities:
                        store.unset_capabilities(WRITE, reason="x")
                    else:
                        store.set_capabilities(WRITE)
                await asyncio.sleep(0.05)
        assert stream.closed
        seen = stream.changes
        degrade(manager, manager.names)
        assert stream.changes == seen and stream.pending() == 0
        assert stream.on_change not in manager._instruments._change


async def test_a_client_that_stopped_reading_does_not_hold_up_shutdown() -> None:
    """A client that stops reading in the middle of the snapshot, with a storm waiting behind
    it: shutting the server down drops that connection at once (its write would wait forever)
    instead of waiting for the client, and the stream stops listening."""
    async with events_app(many_stores(1000), coalesce=0.05) as (server, app):
        manager = app[STORES]
        client = await RawEvents.open(server, "/events")
        await client.read_some()  # 4 KiB of a 1.3 MB snapshot, then nothing
        stream = only_stream(app)
        for r in range(4):
            for store in manager:
                if r % 2 == 0:
                    store.unset_capabilities(WRITE, reason="storm")
                else:
                    store.set_capabilities(WRITE)
            await asyncio.sleep(0.05)
        assert stream.pending() == 1000 and stream.statistics()["writes"] == 0
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 5.0
        assert stream.closed and stream.pending() == 0
        assert stream.on_change not in manager._instruments._change
        assert len(app[EVENT_STREAMS]) == 0
        await client.close()
