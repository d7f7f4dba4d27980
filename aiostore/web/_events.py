"""The ``/events`` subscriptions of one app and the Server-Sent-Event wire format."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .._manager import StoreManager
from ..capabilities.flags import NAMED
from ..capabilities.state import Subscription

__all__ = ["EventStreams", "snapshot_event", "sse"]


class EventStreams:
    """The open ``/events`` subscriptions of one app, closed when the app shuts down.

    aiohttp waits for running handlers before it runs the cleanup contexts, so endless
    Server-Sent-Event handlers must be told to finish in ``on_shutdown``: closing their
    subscription ends their loop.
    """

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.closed = False

    def add(self, sub: Subscription) -> None:
        if self.closed:
            sub.close()
        self._subs.add(sub)

    def discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def __len__(self) -> int:
        return len(self._subs)

    async def close_all(self, app: web.Application | None = None) -> None:
        self.closed = True
        for sub in list(self._subs):
            sub.close()


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event; json.dumps never emits a newline, so the data fits one line."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def snapshot_event(manager: StoreManager) -> dict[str, Any]:
    """``manager.snapshot()`` plus the capability columns of the dashboard (name and bit)."""
    snap = manager.snapshot()
    # The dashboard takes its 13 columns (and their bits) from here: one source of truth.
    snap["capabilities"] = [{"name": c.name, "value": int(c)} for c in NAMED]
    return snap
