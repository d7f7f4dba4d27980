"""Request bodies that botocore reads and aiohttp sends without copying them whole.

Given ``bytes``, botocore wraps a PutObject or UploadPart body in ``io.BytesIO`` and aiohttp's
payload for a BytesIO calls ``getbuffer()``, which un-shares — copies — the whole body for the
time of the request: one more part-sized copy per part in flight. A :class:`Body` is both what
botocore wants (a seekable file-like object: it reads it in bounded chunks to sign it and to
compute checksums, then seeks back) and an aiohttp :class:`~aiohttp.payload.Payload`, which
aiohttp sends as it is: slices of the caller's buffer, never the whole of it copied.

A body is read from its start by each request; build a new one per attempt.
"""

from __future__ import annotations

import io
from typing import Final

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

__all__ = ["Body"]

#: Bytes handed to the transport per write (what it copies at most when the socket is full).
SLICE: Final = 256 * 1024


class Body(Payload):
    """A read-only, seekable view of ``data`` (bytes, a bytearray or a memoryview of bytes)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        super().__init__(view, content_type="application/octet-stream")
        self._view = view
        self._pos = 0
        self._length = len(view)
        self._size = self._length

    # -- the file-like side (botocore) ----------------------------------------------------------
    def __len__(self) -> int:
        return self._length - self._pos

    def __bool__(self) -> bool:
        return True  # an empty body is still a body (botocore tests ``if not body``)

    def read(self, size: int | None = -1) -> bytes:
        start = self._pos
        end = self._length if size is None or size < 0 else min(start + size, self._length)
        self._pos = max(end, start)
        return bytes(self._view[start:end])

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

    def view(self) -> memoryview:
        """What is left to read, without a copy."""
        return self._view[self._pos :]

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    # -- the payload side (aiohttp) -------------------------------------------------------------
    @property
    def size(self) -> int:
        return max(self._length - self._pos, 0)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._view[self._pos :]).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = self._view[self._pos :]
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), SLICE):
            await writer.write(view[start : start + SLICE])

    def __repr__(self) -> str:
        return f"<Body {self._length} bytes at {self._pos}>"
