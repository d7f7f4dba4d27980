"""The ``/events`` streams of one app: coalesced capability changes, the Server-Sent-Event
wire format.

A storm (a thousand stores flapping at once) must not become a thousand-deep queue per client,
nor a slow client a buffer that grows with the storm. Each stream therefore keeps, between two
writes, only the *latest* state of each store that changed (one entry per store: bounded by the
number of stores, whatever the rate of changes), and flushes at most once per ``interval``, a
batch of stores per write; a client that reads slowly holds its stream in ``write`` (aiohttp
waits for the transport to drain) while new changes keep merging into the entries not yet
written. The last change of every store is always
written: merging replaces an entry's new state, never drops it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .._manager import StoreManager
from ..capabilities.flags import NAMED, Capability
from ..capabilities.state import CapabilityChange

__all__ = [
    "BATCH",
    "DEFAULT_COALESCE",
    "ChangeStream",
    "EventStreams",
    "capability_columns",
    "snapshot_event",
    "sse",
    "summary_event",
]

#: Seconds between two flushes of one stream: the changes in between are merged per store.
DEFAULT_COALESCE: Final = 0.5
#: The most events one write holds (a few hundred bytes each).
BATCH: Final = 100
_PING: Final = b": ping\n\n"


@dataclass(slots=True)
class _Merged:
    """The changes of one store since the last write: the state before the first, the last."""

    old: Capability
    last: CapabilityChange
    count: int


class ChangeStream:
    """The undelivered capability changes of one ``/events`` client, merged per store.

    It is a manager instrument (:meth:`on_change` runs synchronously inside every change, so no
    queue stands between the change and the merge) and holds at most one entry per store.
    Use it as a context manager: entering registers it with the manager, leaving removes it.
    """

    def __init__(self, manager: StoreManager, abort: Callable[[], None] | None = None) -> None:
        self._manager = manager
        #: Drops the connection: :meth:`close` calls it when a client that stopped reading
        #: holds a write (otherwise shutting the app down would wait for that client).
        self._abort = abort
        self._writing = False
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._pending: dict[str, _Merged] = {}
        self._ready = asyncio.Event()
        self.closed = False
        #: Changes seen, events written, flushes and writes made.
        self.changes = 0
        self.events = 0
        self.flushes = 0
        self.writes = 0
        #: The most stores ever waiting at once, and the longest write in bytes.
        self.peak_pending = 0
        self.largest_write = 0

    def __enter__(self) -> ChangeStream:
        self._manager.instrument(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._manager.uninstrument(self)

    def on_change(self, change: CapabilityChange) -> None:
        """The instrument hook: merge ``change`` into its store's entry."""
        if threading.get_ident() != self._thread:
            # A manager driven from another thread: merge on our own loop, in order.
            self._loop.call_soon_threadsafe(self._merge, change)
        else:
            self._merge(change)

    def _merge(self, change: CapabilityChange) -> None:
        if self.closed:
            return
        self.changes += 1
        entry = self._pending.get(change.store)
        if entry is None:
            self._pending[change.store] = _Merged(change.old, change, 1)
            self.peak_pending = max(self.peak_pending, len(self._pending))
        else:
            entry.last = change
            entry.count += 1
        self._ready.set()

    def pending(self) -> int:
        """How many stores have changes waiting to be written."""
        return len(self._pending)

    def take(self, stores: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The waiting changes of ``stores`` (default: all), one event per store, and forget
        them.

        An event is ``CapabilityChange.to_dict()`` of the merged change (``old``: the state the
        client last saw, ``new``, ``reason`` and ``at``: the last change's) plus ``changes``:
        how many changes it stands for (``old == new`` when a store flapped back).
        """
        if stores is None:
            entries = list(self._pending.values())
            self._pending.clear()
        else:
            entries = [e for name in stores if (e := self._pending.pop(name, None)) is not None]
        out = []
        for entry in entries:
            last = entry.last
            merged = (
                last
                if entry.count == 1
                else CapabilityChange(last.store, entry.old, last.new, last.reason, last.at)
            )
            out.append(merged.to_dict() | {"changes": entry.count})
        return out

    async def run(
        self,
        write: Callable[[bytes], Awaitable[None]],
        first: bytes,
        *,
        heartbeat: float,
        interval: float,
    ) -> None:
        """Write ``first`` (the snapshot), then the merged changes until :meth:`close`: the
        first change after a quiet spell at once, then at most one flush per ``interval``
        seconds; ``: ping`` every ``heartbeat`` seconds of silence.

        A flush writes the stores that were waiting when it began, :data:`BATCH` events per
        write: a store waits in its entry (still merging) until its batch is written, so the
        transport never holds more than one batch beyond aiohttp's high-water mark.
        """
        await self._write(write, first)
        loop = asyncio.get_running_loop()
        next_flush = loop.time()
        while not self.closed:
            if not self._pending:
                self._ready.clear()
                try:
                    async with asyncio.timeout(heartbeat):
                        await self._ready.wait()
                except TimeoutError:
                    await self._write(write, _PING)
                continue
            delay = next_flush - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the storm keeps merging meanwhile
                continue
            next_flush = loop.time() + interval
            self.flushes += 1
            due = list(self._pending)
            for start in range(0, len(due), BATCH):
                events = self.take(due[start : start + BATCH])
                if not events:
                    continue  # closed meanwhile
                data = b"".join(sse("capability", event) for event in events)
                self.events += len(events)
                self.writes += 1
                self.largest_write = max(self.largest_write, len(data))
                # A slow client keeps us here (aiohttp drains the transport), while the
                # stores of the next batches keep merging.
                await self._write(write, data)

    async def _write(self, write: Callable[[bytes], Awaitable[None]], data: bytes) -> None:
        self._writing = True
        try:
            await write(data)
        finally:
            self._writing = False

    def close(self) -> None:
        """End :meth:`run` (the app shuts down, the client went away); forget what waits."""
        self.closed = True
        self._pending.clear()
        self._ready.set()
        if self._writing and self._abort is not None:
            self._abort()

    def statistics(self) -> dict[str, int]:
        """Counters of this stream (for tests and debugging)."""
        return {
            "changes": self.changes,
            "events": self.events,
            "flushes": self.flushes,
            "writes": self.writes,
            "pending": len(self._pending),
            "peak_pending": self.peak_pending,
            "largest_write": self.largest_write,
        }


class EventStreams:
    """The open ``/events`` streams of one app, closed when the app shuts down.

    aiohttp waits for running handlers before it runs the cleanup contexts, so endless
    Server-Sent-Event handlers must be told to finish in ``on_shutdown``: closing their
    stream ends their loop.
    """

    def __init__(self) -> None:
        self._streams: set[ChangeStream] = set()
        self.closed = False

    def add(self, stream: ChangeStream) -> None:
        if self.closed:
            stream.close()
        self._streams.add(stream)

    def discard(self, stream: ChangeStream) -> None:
        self._streams.discard(stream)

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[ChangeStream]:
        return iter(list(self._streams))

    async def close_all(self, app: web.Application | None = None) -> None:
        self.closed = True
        for stream in list(self._streams):
            stream.close()


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event; json.dumps never emits a newline, so the data fits one line."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def capability_columns() -> list[dict[str, Any]]:
    """The 13 named capabilities in order, with their bits: the dashboard's columns."""
    return [{"name": c.name, "value": int(c)} for c in NAMED]


def snapshot_event(manager: StoreManager) -> dict[str, Any]:
    """``manager.snapshot()`` plus the capability columns of the dashboard (name and bit)."""
    snap = manager.snapshot()
    # The dashboard takes its 13 columns (and their bits) from here: one source of truth.
    snap["capabilities"] = capability_columns()
    return snap


def summary_event(manager: StoreManager) -> dict[str, Any]:
    """The columns and store counts only: what a client that pages ``GET /stores`` needs
    (a few hundred bytes however many stores there are)."""
    degraded = sum(1 for s in manager if s.capabilities != s.configured_capabilities)
    return {"capabilities": capability_columns(), "total": len(manager), "degraded": degraded}
