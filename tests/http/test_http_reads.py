"""Reads through the ``http`` driver against a real aiohttp static server that honours Range."""

from __future__ import annotations

import asyncio
import random

import pytest

from aiostore import Capability, InvalidKey, NotFound, ObjectInfo

from .support import BIG_SIZE, HELLO, MTIME, WebServer, http_store

BIG = random.Random(7).randbytes(BIG_SIZE)


async def test_whole_offset_length_and_both(server: WebServer) -> None:
    """Every read shape returns exactly the bytes of that slice."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("hello.txt") == HELLO
        assert await store.read("hello.txt", offset=7) == HELLO[7:]
        assert await store.read("hello.txt", length=5) == HELLO[:5]
        assert await store.read("hello.txt", offset=7, length=5) == HELLO[7:12]
        assert (
            await store.read("big.bin", offset=1_000_003, length=70_001)
            == (BIG[1_000_003:1_070_004])
        )
    ranges = [r.headers.get("Range") for r in server.seen("/data/hello.txt")]
    # The start-up probe first, then the four reads.
    assert ranges == ["bytes=0-0", None, "bytes=7-", "bytes=0-4", "bytes=7-11"]


async def test_reads_past_the_end(server: WebServer) -> None:
    """Past the end yields what exists; an offset at or beyond the size yields nothing."""
    size = len(HELLO)
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("hello.txt", offset=10, length=100) == HELLO[10:]
        assert await store.read("hello.txt", offset=size) == b""
        assert await store.read("hello.txt", offset=size + 50) == b""
        assert await store.read("hello.txt", offset=size + 50, length=3) == b""
        assert await store.read("empty.bin") == b""
        assert await store.read("empty.bin", length=4) == b""
        async with store.open("hello.txt", offset=size + 1) as reader:
            assert reader.size == 0
            assert await reader.read() == b""


async def test_length_zero_needs_an_existing_object(server: WebServer) -> None:
    """A zero-length read is b"" for an object that exists, NotFound otherwise."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("hello.txt", offset=3, length=0) == b""
        with pytest.raises(NotFound):
            await store.read("nope.txt", length=0)


async def test_missing_objects(server: WebServer) -> None:
    """404 is NotFound for read, open and stat; exists is False."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        with pytest.raises(NotFound) as err:
            await store.read("nope.txt")
        assert err.value.store == "web"
        assert err.value.key == "nope.txt"
        with pytest.raises(NotFound):
            await store.read("nope.txt", offset=2)
        with pytest.raises(NotFound):
            async with store.open("nope.txt"):
                pass
        with pytest.raises(NotFound):
            await store.stat("nope.txt")
        assert await store.exists("nope.txt") is False
        assert await store.exists("hello.txt") is True
        # A missing object is not a backend fault: nothing was revoked.
        assert store.capabilities == store.configured_capabilities


async def test_stat_reports_size_and_last_modified(server: WebServer) -> None:
    """stat is a HEAD: Content-Length, Last-Modified (epoch seconds) and the ETag."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        info = await store.stat("hello.txt")
        st = (server.root / "data" / "hello.txt").stat()
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'  # aiohttp's FileResponse
        assert info == ObjectInfo("hello.txt", len(HELLO), float(MTIME), {}, etag)
        assert (await store.stat("big.bin")).size == BIG_SIZE
    assert [r.method for r in server.seen("/data/big.bin")] == ["HEAD"]


async def test_streaming_a_large_object(server: WebServer) -> None:
    """open() streams in bounded chunks; size is known up front; the bytes are exact."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        async with store.open("big.bin") as reader:
            assert reader.size == BIG_SIZE
            chunks = [chunk async for chunk in reader]
        assert b"".join(chunks) == BIG
        assert len(chunks) > 4
        assert max(map(len, chunks)) <= 1 << 20
        async with store.open("big.bin", offset=123, length=2_000_000) as reader:
            assert reader.size == 2_000_000
            assert await reader.read() == BIG[123:2_000_123]


async def test_stopping_early_releases_the_connection(server: WebServer) -> None:
    """Leaving a reader after one chunk drops its connection; the store keeps working."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        for _ in range(3):
            async with store.open("big.bin") as reader:
                first = await reader.__anext__()
                assert first == BIG[: len(first)]
        assert await store.read("hello.txt") == HELLO
        stats = store.statistics()["sessions"]
        assert stats["opened"] == 1
        assert stats["users"] == 0


async def test_keys_are_quoted_under_base_url(server: WebServer) -> None:
    """Spaces, non-ASCII, '?' and '#' are percent-encoded: they stay part of the path."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("with space/ünï?#.txt") == b"unicode key"
        assert await store.read("dir/nested.txt") == b"nested"
        location = store.location("with space/ünï?#.txt")
    raw = "/data/with%20space/%C3%BCn%C3%AF%3F%23.txt"
    assert location == server.origin + raw
    assert [r.method for r in server.seen(raw)] == ["GET"]


async def test_traversal_keys_never_leave_base_url(server: WebServer) -> None:
    """Dot segments are InvalidKey before any request; encoded ones stay literal names."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        before = len(server.requests)
        for key in ("../secret.txt", "dir/../../secret.txt", "./hello.txt", "/secret.txt"):
            with pytest.raises(InvalidKey):
                await store.read(key)
            with pytest.raises(InvalidKey):
                await store.stat(key)
        assert len(server.requests) == before
        # The naive server would resolve "/data/%2e%2e/secret.txt" to the secret: the driver
        # must send the '%' itself encoded.
        with pytest.raises(NotFound):
            await store.read("%2e%2e/secret.txt")
        with pytest.raises(NotFound):
            await store.read("..%2fsecret.txt")
    assert server.seen("/data/%252e%252e/secret.txt")
    assert all(r.raw_path.startswith("/data/") for r in server.requests)


async def test_bytes_are_the_servers_bytes_never_decoded(server: WebServer) -> None:
    """The driver asks for identity encoding: a gzip sibling or body is never substituted."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("doc.txt") == b"the plain document\n"
        assert await store.read("doc.txt", offset=4, length=5) == b"plain"
    assert all(r.headers.get("Accept-Encoding") == "identity" for r in server.requests)


async def test_concurrent_reads_share_one_client_session(server: WebServer) -> None:
    """DRIVER_REUSABLE: 64 concurrent ranged reads on one session, every slice correct."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert Capability.DRIVER_REUSABLE in store.capabilities
        spans = [(i * 40_000, 1 + i * 97) for i in range(64)]
        results = await asyncio.gather(
            *(store.read("big.bin", offset=o, length=n) for o, n in spans)
        )
        for (o, n), got in zip(spans, results, strict=True):
            assert got == BIG[o : o + n]
        assert store.statistics()["sessions"]["opened"] == 1
