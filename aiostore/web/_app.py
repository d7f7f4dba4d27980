"""The manager's life inside an aiohttp application."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from .._manager import StoreManager
from ..errors import BadStoreConfiguration
from ._auth import Tokens, read_token, token_middleware
from ._events import EventStreams
from ._keys import EVENT_STREAMS, STORES, TOKENS
from ._metrics import metrics_for, metrics_routes
from ._middleware import error_middleware
from ._routes import object_routes
from ._server_options import ServerOptions, load_config

__all__ = ["ManagerOrConfig", "as_manager", "create_app", "setup"]

ManagerOrConfig = StoreManager | Mapping[str, Any] | str | os.PathLike[str]


def as_manager(manager_or_config: ManagerOrConfig) -> StoreManager:
    """A manager from itself, a config mapping or the path of a TOML file."""
    if isinstance(manager_or_config, StoreManager):
        return manager_or_config
    if isinstance(manager_or_config, str | os.PathLike):
        # A [server] table is the command line's business: validated, not the manager's.
        config, _server = load_config(manager_or_config)
        return StoreManager(config)
    return StoreManager(manager_or_config)


def setup(app: web.Application, manager_or_config: ManagerOrConfig) -> StoreManager:
    """Give ``app`` a :class:`~aiostore.StoreManager` that lives as long as the app runs.

    The manager is entered in a cleanup context: the start-up probe and the probe loops start with
    the app, and every probe task, session and file is closed on shutdown (after running requests
    finished; open ``/events`` streams are ended first). It also installs the middleware that
    answers every error of the app as JSON (store errors by the status table, aiohttp's own
    404 and 405 included). The manager is reachable as
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
    app.middlewares.append(error_middleware)
    metrics_for(manager)  # count from the start; GET /metrics (metrics_routes) shows them

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
    server: ServerOptions | None = None,
    **app_kwargs: Any,
) -> web.Application:
    """A ready application: :func:`setup`, :func:`~aiostore.web.object_routes` and
    ``GET /metrics`` (:func:`~aiostore.web.metrics_routes`).

    Args:
        manager_or_config: as for :func:`setup`.
        dashboard: serve the dashboard page at ``/``.
        heartbeat: seconds between ``: ping`` comments on ``/events``.
        server: the ``[server]`` options: upload limits (``body_timeout``, ``max_uploads``),
            ``events_coalesce`` and tokens (``token_file``, ``read_token_file``: read now;
            every request but the dashboard page then needs ``Authorization: Bearer
            <token>``). ``host`` and ``port`` are the caller's to use.
        app_kwargs: passed to :class:`aiohttp.web.Application`.

    Raises:
        BadStoreConfiguration: a bad configuration, or a token file that cannot be read.
    """
    server = server if server is not None else ServerOptions()
    middlewares = list(app_kwargs.pop("middlewares", ()))
    if server.token_file is not None:
        tokens = Tokens(
            read_token(server.token_file, "token_file"),
            None
            if server.read_token_file is None
            else read_token(server.read_token_file, "read_token_file"),
        )
        if tokens.read == tokens.full:
            raise BadStoreConfiguration(
                "the read-only token must differ from the full one", option="read_token_file"
            )
        # Outermost: a request without the token learns nothing, not even which paths exist.
        middlewares.insert(0, token_middleware(tokens))
    app = web.Application(middlewares=middlewares, **app_kwargs)
    if server.token_file is not None:
        app[TOKENS] = tokens
    setup(app, manager_or_config)
    app.add_routes(
        object_routes(
            dashboard=dashboard,
            heartbeat=heartbeat,
            body_timeout=server.body_timeout,
            max_uploads=server.max_uploads,
            coalesce=server.events_coalesce,
        )
    )
    app.add_routes(metrics_routes())
    return app
