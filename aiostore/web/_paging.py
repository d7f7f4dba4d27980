"""``GET /stores`` with query arguments: filter, order and page the stores of a large manager.

Without any of these arguments ``GET /stores`` stays the manager's whole snapshot. With one of
them the answer is one page, in a stable order, with a cursor to the next page. A store's state
is read from its capability layers (one attribute each), so selecting a page of a thousand
stores costs a pass over plain attributes; only the stores of the page are answered in full.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .._manager import StoreManager
from .._store import Store
from ._errors import BadArgument
from ._events import capability_columns
from ._request import int_arg

__all__ = ["MAX_PAGE", "SORTS", "STATES", "StoreQuery", "store_page"]

#: The most stores one page holds (also the default ``limit``).
MAX_PAGE: Final = 1000
#: ``?state=``: healthy (current == configured) or degraded (something configured is not
#: held now: revoked by health probing or unset by an operator).
STATES: Final = ("healthy", "degraded")
#: ``?sort=``: configuration order, name order, or degraded stores first (then configuration
#: order).
SORTS: Final = ("config", "name", "degraded")
_ARGS: Final = frozenset({"limit", "cursor", "offset", "q", "state", "sort"})
_MAX_Q: Final = 200
_MAX_OFFSET: Final = 1 << 31

#: A store's place in the order: ``(index,)``, ``(name,)`` or ``(0 if degraded else 1, index)``.
Key = tuple[Any, ...]


def degraded(store: Store) -> bool:
    """Something configured is not held now (health revoked it, or an operator unset it)."""
    return store.capabilities != store.configured_capabilities


@dataclass(frozen=True, slots=True)
class StoreQuery:
    """The parsed query arguments of ``GET /stores``."""

    q: str = ""
    state: str | None = None
    sort: str = "config"
    limit: int = MAX_PAGE
    offset: int = 0
    after: Key | None = None

    @classmethod
    def parse(cls, request: web.Request) -> StoreQuery | None:
        """The query, or None when the request asks for the whole snapshot (no argument)."""
        query = request.query
        if not _ARGS & set(query):
            return None
        sort = query.get("sort", "config")
        if sort not in SORTS:
            raise BadArgument(
                f"query argument 'sort' must be one of {', '.join(SORTS)}, not {sort!r}"
            )
        state = query.get("state") or None
        if state is not None and state not in STATES:
            raise BadArgument(
                f"query argument 'state' must be one of {', '.join(STATES)}, not {state!r}"
            )
        q = query.get("q", "")
        if len(q) > _MAX_Q:
            raise BadArgument(f"query argument 'q' must be at most {_MAX_Q} characters")
        if "cursor" in query and "offset" in query:
            raise BadArgument("query arguments 'cursor' and 'offset' exclude each other")
        after = _decode_cursor(query["cursor"], sort) if "cursor" in query else None
        return cls(
            q=q.casefold(),
            state=state,
            sort=sort,
            limit=int_arg(request, "limit", MAX_PAGE, 1, MAX_PAGE),
            offset=int_arg(request, "offset", 0, 0, _MAX_OFFSET),
            after=after,
        )

    def key(self, index: int, store: Store, is_degraded: bool) -> Key:
        if self.sort == "name":
            return (store.name,)
        if self.sort == "degraded":
            return (0 if is_degraded else 1, index)
        return (index,)


def _encode_cursor(sort: str, key: Key) -> str:
    raw = json.dumps([sort, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> Key:
    bad = BadArgument(
        f"query argument 'cursor' is not a cursor of this listing (sort={sort}): {cursor[:80]!r}"
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(value, list) or not value or value[0] != sort:
        raise bad
    key = value[1:]
    if sort == "name":
        if len(key) == 1 and isinstance(key[0], str):
            return (key[0],)
        raise bad
    want = 2 if sort == "degraded" else 1
    if len(key) != want or not all(type(k) is int for k in key):
        raise bad
    return tuple(key)


def store_page(manager: StoreManager, query: StoreQuery) -> dict[str, Any]:
    """One page of the stores that match ``query``, in its order.

    The answer has the top-level fields of ``manager.snapshot()`` (``stores`` holds the page's
    stores only, in order) plus ``names`` (the page's order, as a list), ``capabilities`` (the
    13 columns), ``total`` (stores), ``degraded`` (degraded stores), ``matched`` (stores that
    match the filter), ``offset`` (the position of the page's first store among them) and
    ``next`` (the cursor of the next page, or null).
    """
    total_degraded = 0
    matched: list[tuple[Key, Store]] = []
    for index, store in enumerate(manager):
        is_degraded = degraded(store)
        total_degraded += is_degraded
        if query.q and query.q not in store.name.casefold():
            continue
        if query.state is not None and (query.state == "degraded") != is_degraded:
            continue
        matched.append((query.key(index, store, is_degraded), store))
    matched.sort(key=lambda item: item[0])
    if query.after is not None:
        after = query.after
        start = bisect.bisect_right(matched, after, key=lambda item: item[0])
    else:
        start = query.offset
    page = matched[start : start + query.limit]
    more = start + query.limit < len(matched)
    names = [store.name for _, store in page]
    # Only the page's stores: the selection above is cheap, a snapshot entry is not.
    snap = manager.snapshot(names)
    snap.update(
        names=names,
        capabilities=capability_columns(),
        total=len(manager),
        degraded=total_degraded,
        matched=len(matched),
        offset=min(start, len(matched)),
        next=_encode_cursor(query.sort, page[-1][0]) if more and page else None,
    )
    return snap
