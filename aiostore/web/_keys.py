"""The application keys (typed ``web.AppKey``) that aiostore.web stores in an application."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .._manager import StoreManager
from ._auth import Tokens
from ._events import EventStreams

__all__ = ["EVENT_STREAMS", "STORES", "TOKENS"]

#: The application's :class:`~aiostore.StoreManager` (``app[aiostore.web.STORES]``).
STORES: Final = web.AppKey("aiostore.stores", StoreManager)
#: The open ``/events`` streams, ended when the application shuts down.
EVENT_STREAMS: Final = web.AppKey("aiostore.event_streams", EventStreams)
#: The bearer tokens the app asks for (set by ``create_app`` when a token file is configured).
TOKENS: Final = web.AppKey("aiostore.tokens", Tokens)
