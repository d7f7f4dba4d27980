"""The lean transport's own HTTP/1.1 client (``aiostore.drivers.s3._wire``) against real servers
on 127.0.0.1: aiohttp.web servers, and raw ``asyncio.start_server`` servers for odd framing.

Every server a test starts, it stops; connections are proven kept or closed on the server's
side (by peer port, by EOF)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from aiostore.drivers.s3._wire import WirePool

from ..support.net import free_port

MiB = 1 << 20
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Raw:
    """A raw TCP server on 127.0.0.1: ``handler(reader, writer, index)`` per connection (the
    index counts connections from 0); the peer ports seen, the connections open now and at
    most, and which connections have seen the client's end (EOF or reset)."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.port = 0
        self.peers: list[int] = []
        self.open = 0
        self.max_open = 0
        self.ended: set[int] = set()
        self._end_seen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Raw:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.peers)
        self.peers.append(writer.get_extra_info("peername")[1])
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        # The handler in a task of its own, which the end of the test cancels (cancelling
        # asyncio's own connection task makes its done-callback log an error).
        task = asyncio.ensure_future(self.handler(reader, writer, index))
        self._tasks.add(task)
        try:
            await task
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.transport.abort()
            self._tasks.discard(task)

    async def wait_ended(self, index: int, timeout: float = 2.0) -> None:
        """Wait until connection ``index`` has seen the client's end."""
        async with asyncio.timeout(timeout):
            while index not in self.ended:
                await self._end_seen.wait()
                self._end_seen.clear()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    """(request line, headers by lower-case name, body) of the next request; None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


async def until_eof(reader: asyncio.StreamReader, server: Raw, index: int) -> None:
    """Read (and drop) until the client's end; record it."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    server.ended.add(index)
    server._end_seen.set()


def ok(body: bytes = b"ok", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def pool(port: int, **kw: float | int | None) -> WirePool:
    options: dict[str, float | int | None] = {
        "limit": 10,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
    }
    options.update(kw)
    return WirePool(
        "http",
        port,
        limit=int(options["limit"] or 0),
        connect_timeout=options["connect_timeout"],
        read_timeout=options["read_timeout"],
    )


def host(port: int) -> dict[str, str]:
    return {"Host": f"127.0.0.1:{port}"}


@contextlib.asynccontextmanager
async def web_server(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        server = site._server
        assert isinstance(server, asyncio.Server)
        yield server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await read_request(reader) is not None:
        writer.write(ok())


# -- keep-alive ---------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection() -> None:
    """Two sequential exchanges with an aiohttp.web server go on one connection: the server
    sees one peer port."""

    async def handler(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return web.Response(body=str(peer[1] if peer else 0).encode())

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with web_server(app) as port:
        wire = pool(port)
        try:
            first = await wire.exchange("GET", f"127.0.0.1:{port}", "/a", host(port), None)
            second = await wire.exchange("HEAD", f"127.0.0.1:{port}", "/b", host(port), None)
            third = await wire.exchange("GET", f"127.0.0.1:{port}", "/c", host(port), None)
        finally:
            await wire.close()
    assert first.status == second.status == third.status == 200
    assert second.body == b""
    assert first.body == third.body and int(first.body) > 0


async def test_a_kept_connection_closed_while_idle_is_replaced() -> None:
    """The server answers once and closes: the next exchange succeeds on a new connection."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        assert await read_request(r) is not None
        w.write(ok(b"first"))
        await w.drain()

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            a = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            await asyncio.sleep(0.05)
            b = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert a.body == b.body == b"first"
    assert len(set(server.peers)) == 2


async def test_a_kept_connection_dropped_on_the_request_is_sent_again() -> None:
    """The server takes the request on a kept connection and closes without an answer (its
    idle timeout racing the request): the request goes once more, on a new connection."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        assert await read_request(r) is not None
        w.write(ok(f"c{i}".encode()))
        await w.drain()
        await read_request(r)  # a second request on this connection: no answer

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            a = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            b = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert (a.body, b.body) == (b"c0", b"c1")


async def test_a_post_is_not_sent_twice() -> None:
    """Not idempotent: a POST whose kept connection the server drops is not sent once more
    (aiohttp retries only idempotent methods, RFC 9112 9.3.1)."""
    posts: list[int] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        assert await read_request(r) is not None
        w.write(ok())
        await w.drain()
        request = await read_request(r)  # a second request on this connection: no answer
        if request is not None and request[0].startswith("POST"):
            posts.append(i)

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await wire.exchange("POST", "127.0.0.1", "/", host(server.port), b"once")
        finally:
            await wire.close()
    assert posts == [0] and len(server.peers) == 1


async def test_two_stale_kept_connections_then_a_new_one() -> None:
    """Two kept connections both dropped by the server on their next request (a server restart
    behind a proxy, say): the exchange tries once more on a new connection, not on the second
    stale one, and succeeds."""
    gate = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        assert await read_request(r) is not None
        if i == 0:
            await gate.wait()  # both first requests are in flight at once: two connections
        elif i == 1:
            gate.set()
        w.write(ok(f"c{i}".encode()))
        await w.drain()
        await read_request(r)  # a second request on this connection: no answer

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            both = [
                asyncio.create_task(wire.exchange("GET", "127.0.0.1", "/", host(server.port), None))
                for _ in range(2)
            ]
            await asyncio.gather(*both)
            answer = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert answer.body == b"c2"


async def test_bytes_arriving_on_an_idle_connection_make_it_unusable() -> None:
    """A server that sends more bytes after a complete answer, while the connection is idle in
    the pool: those bytes are not taken for the next request's answer."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        while await read_request(r) is not None:
            w.write(ok(f"c{i}".encode()))
            await w.drain()
            await asyncio.sleep(0.05)
            w.write(ok(b"stale"))  # after the answer, while the client holds it idle
            await w.drain()

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            a = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            await asyncio.sleep(0.2)
            b = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert (a.body, b.body) == (b"c0", b"c1")


async def test_leftover_bytes_after_an_answer_are_not_kept() -> None:
    """Bytes after a complete answer in the same packet (a pipelined extra): the connection is
    not reused."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        while await read_request(r) is not None:
            w.write(ok(f"c{i}".encode()) + ok(b"extra"))

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            a = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            b = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert (a.body, b.body) == (b"c0", b"c1")


# -- framing ------------------------------------------------------------------------------------


def _answering(answer: bytes, *, close: bool = False, split: int = 0) -> Handler:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        while await read_request(r) is not None:
            if split:
                for k in range(0, len(answer), split):
                    w.write(answer[k : k + split])
                    await w.drain()
                    await asyncio.sleep(0)
            else:
                w.write(answer)
            if close:
                await w.drain()
                return

    return handler


@pytest.mark.parametrize(
    ("method", "answer", "status", "body", "kept"),
    [
        ("GET", ok(b"hello"), 200, b"hello", True),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;name=value\r\nabc\r\n"
            b'A; q="x;y"\r\n0123456789\r\n'
            b"0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
            200,
            b"abc0123456789",
            True,
        ),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n", 200, b"", True),
        ("DELETE", b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True),
        (
            "PUT",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
            + ok(b"done"),
            200,
            b"done",
            True,
        ),
        ("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", 200, b"hi", False),
        ("GET", ok(b"bye", "Connection: close\r\n"), 200, b"bye", False),
    ],
    ids=["length", "chunked", "head", "204", "interim", "http10", "connection-close"],
)
@pytest.mark.parametrize("split", [0, 1], ids=["whole", "bytewise"])
async def test_framing(
    method: str, answer: bytes, status: int, body: bytes, kept: bool, split: int
) -> None:
    """Each framing is read right, whole or in 1-byte packets; the connection is kept exactly
    when the answer allows it (the server sees one connection, else two)."""
    async with Raw(_answering(answer, split=split)) as server:
        wire = pool(server.port)
        try:
            for _ in range(2):
                got = await wire.exchange(
                    method, "127.0.0.1", "/", host(server.port), b"x" if method == "PUT" else None
                )
                assert (got.status, got.body) == (status, body)
        finally:
            await wire.close()
    assert len(server.peers) == (1 if kept else 2)


@pytest.mark.parametrize("split", [0, 1], ids=["whole", "bytewise"])
async def test_a_close_delimited_body_is_read_to_the_end(split: int) -> None:
    """No length, no chunks: the body runs to the end of the connection, which is not kept."""
    answer = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n" + b"z" * 100_000
    async with Raw(_answering(answer, close=True, split=split and 7)) as server:
        wire = pool(server.port)
        try:
            a = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            b = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert a.body == b.body == b"z" * 100_000
    assert a.headers["x"] == "y"
    assert len(server.peers) == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTrailer: cut",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["length", "chunk", "last-chunk", "trailer", "bad-size", "negative", "0x"],
)
async def test_a_truncated_or_bad_body_is_a_payload_error(answer: bytes) -> None:
    async with Raw(_answering(answer, close=True)) as server:
        wire = pool(server.port)
        try:
            with pytest.raises(aiohttp.ClientPayloadError):
                await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 ²²² OK\r\nContent-Length: 0\r\n\r\n".encode(),
        "HTTP/1.1 200 OK\r\nContent-Length: ١\r\n\r\nx".encode(),
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    ],
    ids=[
        "ssh",
        "letters",
        "superscript",
        "arabic-length",
        "negative-length",
        "folded",
        "two-lengths",
    ],
)
async def test_a_garbage_answer_head_is_a_response_error(answer: bytes) -> None:
    async with Raw(_answering(answer, close=True)) as server:
        wire = pool(server.port)
        try:
            with pytest.raises(aiohttp.ClientResponseError, match=r"answer|Content-Length"):
                await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()


async def test_no_answer_on_a_new_connection_is_server_disconnected() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert len(server.peers) == 1  # a new connection's failure is not tried again


# -- timeouts and connecting --------------------------------------------------------------------


async def test_read_timeout() -> None:
    """The server accepts and never answers: ServerTimeoutError after about read_timeout."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await until_eof(r, server, i)

    async with Raw(handler) as server:
        wire = pool(server.port, read_timeout=0.3)
        try:
            start = time.monotonic()
            with pytest.raises(aiohttp.ServerTimeoutError):
                await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            assert 0.25 < time.monotonic() - start < 1.5
            await server.wait_ended(0)  # the timed-out connection is closed
        finally:
            await wire.close()


async def test_read_timeout_bounds_sending_a_body() -> None:
    """The server accepts and never reads: a large body cannot be sent; the read timeout bounds
    the wait (as aiohttp's sock_read does) instead of hanging forever."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await asyncio.sleep(30)

    async with Raw(handler) as server:
        wire = pool(server.port, read_timeout=0.3)
        try:
            start = time.monotonic()
            async with asyncio.timeout(5):
                with pytest.raises(aiohttp.ServerTimeoutError):
                    await wire.exchange(
                        "PUT", "127.0.0.1", "/", host(server.port), [memoryview(b"x" * 32 * MiB)]
                    )
            assert time.monotonic() - start < 3
        finally:
            await wire.close()


async def test_connect_refused() -> None:
    port = free_port()
    wire = pool(port)
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await wire.exchange("GET", "127.0.0.1", "/", host(port), None)
    finally:
        await wire.close()
    assert isinstance(caught.value.os_error, ConnectionRefusedError)


async def test_connect_timeout() -> None:
    """A listening socket whose backlog is full drops new SYNs: the connect times out."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):  # fill the accept queue (never accepted)
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        await asyncio.sleep(0.1)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass
        else:
            pytest.skip("a full backlog does not hold connects here")
        finally:
            probe.close()
        wire = pool(port, connect_timeout=0.3)
        try:
            start = time.monotonic()
            with pytest.raises(aiohttp.ConnectionTimeoutError):
                await wire.exchange("GET", "127.0.0.1", "/", host(port), None)
            assert time.monotonic() - start < 1.5
        finally:
            await wire.close()
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_an_ipv6_literal_host() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 here")
    seen: list[str] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        while (request := await read_request(r)) is not None:
            seen.append(request[1]["host"])
            w.write(ok())

    async with Raw(handler, host="::1") as server:
        wire = pool(server.port)
        name = f"[::1]:{server.port}"
        try:
            for _ in range(2):
                got = await wire.exchange("GET", name, "/", {"Host": name}, None)
                assert got.body == b"ok"
        finally:
            await wire.close()
    assert seen == [name, name]
    assert len(server.peers) == 1


# -- cancellation -------------------------------------------------------------------------------


def _others() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.mark.parametrize("how", ["once", "twice", "timeout"])
async def test_cancelling_an_exchange_closes_its_connection(how: str) -> None:
    arrived = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        if i == 0:
            assert await read_request(r) is not None
            arrived.set()
            await until_eof(r, server, i)
        else:
            await keep_answering(r, w)

    before = _others()
    async with Raw(handler) as server:
        wire = pool(server.port, read_timeout=None)
        try:
            call = wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            if how == "timeout":
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await call
            else:
                task = asyncio.create_task(call)
                await arrived.wait()
                await asyncio.sleep(0.01)
                task.cancel()
                if how == "twice":
                    await asyncio.sleep(0)
                    task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            await server.wait_ended(0)
            assert not any(wire._idle.values())
            after = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
            assert after.body == b"ok" and len(server.peers) == 2
        finally:
            await wire.close()
    assert _others() <= before


def _held(port: int) -> bool:
    """Whether a file descriptor of this process holds the 127.0.0.1 TCP socket of local port
    ``port`` (Linux: /proc/net/tcp's inodes against /proc/self/fd's links)."""
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[9] != "0":
                inodes.add(f"socket:[{fields[9]}]")
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            links.add(os.readlink(f"/proc/self/fd/{fd}"))
    return bool(inodes & links)


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux /proc only")
async def test_cancelling_while_the_body_is_stuck_frees_the_socket() -> None:
    """Cancelled while its body waits for a server that does not read: the connection's
    socket is let go at once (its unsent bytes dropped), not when the server reads them all
    one day."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await asyncio.sleep(30)

    async with Raw(handler) as server:
        wire = pool(server.port, read_timeout=None)
        try:
            task = asyncio.create_task(
                wire.exchange(
                    "PUT", "127.0.0.1", "/", host(server.port), [memoryview(b"x" * 32 * MiB)]
                )
            )
            await asyncio.sleep(0.3)
            assert not task.done() and _held(server.peers[0])
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.1)
            assert not _held(server.peers[0])
        finally:
            await wire.close()


# -- bodies -------------------------------------------------------------------------------------


async def test_a_large_body_of_memoryviews_arrives_byte_exact() -> None:
    async def handler(request: web.Request) -> web.Response:
        data = await request.read()
        return web.Response(body=f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode())

    app = web.Application(client_max_size=64 * MiB)
    app.router.add_put("/{tail:.*}", handler)
    blob = bytes(range(256)) * (6 * MiB // 256) + b"tail"
    views = [memoryview(blob)[k : k + 300_001] for k in range(0, len(blob), 300_001)]
    async with web_server(app) as port:
        wire = pool(port)
        try:
            got = await wire.exchange("PUT", "127.0.0.1", "/k", host(port), views)
            small = await wire.exchange("PUT", "127.0.0.1", "/k", host(port), [memoryview(b"ab")])
            empty = await wire.exchange("PUT", "127.0.0.1", "/k", host(port), None)
        finally:
            await wire.close()
    assert got.body.decode() == f"{len(blob)} {hashlib.sha256(blob).hexdigest()}"
    assert small.body.decode() == f"2 {hashlib.sha256(b'ab').hexdigest()}"
    assert empty.body.decode() == f"0 {hashlib.sha256(b'').hexdigest()}"


async def test_a_body_of_wide_memoryviews_is_counted_in_bytes() -> None:
    """A memoryview whose items are wider than a byte: Content-Length counts bytes."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    app = web.Application()
    app.router.add_put("/{tail:.*}", handler)
    raw = bytes(range(256)) * 1024
    async with web_server(app) as port:
        wire = pool(port)
        try:
            for view in (memoryview(raw[:4000]).cast("I"), memoryview(raw).cast("Q")):
                got = await wire.exchange("PUT", "127.0.0.1", "/k", host(port), [view])
                assert got.body == view.tobytes()
        finally:
            await wire.close()


@pytest.mark.parametrize(
    ("headers", "target"),
    [
        ({"X-A": "v\r\nX-Injected: 1"}, "/"),
        ({"X-A": "v\nX-B: 1"}, "/"),
        ({"X-A\r\nX-B": "v"}, "/"),
        ({}, "/a HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /b"),
    ],
    ids=["crlf-value", "lf-value", "crlf-name", "crlf-target"],
)
async def test_a_line_break_is_refused_before_sending(headers: dict[str, str], target: str) -> None:
    async with Raw(keep_answering_handler) as server:
        wire = pool(server.port)
        try:
            with pytest.raises(ValueError):
                await wire.exchange(
                    "GET", "127.0.0.1", target, {**host(server.port), **headers}, None
                )
        finally:
            await wire.close()
    assert server.peers == []


async def keep_answering_handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
    await keep_answering(r, w)


async def test_an_early_answer_before_the_body_is_read() -> None:
    """The server answers (413, and closes) after the head, without reading the body: the
    answer is read, not a reset."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!")
        await w.drain()
        await asyncio.sleep(0.2)
        w.close()

    async with Raw(handler) as server:
        wire = pool(server.port)
        try:
            got = await wire.exchange(
                "PUT", "127.0.0.1", "/", host(server.port), [memoryview(b"x" * 8 * MiB)]
            )
        finally:
            await wire.close()
    assert (got.status, got.body) == (413, b"big!")


async def test_an_early_answer_from_a_server_that_stops_reading() -> None:
    """The server answers (keep-alive) after the head and reads no more of the body: the
    answer is taken at once, and the connection, out of step, is not kept (RFC 9112 9.3: a
    client seeing an answer before its body is sent stops sending)."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        if i == 0:
            await r.readuntil(b"\r\n\r\n")
            w.write(ok(b"early"))
            await asyncio.sleep(30)
        await keep_answering(r, w)

    async with Raw(handler) as server:
        wire = pool(server.port, read_timeout=3.0)
        try:
            start = time.monotonic()
            got = await wire.exchange(
                "PUT", "127.0.0.1", "/", host(server.port), [memoryview(b"x" * 32 * MiB)]
            )
            assert time.monotonic() - start < 2
            after = await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        finally:
            await wire.close()
    assert (got.status, got.body, after.body) == (200, b"early", b"ok")
    assert len(server.peers) == 2


async def test_a_slow_server_taking_a_body_for_longer_than_the_read_timeout() -> None:
    """A ``100 Continue`` at once, then the body read steadily but slowly, for longer in all
    than the read timeout (never stalled that long): the exchange waits while the server takes
    bytes, then for the answer."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        digest = hashlib.sha256()
        while length:
            piece = await r.read(min(length, 256 * 1024))
            digest.update(piece)
            length -= len(piece)
            await asyncio.sleep(0.02)
        w.write(ok(digest.hexdigest().encode()))
        await keep_answering(r, w)

    blob = b"y" * 24 * MiB
    async with Raw(handler) as server:
        wire = pool(server.port, read_timeout=0.8)
        try:
            start = time.monotonic()
            got = await wire.exchange("PUT", "127.0.0.1", "/", host(server.port), [blob])
            assert time.monotonic() - start > 0.8
        finally:
            await wire.close()
    assert got.body == hashlib.sha256(blob).hexdigest().encode()


# -- the pool -----------------------------------------------------------------------------------


async def test_the_connection_limit() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        while await read_request(r) is not None:
            await asyncio.sleep(0.1)
            w.write(ok())

    async with Raw(handler) as server:
        wire = pool(server.port, limit=2)
        try:
            answers = await asyncio.gather(
                *(wire.exchange("GET", "127.0.0.1", "/", host(server.port), None) for _ in range(5))
            )
        finally:
            await wire.close()
    assert [a.body for a in answers] == [b"ok"] * 5
    assert server.max_open == 2 and len(server.peers) == 2


async def test_close_closes_idle_connections_and_refuses_more() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        assert await read_request(r) is not None
        w.write(ok())
        await until_eof(r, server, i)

    async with Raw(handler) as server:
        wire = pool(server.port)
        await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
        await asyncio.sleep(0.05)
        assert 0 not in server.ended
        await wire.close()
        await server.wait_ended(0)
        with pytest.raises(aiohttp.ClientConnectionError, match="closed"):
            await wire.exchange("GET", "127.0.0.1", "/", host(server.port), None)
    assert len(server.peers) == 1
