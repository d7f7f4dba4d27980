"""Reading one version of a Swift object: the GET's headers describe it; a dropped body resumes
with a ranged GET pinned to that version (``If-Match`` where the server honours it, the ETag
compared in any case)."""

from __future__ import annotations

import base64
import email.utils
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import aiohttp

from ...errors import BackendUnavailable
from ...sdk import Attempts, DriverReader, Metadata, ObjectInfo
from ._errors import errors

__all__ = ["SwiftReader", "decode_metadata", "encode_metadata", "info_from_headers"]

#: aiostore metadata travels as base64 JSON in numbered ``X-Object-Meta-Aiostore-Json-NNN``
#: headers of at most this many characters (Swift limits one metadata value to 256 bytes).
_META: Final = "X-Object-Meta-Aiostore-Json-"
_PIECE: Final = 240
_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+)")

#: ``open(offset)`` → a response for bytes from ``offset`` (the session's ranged GET).
Refetch = Callable[[int, Attempts], Awaitable[aiohttp.ClientResponse]]


def encode_metadata(metadata: Metadata) -> dict[str, str]:
    if not metadata:
        return {}
    text = base64.b64encode(json.dumps(metadata, separators=(",", ":")).encode()).decode()
    pieces = [text[i : i + _PIECE] for i in range(0, len(text), _PIECE)]
    return {f"{_META}{i:03d}": piece for i, piece in enumerate(pieces)}


def decode_metadata(headers: Mapping[str, str]) -> Metadata:
    prefix = _META.lower()
    pieces = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith(prefix))
    if not pieces:
        return {}
    try:
        value = json.loads(base64.b64decode("".join(v.strip() for _, v in pieces)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def info_from_headers(key: str, headers: Mapping[str, str], size: int) -> ObjectInfo:
    modified = None
    last = headers.get("Last-Modified")
    if last:
        try:
            modified = email.utils.parsedate_to_datetime(last).timestamp()
        except (TypeError, ValueError):
            modified = None
    etag = headers.get("ETag")
    return ObjectInfo(
        key, size, modified, decode_metadata(headers), etag.strip('"') if etag else None
    )


def full_size(resp: aiohttp.ClientResponse) -> int:
    """The whole object's size from a 200 or 206 answer."""
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        if match is None:
            raise BackendUnavailable(f"bad Content-Range {resp.headers.get('Content-Range')!r}")
        return int(match[3])
    return int(resp.headers.get("Content-Length", "0"))


class SwiftReader(DriverReader):
    """Streams one GET's body; resumes a dropped body from where it broke, same version only."""

    def __init__(
        self,
        resp: aiohttp.ClientResponse | None,
        *,
        info: ObjectInfo,
        offset: int,
        size: int,
        refetch: Refetch,
        budget: Attempts,
        chunk_size: int = 1 << 20,
    ) -> None:
        self.info = info
        self._key = info.key
        self.size = size
        self._resp = resp
        self._pos = offset
        self._left = size
        self._refetch = refetch
        self._budget = budget
        self._chunk = chunk_size

    async def read_chunk(self) -> bytes:
        with errors.mapping(key=self._key, operation="read"):
            return await self._next()

    async def _next(self) -> bytes:
        while self._left > 0:
            if self._resp is None:
                self._resp = await self._refetch(self._pos, self._budget)
            try:
                chunk = await self._resp.content.read(min(self._chunk, self._left))
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
                self._drop()
                if self._budget.left <= 0:
                    raise
                continue  # resume from self._pos with the next attempt of the budget
            if not chunk:
                self._drop()
                if self._budget.left <= 0:
                    raise BackendUnavailable("the object's body ended early")
                continue
            self._pos += len(chunk)
            self._left -= len(chunk)
            return chunk
        self._drop()
        return b""

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    async def aclose(self) -> None:
        self._left = 0
        self._drop()
