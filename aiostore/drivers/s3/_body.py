"""Request bodies that botocore reads and aiohttp sends without copying them whole.

Given ``bytes``, botocore wraps a PutObject or UploadPart body in ``io.BytesIO`` and aiohttp's
payload for a BytesIO calls ``getbuffer()``, which un-shares — copies — the whole body for the
time of the request: one more part-sized copy per part in flight. A :class:`Body` is both what
botocore wants (a seekable file-like object: it reads it in bounded chunks to sign it and to
compute checksums, then seeks back) and an aiohttp :class:`~aiohttp.payload.Payload`, which
aiohttp sends as it is: slices of the caller's buffers, never the whole of it copied.

A body is one buffer or a sequence of them (a multipart part made of the source's own chunks,
see ``_multipart.PartBuffer``): nothing joins them.

A body is read from its start by each request; build a new one per attempt.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final, TypeAlias

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

__all__ = ["Body", "Buffer", "Data"]

#: Bytes handed to the transport per write (what it copies at most when the socket is full).
SLICE: Final = 256 * 1024

Buffer: TypeAlias = bytes | bytearray | memoryview
#: What a body sends: one buffer, or the concatenation of several.
Data: TypeAlias = Buffer | Sequence[Buffer]


class Body(Payload):
    """A read-only, seekable view of ``data`` (bytes, a bytearray or a memoryview of bytes, or
    a sequence of them read as their concatenation)."""

    def __init__(self, data: Data) -> None:
        if isinstance(data, (bytes, bytearray, memoryview)):
            pieces = [memoryview(data).cast("B")]
        else:
            pieces = [memoryview(d).cast("B") for d in data]
        pieces = [p for p in pieces if len(p)] or [memoryview(b"")]
        super().__init__(pieces[0], content_type="application/octet-stream")
        self._pieces = pieces
        self._pos = 0
        self._length = sum(len(p) for p in pieces)
        self._size = self._length

    # -- the file-like side (botocore) ----------------------------------------------------------
    def __len__(self) -> int:
        return max(self._length - self._pos, 0)

    def __bool__(self) -> bool:
        return True  # an empty body is still a body (botocore tests ``if not body``)

    def read(self, size: int | None = -1) -> bytes:
        start = self._pos
        end = self._length if size is None or size < 0 else min(start + size, self._length)
        self._pos = max(end, start)
        if end <= start:
            return b""
        return b"".join(self._slices(start, end))

    def _slices(self, start: int, end: int) -> list[memoryview]:
        """The views of bytes ``start`` to ``end`` (no copy)."""
        out: list[memoryview] = []
        offset = 0
        for piece in self._pieces:
            n = len(piece)
            if offset + n > start and offset < end:
                out.append(piece[max(start - offset, 0) : min(end - offset, n)])
            offset += n
            if offset >= end:
                break
        return out

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def views(self) -> list[memoryview]:
        """What is left to read, as views of the pieces (no copy)."""
        return self._slices(self._pos, self._length)

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    # -- the payload side (aiohttp) -------------------------------------------------------------
    @property
    def size(self) -> int:
        return max(self._length - self._pos, 0)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self.views()).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        end = (
            self._length
            if content_length is None
            else min(self._length, self._pos + content_length)
        )
        for view in self._slices(self._pos, end):
            for start in range(0, len(view), SLICE):
                await writer.write(view[start : start + SLICE])

    def __repr__(self) -> str:
        return f"<Body {self._length} bytes in {len(self._pieces)} pieces at {self._pos}>"
