"""Reading one object: one version, described by its own GET response, resumed after a break.

The reader's :attr:`~S3Reader.info` comes from the GET response that carries the body (size
from ``Content-Range`` or ``Content-Length``, ``Last-Modified``, metadata, ``ETag``), never from
a separate HEAD. A body that breaks mid-way is resumed with a ranged GET from where it broke,
sent with ``If-Match: <etag>``: a changed object fails the read with ``ChecksumMismatch``
instead of splicing two versions. The first GET and every resumption share one attempt budget:
one read makes at most ``max_attempts`` GETs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import ChecksumMismatch
from ...sdk import Attempts, DriverReader, ObjectInfo
from ._errors import describe, transient
from ._metadata import metadata_of
from ._options import READ_CHUNK

if TYPE_CHECKING:
    from ._session import S3Session

__all__ = ["S3Reader", "byte_range", "info_of"]

log = logging.getLogger("aiostore.s3")


def byte_range(offset: int, length: int | None) -> str | None:
    """The ``Range`` header for ``length`` bytes from ``offset`` (None: the whole object)."""
    if length is None:
        return f"bytes={offset}-" if offset else None
    return f"bytes={offset}-{offset + length - 1}"


def info_of(key: str, response: Mapping[str, Any]) -> ObjectInfo:
    """The object a GET or HEAD response describes: its full size (a ranged GET's
    ``Content-Range: bytes a-b/size``), modification time, metadata and ETag."""
    size = int(response["ContentLength"])
    content_range = response.get("ContentRange")
    if content_range:
        total = str(content_range).rpartition("/")[2]
        if total.isdigit():
            size = int(total)
    modified = response.get("LastModified")
    return ObjectInfo(
        key,
        size,
        modified.timestamp() if modified is not None else None,
        metadata_of(response.get("Metadata")),
        response.get("ETag"),
    )


class S3Reader(DriverReader):
    """The body of one GetObject, read in chunks (see the module docstring)."""

    def __init__(
        self,
        session: S3Session,
        key: str,
        response: Mapping[str, Any],
        start: int,
        budget: Attempts,
    ) -> None:
        self._session = session
        self._key = key
        self._body: Any = response["Body"]
        self._etag: str | None = response.get("ETag")
        self._start = start
        self._pos = 0
        self._budget = budget
        self.size = int(response["ContentLength"])
        self.info = info_of(key, response)

    async def read_chunk(self) -> bytes:
        while self._body is not None:
            try:
                chunk: bytes = await self._body.read(READ_CHUNK)
            except Exception as exc:
                await self._resume(exc)
                continue
            self._pos += len(chunk)
            return chunk
        return b""

    async def _resume(self, exc: Exception) -> None:
        session = self._session
        budget = self._budget
        self._close_body()
        if budget.left <= 0 or not transient(exc):
            raise session.fail(exc, "GetObject", key=self._key, write=False, attempts=budget.made)
        log.info(
            "store %r: S3 GetObject %r broke after %d of %d bytes (%s); resuming (attempt %d of"
            " %d)",
            session.store,
            self._key,
            self._pos,
            self.size,
            session.scrub(describe(exc)),
            budget.made + 1,
            budget.limit,
        )
        remaining = self.size - self._pos
        first = self._start + self._pos
        response = await session.get(
            self._key, f"bytes={first}-{first + remaining - 1}", budget=budget, if_match=self._etag
        )
        if (
            response is None
            or int(response["ContentLength"]) != remaining
            or (self._etag is not None and response.get("ETag") != self._etag)
        ):
            if response is not None:
                response["Body"].close()
            raise ChecksumMismatch("the object changed while it was being read", key=self._key)
        self._body = response["Body"]

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    async def aclose(self) -> None:
        # Closing an unfinished body drops its connection instead of returning it to the pool.
        self._close_body()
