"""Request bodies made of several pieces read, seek and send as their concatenation."""

from __future__ import annotations

import io

from aiostore.drivers.s3._body import SLICE, Body


class _Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes | memoryview) -> None:
        self.writes.append(bytes(data))


def _pieces() -> tuple[list[bytes | bytearray | memoryview], bytes]:
    pieces: list[bytes | bytearray | memoryview] = [
        b"abc",
        bytearray(b""),
        memoryview(b"0123456789")[2:8],
        b"x" * (SLICE + 5),
        bytearray(b"tail"),
    ]
    return pieces, b"".join(bytes(p) for p in pieces)


def test_reads_and_seeks_across_pieces() -> None:
    pieces, whole = _pieces()
    body = Body(pieces)
    assert len(body) == len(whole) and body.size == len(whole)
    got = b""
    while chunk := body.read(7):
        got += chunk
    assert got == whole and body.read() == b""
    assert body.seek(4) == 4 and body.read(5) == whole[4:9]
    body.seek(-6, io.SEEK_END)
    assert body.read() == whole[-6:]
    body.seek(2)
    assert b"".join(body.views()) == whole[2:] and len(body) == len(whole) - 2
    body.seek(0)
    assert body.decode("latin-1") == whole.decode("latin-1")


async def test_sends_every_piece_in_bounded_slices() -> None:
    pieces, whole = _pieces()
    writer = _Writer()
    await Body(pieces).write_with_length(writer, None)  # type: ignore[arg-type]
    assert b"".join(writer.writes) == whole
    assert max(len(w) for w in writer.writes) <= SLICE
    limited = _Writer()
    body = Body(pieces)
    body.seek(1)
    await body.write_with_length(limited, 10)  # type: ignore[arg-type]
    assert b"".join(limited.writes) == whole[1:11]
    assert Body([]).read() == b"" and Body(b"").size == 0
