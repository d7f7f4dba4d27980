"""The handlers of the stores, the operator's overrides, the event stream and the dashboard.

Handlers raise; :func:`~aiostore.web._middleware.error_middleware` turns every error into its
JSON response. The few settings of a route table (heartbeat, body timeout, upload limit) come in
a :class:`~aiostore.web._request.RouteSettings` bound with :func:`functools.partial` by
:func:`~aiostore.web.object_routes`. The object handlers are in :mod:`aiostore.web._objects`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final

from aiohttp import hdrs, web

from .._manager import StoreManager
from ..capabilities.flags import NAMED, Capability
from ._errors import BadArgument, json_response
from ._events import ChangeStream, snapshot_event, sse, summary_event
from ._keys import EVENT_STREAMS
from ._objects import info_dict
from ._paging import StoreQuery, store_page
from ._request import RouteSettings, int_arg, manager_of, store_of

__all__ = [
    "ASSETS",
    "Dashboard",
    "asset",
    "change_capabilities",
    "events",
    "get_store",
    "index",
    "list_objects",
    "list_stores",
    "probe_store",
]

log = logging.getLogger("aiostore.web")

#: The dashboard's files, served from the package (no build step, nothing from a CDN).
ASSETS: Final = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}
_MAX_LIST: Final = 10_000


# -- stores -------------------------------------------------------------------------------------


async def list_stores(request: web.Request) -> web.StreamResponse:
    """``GET /stores``: the manager's snapshot; with ``?q=&state=&sort=&limit=&cursor=``
    (or ``offset=``), one page of the stores that match (see :func:`store_page`)."""
    manager = manager_of(request)
    query = StoreQuery.parse(request)
    if query is None:
        return json_response(manager.snapshot())
    return json_response(store_page(manager, query))


async def get_store(request: web.Request) -> web.StreamResponse:
    """``GET /stores/{store}``: one store's snapshot entry."""
    manager = manager_of(request)
    store = manager[request.match_info["store"]]
    return json_response(_entry(manager, store.name))


async def probe_store(request: web.Request) -> web.StreamResponse:
    """``POST /stores/{store}/probe``: probe now; the store's snapshot entry afterwards."""
    manager = manager_of(request)
    store = manager[request.match_info["store"]]
    await store.probe()
    return json_response(_entry(manager, store.name))


async def list_objects(request: web.Request) -> web.StreamResponse:
    """``GET /stores/{store}/objects?prefix=&limit=``: up to ``limit`` objects."""
    store = store_of(request)
    prefix = request.query.get("prefix", "")
    limit = int_arg(request, "limit", 1000, 1, _MAX_LIST)
    objects: list[dict[str, Any]] = []
    truncated = False
    lister = store.list(prefix)
    try:
        async for info in lister:
            if len(objects) == limit:
                truncated = True
                break
            objects.append(info_dict(info))
    finally:
        await lister.aclose()
    return json_response(
        {"store": store.name, "prefix": prefix, "objects": objects, "truncated": truncated}
    )


#: The longest operator reason kept (it shows in errors, the snapshot and the dashboard).
_MAX_REASON: Final = 500


def _capability_names(body: dict[str, Any], field: str) -> Capability:
    names = body[field]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BadArgument(f"{field!r} must be a non-empty list of capability names")
    known = {str(c.name): c for c in NAMED}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadArgument(
            f"unknown capabilities {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
        )
    caps = Capability.NONE
    for name in names:
        caps |= known[name]
    return caps


async def change_capabilities(request: web.Request) -> web.StreamResponse:
    """``POST /stores/{store}/capabilities``: an operator's override.

    ``{"unset": [names], "reason": "..."}`` turns capabilities off whatever probing says (the
    reason shows in errors, the snapshot and the dashboard); ``{"set": [names]}`` lifts that
    again (never above the configuration; what probing revoked stays revoked). 200 with the
    store's snapshot entry.
    """
    manager = manager_of(request)
    store = manager[request.match_info["store"]]
    try:
        body = await request.json(loads=json.loads)
    except ValueError as exc:
        raise BadArgument(f"the body must be JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadArgument('the body must be {"unset": [...], "reason": "..."} or {"set": [...]}')
    extra = set(body) - {"unset", "set", "reason"}
    if extra or ("unset" in body) == ("set" in body):
        raise BadArgument(
            'the body must be {"unset": [...], "reason": "..."} or {"set": [...]}'
            + (f"; unknown fields: {', '.join(sorted(map(str, extra)))}" if extra else "")
        )
    if "set" in body:
        if "reason" in body:
            raise BadArgument("'reason' goes with 'unset' only")
        store.set_capabilities(_capability_names(body, "set"))
    else:
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > _MAX_REASON:
            raise BadArgument(f"'reason' must be a string of at most {_MAX_REASON} characters")
        caps = _capability_names(body, "unset")
        store.unset_capabilities(caps, reason=reason.strip() or "unset by an operator")
        log.info("store %s: %s unset by an operator: %s", store.name, caps.names, reason)
    return json_response(_entry(manager, store.name))


# -- events and the dashboard -------------------------------------------------------------------


async def events(
    settings: RouteSettings, coalesce: float, request: web.Request
) -> web.StreamResponse:
    """``GET /events``: a snapshot, then the capability changes, as Server-Sent Events.

    Changes are merged per store between two writes, at most one write per ``coalesce``
    seconds (see :class:`~aiostore.web._events.ChangeStream`). ``?snapshot=summary`` opens
    with the columns and store counts instead of the whole snapshot.
    """
    manager = manager_of(request)
    mode = request.query.get("snapshot", "full")
    if mode not in ("full", "summary"):
        raise BadArgument(f"query argument 'snapshot' must be full or summary, not {mode!r}")
    streams = request.config_dict[EVENT_STREAMS]
    resp = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
            hdrs.CACHE_CONTROL: "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    # Listen before the snapshot, so nothing between the two is lost (at worst a change
    # arrives that the snapshot already shows: applying it again changes nothing).

    def abort() -> None:
        if request.transport is not None:
            request.transport.abort()

    with ChangeStream(manager, abort) as stream:
        streams.add(stream)
        try:
            await resp.prepare(request)
            first = snapshot_event(manager) if mode == "full" else summary_event(manager)
            await stream.run(
                resp.write,
                b"retry: 2000\n\n" + sse("snapshot", first),
                heartbeat=settings.heartbeat,
                interval=coalesce,
            )
        except ConnectionError:
            log.debug("GET /events: the client went away")
        finally:
            streams.discard(stream)
    return resp


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The dashboard's page and assets, read once from the package (a few KiB)."""

    page: bytes
    assets: dict[str, bytes]

    @classmethod
    def load(cls) -> Dashboard:
        static = files("aiostore.web") / "static"
        return cls(
            page=(static / "index.html").read_bytes(),
            assets={name: (static / name).read_bytes() for name in ASSETS},
        )


async def index(dashboard: Dashboard, request: web.Request) -> web.StreamResponse:
    """``GET /``: the dashboard page."""
    return web.Response(
        body=dashboard.page,
        content_type="text/html",
        charset="utf-8",
        headers={hdrs.CACHE_CONTROL: "no-cache"},
    )


async def asset(dashboard: Dashboard, request: web.Request) -> web.StreamResponse:
    """``GET /dashboard/{asset}``: the page's script and style."""
    name = request.match_info["asset"]
    if name not in dashboard.assets:
        raise web.HTTPNotFound()
    return web.Response(
        body=dashboard.assets[name],
        content_type=ASSETS[name],
        charset="utf-8",
        headers={hdrs.CACHE_CONTROL: "no-cache"},
    )


def _entry(manager: StoreManager, name: str) -> dict[str, Any]:
    """One store's snapshot entry (built for that store alone)."""
    entry: dict[str, Any] = manager.snapshot([name])["stores"][name]
    return entry
