"""The manager's life inside an aiohttp application."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from aiohttp import web

from .._manager import StoreManager
from ..capabilities.state import Subscription

__all__ = ["STORES", "EventStreams", "ManagerOrConfig", "create_app", "setup"]

#: The application's :class:`~aiostore.StoreManager` (``app[aiostore.web.STORES]``).
STORES: Final = web.AppKey("aiostore.stores", StoreManager)

ManagerOrConfig = StoreManager | Mapping[str, Any] | str | os.PathLike[str]


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


EVENT_STREAMS: Final = web.AppKey("aiostore.event_streams", EventStreams)


def as_manager(manager_or_config: ManagerOrConfig) -> StoreManager:
    """A manager from itself, a config mapping or the path of a TOML file."""
    if isinstance(manager_or_config, StoreManager):
        return manager_or_config
    if isinstance(manager_or_config, str | os.PathLike):
        return StoreManager.from_file(manager_or_config)
    return StoreManager(manager_or_config)


def setup(app: web.Application, manager_or_config: ManagerOrConfig) -> StoreManager:
    """Give ``app`` a :class:`~aiostore.StoreManager` that lives as long as the app runs.

    The manager is entered in a cleanup context: the start-up probe and the probe loops start with
    the app, and every probe task, session and file is closed on shutdown (after running requests
    finished; open ``/events`` streams are ended first). It is reachable as
    ``app[aiostore.web.STORES]`` and, in handlers, ``request.config_dict[aiostore.web.STORES]``
    (which also works in sub-applications).

    Args:
        app: the application, not yet started.
        manager_or_config: a StoreManager that is not running (the app takes over its
            lifetime), a configuration mapping, or the path of a TOML configuration file.
            A bad configuration raises ``BadStoreConfiguration`` here, not at start-up.

    Returns:
        The manager.
    """
    if STORES in app:
        raise RuntimeError("aiostore.web.setup() was already called on this application")
    manager = as_manager(manager_or_config)
    streams = EventStreams()
    app[STORES] = manager
    app[EVENT_STREAMS] = streams

    async def run_manager(app: web.Application) -> AsyncIterator[None]:
        async with manager:
            yield

    app.cleanup_ctx.append(run_manager)
    app.on_shutdown.append(streams.close_all)
    return manager


def create_app(
    manager_or_config: ManagerOrConfig,
    *,
    dashboard: bool = True,
    heartbeat: float = 15.0,
    **app_kwargs: Any,
) -> web.Application:
    """A ready application: :func:`setup` plus :func:`~aiostore.web.object_routes`.

    Args:
        manager_or_config: as for :func:`setup`.
        dashboard: serve the dashboard page at ``/``.
        heartbeat: seconds between ``: ping`` comments on ``/events``.
        app_kwargs: passed to :class:`aiohttp.web.Application`.
    """
    from ._routes import object_routes

    app = web.Application(**app_kwargs)
    setup(app, manager_or_config)
    app.add_routes(object_routes(dashboard=dashboard, heartbeat=heartbeat))
    return app
