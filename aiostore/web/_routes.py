"""The route table of the object service: which handler answers which path."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from . import _handlers as h
from . import _objects as o
from ._events import DEFAULT_COALESCE
from ._request import META_HEADER, RouteSettings
from ._server_options import ServerOptions

__all__ = ["META_HEADER", "object_routes"]

_DEFAULTS = ServerOptions()
#: An object's path: the key may hold '/', and CR/LF (decoded from %0D%0A) must reach the
#: handler to be refused as an InvalidKey rather than fall through to a 404.
_OBJECT = r"/stores/{store}/objects/{key:[\s\S]+}"


def object_routes(
    *,
    dashboard: bool = True,
    heartbeat: float = 15.0,
    body_timeout: float = _DEFAULTS.body_timeout,
    max_uploads: int = _DEFAULTS.max_uploads,
    coalesce: float = DEFAULT_COALESCE,
) -> web.RouteTableDef:
    """The REST object service, the ``/events`` stream and (optionally) the dashboard.

    ``app.add_routes(aiostore.web.object_routes())`` after :func:`aiostore.web.setup` (which
    also installs the middleware that answers every error as JSON); the routes also work in a
    sub-application of the app that was set up.

    Routes:
        - ``GET /stores``: ``manager.snapshot()`` as JSON; ``GET /stores/{store}``: one store.
          With any of ``?q=`` (a case-insensitive substring of the name), ``?state=healthy``
          or ``degraded`` (something configured not held now), ``?sort=config`` (the
          default), ``name`` or ``degraded`` (degraded first), ``?limit=`` (1..1000, default
          1000) and ``?cursor=`` (the previous page's ``next``) or ``?offset=``: one page,
          the same fields with only the page's ``stores``, plus ``names`` (their order),
          ``capabilities`` (the 13 columns), ``total``, ``degraded``, ``matched``, ``offset``
          and ``next`` (null on the last page). A bad argument is 400.
        - ``POST /stores/{store}/probe``: probe now; the store's snapshot afterwards.
        - ``POST /stores/{store}/capabilities``: ``{"unset": [names], "reason": "..."}`` or
          ``{"set": [names]}``, an operator's override; the store's snapshot afterwards.
        - ``GET /stores/{store}/objects?prefix=&limit=1000``: a listing.
        - ``PUT /stores/{store}/objects/{key}``: streams the body into ``store.put`` (never
          buffered). ``Content-Length`` (or ``?size=``) is the expected size; ``?overwrite=true``
          replaces; ``?hash_algo=`` picks the multihash; ``X-Aiostore-Meta`` carries JSON
          metadata. 201 with the stored object as JSON. A body that stalls ``body_timeout``
          seconds is 408 (nothing is stored); beyond ``max_uploads`` running PUTs, 503 with
          ``Retry-After``.
        - ``GET /stores/{store}/objects/{key}``: streamed; one ``Range`` (``bytes=a-b``,
          ``bytes=a-``, ``bytes=-n``, honouring ``If-Range``) gives 206; an unsatisfiable one
          416 with ``Content-Range: bytes */size``; a malformed or multi-range ``Range`` is
          ignored (200, RFC 9110 section 14.2). Headers and body come from one open reader:
          one version.
        - ``HEAD`` the same: size, ``Last-Modified``, ``ETag``, ``Accept-Ranges``, metadata.
        - ``DELETE``: 204.
        - ``GET /events``: Server-Sent Events: ``event: snapshot`` first (with
          ``?snapshot=summary``: only the columns and the ``total`` and ``degraded`` counts),
          then ``event: capability`` (data: ``CapabilityChange.to_dict()`` plus ``changes``),
          and a ``: ping`` comment every ``heartbeat`` seconds. Changes are merged per store:
          at most one write every ``coalesce`` seconds, holding at most one event per store
          (``old`` is what the client last saw, ``new`` the latest state, ``changes`` how many
          changes it stands for). A storm or a slow client never queues more than one entry
          per store; the latest state of every store is always sent.
        - ``GET /``: the dashboard (when ``dashboard`` is true).

    Keys are the path after ``/objects/``, percent-decoded as strict UTF-8 (otherwise 400
    InvalidKey). Errors are JSON ``{"error": class name, "message": ...}``: Duplicate 409,
    NotFound 404, StorageFull 507, SizeMismatch/InvalidKey/InvalidRange/InvalidMetadata 400,
    unknown store 404, a transient capability error 503 with ``Retry-After`` (the store's probe
    interval), a permanent one 405 with ``Allow`` (or 501 for ranges), BackendUnavailable 503,
    OperationTimeout 504; the router's own 404 and 405 too.

    Args:
        dashboard: also serve ``GET /`` and its assets under ``/dashboard/``.
        heartbeat: seconds between ``: ping`` comments on ``/events``.
        body_timeout: seconds a PUT body may stall before the upload is abandoned (408).
        max_uploads: PUTs running at once; more are answered 503.
        coalesce: seconds between two writes of an ``/events`` stream (the first change
            after a quiet spell is written at once).
    """
    if not heartbeat > 0:
        raise ValueError(f"heartbeat must be > 0 seconds, not {heartbeat!r}")
    if not body_timeout > 0:
        raise ValueError(f"body_timeout must be > 0 seconds, not {body_timeout!r}")
    if not coalesce >= 0:
        raise ValueError(f"coalesce must be >= 0 seconds, not {coalesce!r}")
    if max_uploads < 1:
        raise ValueError(f"max_uploads must be at least 1, not {max_uploads!r}")
    settings = RouteSettings(heartbeat, body_timeout, max_uploads)
    routes = web.RouteTableDef()
    routes.get("/stores")(h.list_stores)
    routes.get("/stores/{store}")(h.get_store)
    routes.post("/stores/{store}/probe")(h.probe_store)
    routes.post("/stores/{store}/capabilities")(h.change_capabilities)
    routes.get("/stores/{store}/objects")(h.list_objects)
    routes.put(_OBJECT, expect_handler=partial(o.expect_put, settings))(
        partial(o.put_object, settings)
    )
    routes.head(_OBJECT)(o.head_object)
    routes.get(_OBJECT, allow_head=False)(o.get_object)
    routes.delete(_OBJECT)(o.delete_object)
    routes.get("/events")(partial(h.events, settings, coalesce))
    if dashboard:
        page = h.Dashboard.load()
        routes.get("/")(partial(h.index, page))
        routes.get("/dashboard/{asset}")(partial(h.asset, page))
    return routes
