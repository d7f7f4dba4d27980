"""A token at the door: ``Authorization: Bearer <token>`` on every request but the dashboard's
own page and assets (which hold no data and ask the user for the token)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from ..errors import BadStoreConfiguration
from ._errors import json_response

__all__ = ["Tokens", "read_token", "refusal", "token_middleware"]

#: Methods the read-only token allows.
READ_METHODS: Final = frozenset({"GET", "HEAD"})
#: Paths anyone may fetch: the dashboard page and its script and style.
PUBLIC_PATHS: Final = ("/", "/dashboard/")


@dataclass(frozen=True, slots=True, repr=False)
class Tokens:
    """The full token and, optionally, a read-only one (never shown by ``repr``)."""

    full: str
    read: str | None = None

    def __repr__(self) -> str:
        return f"Tokens(full=***, read={'***' if self.read else None})"


def read_token(path: str, option: str) -> str:
    """The token in the file ``path``; surrounding white space (a final newline) is ignored.

    Raises:
        BadStoreConfiguration: the file cannot be read, is empty, or holds more than one line
            of visible ASCII.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
    except OSError as exc:
        raise BadStoreConfiguration(
            f"cannot read the token file {path!r}: {exc.strerror}", option=option
        ) from exc
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or len(raw) > 4096 or not all(33 <= ord(c) < 127 for c in token):
        raise BadStoreConfiguration(
            f"the token file {path!r} must hold one token of 1-4096 visible ASCII characters",
            option=option,
        )
    return token


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _equal(given: str, expected: str) -> bool:
    # Constant time in the content (the length of a token is no secret worth hiding).
    return hmac.compare_digest(given.encode(), expected.encode())


def _is_public(path: str) -> bool:
    return path == PUBLIC_PATHS[0] or path.startswith(PUBLIC_PATHS[1])


def refusal(request: web.Request, tokens: Tokens) -> web.Response | None:
    """The 401 or 403 for ``request``, or None when it may pass."""
    if _is_public(request.path) and request.method in READ_METHODS:
        return None
    given = _bearer(request)
    if given is not None and _equal(given, tokens.full):
        return None
    if given is not None and tokens.read is not None and _equal(given, tokens.read):
        if request.method in READ_METHODS:
            return None
        return json_response(
            {
                "error": "Forbidden",
                "message": f"the read-only token allows GET and HEAD, not {request.method}",
            },
            status=403,
        )
    challenge = 'Bearer realm="aiostore"'
    if given is not None:
        challenge += ', error="invalid_token"'
    return json_response(
        {
            "error": "Unauthorized",
            "message": "this service needs 'Authorization: Bearer <token>'"
            if given is None
            else "the bearer token is not valid",
        },
        status=401,
        headers={hdrs.WWW_AUTHENTICATE: challenge},
    )


def token_middleware(tokens: Tokens) -> Middleware:
    """Answer 401 (``WWW-Authenticate: Bearer``) without a valid token and 403 for a write
    with the read-only token; the dashboard page and assets stay public. (aiohttp runs a
    route's ``Expect: 100-continue`` handler before any middleware: the PUT's calls
    :func:`refusal` itself.)"""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = refusal(request, tokens)
        return refused if refused is not None else await handler(request)

    return check_token
