"""aiohttp integration: the manager in an app's lifetime, a REST object service, live events and
a capability dashboard.

.. code-block:: python

    from aiohttp import web
    import aiostore.web

    app = web.Application()
    aiostore.web.setup(app, {"stores": {"mem": {"driver": "memory"}}})
    app.add_routes(aiostore.web.object_routes())
    web.run_app(app, host="127.0.0.1", port=8080)

``app[aiostore.web.STORES]`` is the :class:`~aiostore.StoreManager` (a typed ``web.AppKey``).
"""

from __future__ import annotations

from ._app import ManagerOrConfig as ManagerOrConfig
from ._app import create_app as create_app
from ._app import setup as setup
from ._errors import status_for as status_for
from ._keys import STORES as STORES
from ._metrics import PrometheusInstrument as PrometheusInstrument
from ._metrics import metrics_for as metrics_for
from ._metrics import metrics_routes as metrics_routes
from ._routes import META_HEADER as META_HEADER
from ._routes import object_routes as object_routes
from ._server_options import ServerOptions as ServerOptions

__all__ = [
    "META_HEADER",
    "STORES",
    "ManagerOrConfig",
    "PrometheusInstrument",
    "ServerOptions",
    "create_app",
    "metrics_for",
    "metrics_routes",
    "object_routes",
    "setup",
    "status_for",
]
