"""The one place where errors become responses: every error of the app is JSON."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from .._store import Store
from ..errors import StoreError
from ._errors import BadArgument, bad_request, error_response, http_error_response, json_response
from ._keys import STORES

__all__ = ["error_middleware"]

log = logging.getLogger("aiostore.web")


def _store_of(request: web.Request) -> Store | None:
    manager = request.config_dict.get(STORES)
    name = request.match_info.get("store")
    if manager is None or name is None or name not in manager:
        return None
    return manager[name]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Store errors by the status table, bad arguments as 400, aiohttp's own errors (the
    router's 404 and 405 too) and anything unexpected (500) — all as JSON
    ``{"error": name, "message": text}``. A client that went away is one INFO line."""
    try:
        return await handler(request)
    except StoreError as exc:
        return error_response(exc, _store_of(request))
    except BadArgument as exc:
        return bad_request(str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors stay as they are
        return http_error_response(exc, request)
    except ConnectionError as exc:
        # The client went away (mid-download, mid-upload): nothing to answer, nothing broken.
        log.info("%s %s: the client went away (%s)", request.method, request.path, exc)
        return web.Response(status=499)
    except Exception:
        log.exception("%s %s failed unexpectedly", request.method, request.path)
        return json_response(
            {"error": "InternalError", "message": "unexpected server error (see the log)"},
            status=500,
        )
