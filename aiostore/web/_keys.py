"""The application keys (typed ``web.AppKey``) that aiostore.web stores in an application."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .._manager import StoreManager
from ._events import EventStreams

__all__ = ["EVENT_STREAMS", "STORES"]

#: The application's :class:`~aiostore.StoreManager` (``app[aiostore.web.STORES]``).
STORES: Final = web.AppKey("aiostore.stores", StoreManager)
#: The open ``/events`` streams, ended when the application shuts down.
EVENT_STREAMS: Final = web.AppKey("aiostore.event_streams", EventStreams)
