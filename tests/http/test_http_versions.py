"""One read = one version: the reader's ``info`` comes from the GET response itself, and a read
that resumes after a broken body is pinned to that version's ETag (never spliced), within one
attempt budget per read. Real servers on 127.0.0.1: aiohttp (its ``FileResponse`` honours Range
and If-Match) and raw TCP servers that break bodies on purpose and count requests."""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from aiostore import BackendUnavailable, ChecksumMismatch, NotFound, ObjectInfo, StoreManager
from aiostore.drivers.http import ATTEMPTS, HTTPReader, HTTPSession

from .support import HELLO, MTIME, RawHandler, RawServer, WebServer, read_request_head, store_config

StartRaw = Callable[[RawHandler], Awaitable[RawServer]]
DATA = random.Random(11).randbytes(300_000)
OTHER = random.Random(12).randbytes(300_000)
CUT = 100_000  # where the broken answers stop


def _etag(path: Path) -> str:
    """The ETag aiohttp's FileResponse sends for ``path`` (mtime in ns and size, in hex)."""
    st = path.stat()
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _range(lines: list[str]) -> tuple[int, int | None] | None:
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "range":
            match = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", value)
            assert match is not None, value
            return int(match[1]), int(match[2]) if match[2] else None
    return None


def _header(lines: list[str], wanted: str) -> str | None:
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == wanted:
            return value.strip()
    return None


@pytest.fixture
async def session_of() -> AsyncIterator[Callable[[str], Awaitable[HTTPSession]]]:
    """``await session_of(base_url)``: a driver session of a running manager (closed after)."""
    stack: list[StoreManager] = []
    contexts = []

    async def make(base_url: str) -> HTTPSession:
        manager = StoreManager(store_config(base_url, {"initial": False}))
        await manager.__aenter__()
        stack.append(manager)
        ctx = manager.session("web")
        session = await ctx.__aenter__()
        contexts.append(ctx)
        assert isinstance(session, HTTPSession)
        return session

    try:
        yield make
    finally:
        for ctx in reversed(contexts):
            await ctx.__aexit__(None, None, None)
        for manager in reversed(stack):
            await manager.__aexit__(None, None, None)


async def test_open_info_is_taken_from_the_get_response(
    server: WebServer, session_of: Callable[[str], Awaitable[HTTPSession]]
) -> None:
    """Size (full object), Last-Modified, ETag and metadata from the GET answer; no HEAD."""
    session = await session_of(server.base_url)
    path = server.root / "data" / "hello.txt"
    reader = await session.open("hello.txt", 0, None)
    try:
        assert reader.info == ObjectInfo("hello.txt", len(HELLO), float(MTIME), {}, _etag(path))
        assert await reader.read_chunk() == HELLO
    finally:
        await reader.aclose()
    # A range: the full size comes from Content-Range, not from the part's Content-Length.
    reader = await session.open("big.bin", 1000, 10)
    try:
        info = reader.info
        assert info is not None
        assert (info.size, info.etag) == (3 * 1024 * 1024 + 17, _etag(path.with_name("big.bin")))
        assert reader.size == 10
    finally:
        await reader.aclose()
    # Past the end (416): still the object's version.
    reader = await session.open("hello.txt", 100, None)
    try:
        assert reader.size == 0
        assert reader.info is not None and reader.info.size == len(HELLO)
    finally:
        await reader.aclose()
    assert all(r.method == "GET" for r in server.requests)

    async def with_meta(request: web.Request) -> web.StreamResponse:
        headers = {
            "ETag": '"v7"',
            "Last-Modified": email.utils.formatdate(MTIME, usegmt=True),
            "X-Aiostore-Meta": '{"owner":"ann","n":["1"]}',
        }
        return web.Response(body=b"abc", headers=headers)

    server.routes["/data/meta"] = with_meta
    reader = await session.open("meta", 0, None)
    try:
        assert reader.info == ObjectInfo(
            "meta", 3, float(MTIME), {"owner": "ann", "n": ["1"]}, '"v7"'
        )
    finally:
        await reader.aclose()
    info = await session.stat("meta")
    assert info == ObjectInfo("meta", 3, float(MTIME), {"owner": "ann", "n": ["1"]}, '"v7"')


async def _broken_then_files(
    server: WebServer, name: str, after_break: Callable[[Path], None]
) -> list[dict[str, str]]:
    """Route ``/data/<name>``: the first GET sends headers of the current file (as FileResponse
    would) and breaks off after CUT bytes, calling ``after_break(path)`` first; later requests
    are served by FileResponse (Range, If-Match). Returns the log of request headers."""
    path = server.root / "data" / name
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        if len(seen) > 1:
            return web.FileResponse(path)
        st = path.stat()
        resp = web.StreamResponse(
            headers={
                "ETag": _etag(path),
                "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                "Content-Length": str(st.st_size),
            }
        )
        await resp.prepare(request)
        await resp.write(path.read_bytes()[:CUT])
        after_break(path)
        assert request.transport is not None
        request.transport.close()
        return resp

    server.routes[f"/data/{name}"] = handler
    return seen


async def test_a_broken_body_resumes_pinned_to_the_etag(
    server: WebServer, session_of: Callable[[str], Awaitable[HTTPSession]]
) -> None:
    """The body breaks after CUT bytes; the object is unchanged: the read resumes with a Range
    from CUT and If-Match/If-Range on the first answer's ETag, and every byte is exact."""
    (server.root / "data" / "same.bin").write_bytes(DATA)
    seen = await _broken_then_files(server, "same.bin", lambda path: None)
    session = await session_of(server.base_url)
    etag = _etag(server.root / "data" / "same.bin")
    assert await session.read("same.bin", 0, None) == DATA
    assert len(seen) == 2
    assert seen[1]["Range"] == f"bytes={CUT}-{len(DATA) - 1}"
    assert seen[1]["If-Match"] == etag
    assert seen[1]["If-Range"] == etag
    # Streaming takes the same path.
    del seen[:]
    reader = await session.open("same.bin", 0, None)
    try:
        got = b"".join([chunk async for chunk in _chunks(reader)])
    finally:
        await reader.aclose()
    assert got == DATA and len(seen) == 2


async def _chunks(reader: HTTPReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read_chunk():
        yield chunk


@pytest.mark.parametrize("streaming", [False, True])
async def test_an_object_replaced_mid_read_is_never_spliced(
    server: WebServer, session_of: Callable[[str], Awaitable[HTTPSession]], streaming: bool
) -> None:
    """The object is replaced while its body is cut off: the resumed request is refused (412
    on If-Match) and the read fails clearly; no byte of the new version is ever yielded."""

    def replace(path: Path) -> None:
        path.write_bytes(OTHER)
        os.utime(path, (MTIME + 5, MTIME + 5))

    (server.root / "data" / "swap.bin").write_bytes(DATA)
    seen = await _broken_then_files(server, "swap.bin", replace)
    session = await session_of(server.base_url)
    got = b""
    with pytest.raises(ChecksumMismatch) as err:
        if streaming:
            reader = await session.open("swap.bin", 0, None)
            try:
                async for chunk in _chunks(reader):
                    got += chunk
            finally:
                await reader.aclose()
        else:
            got = await session.read("swap.bin", 0, None)
    assert "changed while it was read" in str(err.value)
    assert DATA.startswith(got) and len(got) <= CUT
    assert len(seen) == 2 and "If-Match" in seen[1]


async def test_a_server_ignoring_if_match_is_caught_by_the_etag(
    raw_server: StartRaw, session_of: Callable[[str], Awaitable[HTTPSession]]
) -> None:
    """A server that ignores If-Match and sends the new version's range: the ETag (or the
    total size) of the resumed answer differs, and the read fails instead of splicing."""
    versions = [(b'"one"', DATA), (b'"two"', OTHER)]
    requests: list[list[str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = await read_request_head(reader)
        requests.append(lines)
        etag, body = versions[min(len(requests), 2) - 1]
        wanted = _range(lines)
        start = 0 if wanted is None else wanted[0]
        status = b"200 OK" if wanted is None else b"206 Partial Content"
        head = b"HTTP/1.1 " + status + b"\r\nETag: " + etag
        if wanted is not None:
            head += f"\r\nContent-Range: bytes {start}-{len(body) - 1}/{len(body)}".encode()
        head += f"\r\nContent-Length: {len(body) - start}\r\n\r\n".encode()
        writer.write(head + body[start : CUT if len(requests) == 1 else None])
        await writer.drain()

    srv = await raw_server(handler)
    session = await session_of(srv.base_url)
    with pytest.raises(ChecksumMismatch) as err:
        await session.read("x", 0, None)
    assert "changed while it was read" in str(err.value)
    assert len(requests) == 2
    assert _header(requests[1], "if-match") == '"one"'


async def test_one_attempt_budget_per_read_resumes_included(
    raw_server: StartRaw, session_of: Callable[[str], Awaitable[HTTPSession]]
) -> None:
    """A server that answers 503 once, then breaks every body: the read makes exactly
    ATTEMPTS requests in all (first GET, retry, resumes) and fails BackendUnavailable."""
    requests: list[list[str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = await read_request_head(reader)
        requests.append(lines)
        if len(requests) == 1:
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        wanted = _range(lines)
        start = 0 if wanted is None else wanted[0]
        status = b"200 OK" if wanted is None else b"206 Partial Content"
        head = b"HTTP/1.1 " + status + b'\r\nETag: "one"'
        if wanted is not None:
            head += f"\r\nContent-Range: bytes {start}-{len(DATA) - 1}/{len(DATA)}".encode()
        head += f"\r\nContent-Length: {len(DATA) - start}\r\n\r\n".encode()
        writer.write(head + DATA[start : start + 1000])  # then the connection closes
        await writer.drain()

    srv = await raw_server(handler)
    session = await session_of(srv.base_url)
    for streaming in (False, True):
        del requests[:]
        with pytest.raises(BackendUnavailable):
            if streaming:
                reader = await session.open("x", 0, None)
                try:
                    async for _ in _chunks(reader):
                        pass
                finally:
                    await reader.aclose()
            else:
                await session.read("x", 0, None)
        assert len(requests) == ATTEMPTS
        ranges = [_range(lines) for lines in requests]
        assert ranges == [None, None, (1000, len(DATA) - 1)][:ATTEMPTS]


async def test_a_resumed_range_keeps_its_end(
    raw_server: StartRaw, session_of: Callable[[str], Awaitable[HTTPSession]]
) -> None:
    """A ranged read that breaks resumes from where it stopped to the same end byte."""
    requests: list[list[str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while lines := await read_request_head(reader):
            requests.append(lines)
            wanted = _range(lines)
            assert wanted is not None and wanted[1] is not None
            start, last = wanted
            writer.write(
                b'HTTP/1.1 206 Partial Content\r\nETag: "one"\r\n'
                + f"Content-Range: bytes {start}-{last}/{len(DATA)}\r\n".encode()
                + f"Content-Length: {last - start + 1}\r\n\r\n".encode()
            )
            if len(requests) == 1:
                writer.write(DATA[start : start + 5000])
                await writer.drain()
                return
            writer.write(DATA[start : last + 1])
            await writer.drain()

    srv = await raw_server(handler)
    session = await session_of(srv.base_url)
    assert await session.read("x", 10, 50_000) == DATA[10:50_010]
    assert [_range(lines) for lines in requests] == [(10, 50_009), (5010, 50_009)]


async def test_zero_length_open_reports_the_version(
    server: WebServer, session_of: Callable[[str], Awaitable[HTTPSession]]
) -> None:
    """length=0 asks the server once (HEAD) and still describes the object; missing → NotFound."""
    session = await session_of(server.base_url)
    reader = await session.open("hello.txt", 3, 0)
    try:
        assert reader.size == 0
        assert reader.info is not None and reader.info.size == len(HELLO)
    finally:
        await reader.aclose()
    with pytest.raises(NotFound):
        await session.open("nope", 0, 0)


@pytest.mark.parametrize("how", ["timeout", "cancel-twice", "task-group"])
async def test_cancelling_a_resuming_read(
    raw_server: StartRaw, session_of: Callable[[str], Awaitable[HTTPSession]], how: str
) -> None:
    """The body breaks and the resumed request hangs: cancelling the read (a timeout, two
    task.cancel(), a task group) returns at once, and the session keeps working."""
    resumed = asyncio.Event()
    requests: list[list[str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = await read_request_head(reader)
        requests.append(lines)
        if _range(lines) is not None:
            resumed.set()
            await asyncio.sleep(30)  # the resumed answer never comes
        writer.write(
            b'HTTP/1.1 200 OK\r\nETag: "one"\r\n'
            + f"Content-Length: {len(DATA)}\r\n\r\n".encode()
            + DATA[:CUT]
        )
        await writer.drain()

    srv = await raw_server(handler)
    session = await session_of(srv.base_url)
    started = asyncio.get_running_loop().time()
    with anyio.fail_after(5):
        if how == "timeout":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await session.read("x", 0, None)
        elif how == "cancel-twice":
            task = asyncio.create_task(session.read("x", 0, None))
            await resumed.wait()
            task.cancel()
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.read, "x", 0, None)
                await resumed.wait()
                tg.cancel_scope.cancel()
    assert asyncio.get_running_loop().time() - started < 2
    # The first GET and its resume; on a slow machine the resume may itself time out and be
    # retried once more before the caller's timeout: never beyond the read's attempt budget.
    assert 2 <= len(requests) <= 3 and resumed.is_set()
    assert not session.is_broken
