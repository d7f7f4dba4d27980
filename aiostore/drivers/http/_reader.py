"""The reader of one GET: a response body yielded as it arrives, never more than ``size`` bytes,
resumed after a broken body — pinned to the first answer's ETag — within the read's one attempt
budget. Also the header parsing that turns an answer into the version it describes."""

from __future__ import annotations

import email.utils
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from ...errors import BackendUnavailable, StoreError, StoreRandomGetNotSupported
from ...sdk import Attempts, Capability, DriverReader, ObjectInfo
from ._errors import ERRORS, BodyEnded, ObjectChanged, retryable

__all__ = [
    "CONTENT_RANGE",
    "UNSATISFIED_RANGE",
    "HTTPReader",
    "Resume",
    "check_range",
    "content_length",
    "info_from",
    "strong_etag",
]

log = logging.getLogger("aiostore.drivers.http")

CONTENT_RANGE: Final = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.ASCII | re.IGNORECASE)
UNSATISFIED_RANGE: Final = re.compile(r"bytes\s+\*/(\d+)\s*", re.ASCII | re.IGNORECASE)
#: Metadata sent by an aiostore object service (JSON); a plain web server sends none.
META_HEADER: Final = "X-Aiostore-Meta"
_GONE: Final = frozenset({404, 410, 412, 416})

#: ``(headers) -> response``: one GET of the same URL (redirects followed, statuses checked).
Refetch = Callable[[Mapping[str, str]], Awaitable[aiohttp.ClientResponse]]


@dataclass(slots=True)
class Resume:
    """What a reader needs to ask again for the rest of the version it started on."""

    refetch: Refetch
    budget: Attempts
    etag: str
    #: The object's full size (from the first answer).
    total: int
    #: Offset in the object of the reader's first byte.
    start: int


class HTTPReader(DriverReader):
    """A response body, yielded as it arrives, never more than ``size`` bytes.

    ``size`` is -1 when the server declared no length (a chunked whole-object answer).
    ``info`` is parsed from the answer's headers when first asked for.
    """

    __slots__ = ("_content", "_headers", "_info", "_key", "_remaining", "_resp", "_resume", "size")

    def __init__(
        self,
        resp: aiohttp.ClientResponse | None,
        size: int,
        key: str,
        *,
        total: int | None = None,
        resume: Resume | None = None,
        info: ObjectInfo | None = None,
    ) -> None:
        self._resp = resp
        self._content = resp.content if resp is not None else None
        self._headers = (resp.headers, total) if resp is not None else None
        self._info = info
        self.size = size
        self._remaining = size  # -1: unknown, read to the end
        self._key = key
        self._resume = resume

    @property
    def info(self) -> ObjectInfo | None:
        if self._info is None and self._headers is not None:
            headers, total = self._headers
            self._info = info_from(self._key, total, headers)
        return self._info

    @info.setter
    def info(self, value: ObjectInfo | None) -> None:
        self._info = value

    async def read_chunk(self) -> bytes:
        while True:
            remaining = self._remaining
            content = self._content
            if remaining == 0 or content is None:
                self._finish()
                return b""
            try:
                chunk = await content.readany()
            except (aiohttp.ClientError, OSError) as exc:
                await self._recover(exc)
                continue
            except BaseException:
                self._abort()
                raise
            n = len(chunk)
            if not n:  # the body ended
                if remaining > 0:
                    await self._recover(BodyEnded(self.size - remaining, self.size))
                    continue
                self._finish()
                return chunk
            if remaining < 0:
                return chunk
            if n >= remaining:
                if n > remaining:
                    chunk = chunk[:remaining]  # the server sent more than it declared: drop it
                self._remaining = 0
                self._finish()
                return chunk
            self._remaining = remaining - n
            return chunk

    async def read_all(self) -> bytes:
        """Everything left, in one piece: the buffered read's path (one join at most)."""
        parts: list[bytes] = []
        while True:
            remaining = self._remaining
            content = self._content
            if remaining < 0:  # unknown size: chunk by chunk to the end
                while chunk := await self.read_chunk():
                    parts.append(chunk)
                break
            if remaining == 0 or content is None:
                self._finish()
                break
            try:
                # Not readexactly(): what it took before a failure would be lost to a resume.
                block = await content.read(remaining)
            except (aiohttp.ClientError, OSError) as exc:
                await self._recover(exc)
                continue
            except BaseException:
                self._abort()
                raise
            if not block:
                await self._recover(BodyEnded(self.size - remaining, self.size))
                continue
            remaining -= len(block)
            self._remaining = remaining
            if not remaining and not parts:  # the common case: the whole body at once
                self._finish()
                return block
            parts.append(block)
        return b"".join(parts)

    async def _recover(self, exc: Exception) -> None:
        """Resume after ``exc`` broke the body, or raise it translated."""
        self._abort()
        resume = self._resume
        if resume is None or self._remaining <= 0 or resume.budget.left <= 0:
            raise ERRORS.translate(exc, key=self._key, operation="reading the response body")
        if not retryable(exc):
            raise ERRORS.translate(exc, key=self._key, operation="reading the response body")
        done = self.size - self._remaining
        first = resume.start + done
        last = resume.start + self.size - 1
        log.info(
            "HTTP GET %r broke after %d of %d bytes (%s); resuming",
            self._key,
            done,
            self.size,
            exc,
        )
        headers = {
            "Range": f"bytes={first}-{last}",
            # If-Match: a changed object answers 412; If-Range: a server that ignores If-Match
            # but honours If-Range sends the whole new object (200) instead of a foreign range.
            "If-Match": resume.etag,
            "If-Range": resume.etag,
        }
        try:
            resp = await resume.refetch(headers)
        except Exception as failure:
            raise ERRORS.translate(failure, key=self._key, operation="resuming the read")
        try:
            self._check_resumed(resp, resume, first, last)
        except BaseException:
            resp.close()
            raise
        self._resp = resp
        self._content = resp.content

    def _check_resumed(
        self, resp: aiohttp.ClientResponse, resume: Resume, first: int, last: int
    ) -> None:
        key = self._key
        etag = resp.headers.get("ETag")
        if resp.status in _GONE or (etag is not None and etag != resume.etag):
            # 412: If-Match failed; 404/410/416: that version is gone.
            now = f"now {etag}" if etag is not None else f"HTTP {resp.status}"
            raise ERRORS.translate(
                ObjectChanged(f"version {resume.etag}, {now}; not splicing two versions"), key=key
            )
        size, total = check_range(resp, key, first, last - first + 1)
        if size != last - first + 1 or (total is not None and total != resume.total):
            raise ERRORS.translate(
                ObjectChanged(
                    f"the resumed answer covers {size} bytes of {total}, expected"
                    f" {last - first + 1} of {resume.total}"
                ),
                key=key,
            )

    def _finish(self) -> None:
        # Back to the pool if the body is complete; aiohttp closes the connection otherwise.
        resp, self._resp, self._content = self._resp, None, None
        if resp is not None:
            resp.release()

    def _abort(self) -> None:
        resp, self._resp, self._content = self._resp, None, None
        if resp is not None:
            resp.close()

    async def aclose(self) -> None:
        self._remaining = 0
        self._abort()


def check_range(
    resp: aiohttp.ClientResponse, key: str, offset: int, length: int | None
) -> tuple[int, int | None]:
    """(bytes to yield, full object size or None) of a 206 answering ``bytes=offset-…``.

    Anything but the range that was asked for raises: a wrong start, a range that stops short
    while the object goes on, one that ends beyond the object, a Content-Length below it, or a
    200 (the server ignores Range: taking bytes from the start would return wrong bytes).
    """
    status = resp.status
    headers = resp.headers
    if status == 200:
        err = StoreRandomGetNotSupported(
            f"asked for bytes {offset}-{'' if length is None else offset + length - 1}, the"
            " server answered 200 with the whole object: it ignores Range",
            key=key,
            operation="read",
            required=Capability.READ_RANDOM,
            reason="server ignores Range",
            transient=True,
        )
        err.revokes = Capability.READ_RANDOM
        raise err
    content_range = headers.get("Content-Range", "")
    match = CONTENT_RANGE.fullmatch(content_range)
    if status != 206:
        raise StoreError(f"unexpected answer from the server (HTTP {status})", key=key)
    if match is None:
        raise BackendUnavailable(
            f"the server answered a range request with Content-Range {content_range!r}"
            f" ({headers.get('Content-Type', 'no Content-Type')}); expected"
            f" 'bytes {offset}-…/…'",
            key=key,
        )
    start, last, total_text = int(match[1]), int(match[2]), match[3]
    if start != offset or last < start:
        raise BackendUnavailable(
            f"asked for bytes from {offset}, the server sent {content_range!r}", key=key
        )
    size = last - start + 1
    wanted = size if length is None else length
    total = None if total_text == "*" else int(total_text)
    if total is not None:
        # A range that stops short of what was asked while the object goes on would pass for
        # a read past the end: refuse it.
        expected = min(wanted, total - offset)
        if last >= total or size < expected:
            raise BackendUnavailable(
                f"asked for {wanted} bytes from {offset} of a {total}-byte object, the"
                f" server sent {content_range!r}",
                key=key,
            )
    size = min(size, wanted)
    declared = content_length(resp)
    if declared is not None and declared < size:
        raise BackendUnavailable(
            f"Content-Range {content_range!r} promises {size} bytes, Content-Length {declared}",
            key=key,
        )
    return size, total


def content_length(resp: aiohttp.ClientResponse) -> int | None:
    try:
        value = resp.content_length
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def info_from(key: str, size: int | None, headers: Mapping[str, str]) -> ObjectInfo | None:
    """The version an answer describes; None when its full size is unknown."""
    if size is None:
        return None
    return ObjectInfo(
        key,
        size,
        http_date(headers.get("Last-Modified")),
        _metadata(headers.get(META_HEADER)),
        headers.get("ETag"),
    )


def strong_etag(headers: Mapping[str, str]) -> str | None:
    """The answer's ETag when it can pin a resumed read (If-Match compares strong tags only)."""
    etag = headers.get("ETag")
    if etag is None or etag.startswith("W/") or len(etag) < 2 or not etag.endswith('"'):
        return None
    return etag


def http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _metadata(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        return {}  # not ours to judge: a plain server's header that happens to share the name
    return data if isinstance(data, dict) else {}
