"""A small asyncio TCP proxy that injects network faults between an HTTP client and a server.

netem and toxiproxy are not available on our machines (see FAULTS.md), so tests put this proxy
on 127.0.0.1 between the client under test and a real server (moto, an aiohttp app, …)::

    async with FaultProxy("127.0.0.1", server_port) as proxy:
        client = make_client(proxy.url)
        proxy.set_mode("503")                      # every request from now on
        proxy.set_mode("reset", requests=1)        # only the next request, then back to "pass"
        proxy.set_mode("latency", seconds=0.5)     # delay every request by 0.5 s
        proxy.connections[0].mode = Fault("blackhole")   # one connection only

Modes (a :class:`Fault`):

- ``pass``: forward bytes unchanged.
- ``503``: answer the request itself with an S3-style ``503 SlowDown`` XML error (the request body
  is read and dropped; with ``Expect: 100-continue`` the body is never sent and the connection is
  closed after the reply). Status, code and message are configurable for other services.
- ``reset``: abort the client's connection with a TCP RST.
- ``blackhole``: swallow the request and never answer (the client's read timeout fires).
- ``latency``: hold the request ``seconds`` before forwarding it.

The mode is looked up at the start of *each request* on every connection, so switching it acts
live on pooled keep-alive connections, not only on new ones. A mode set without ``requests=`` is
*persistent*; ``reset`` and ``blackhole`` then also act on responses that are streaming at the
time of the switch (mid-body reset, mid-body stall). The proxy frames HTTP/1.1 requests
(Content-Length and chunked bodies) to find where each request starts; a stream that does not
look like HTTP is forwarded as opaque bytes in ``pass`` mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal

__all__ = ["Fault", "FaultProxy", "ProxyConnection"]

Kind = Literal["pass", "503", "reset", "blackhole", "latency"]
KINDS: Final = ("pass", "503", "reset", "blackhole", "latency")

_CHUNK: Final = 64 * 1024
_METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT"}
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault mode; ``seconds`` is used by ``latency`` only."""

    kind: Kind = "pass"
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault mode {self.kind!r} (known: {', '.join(KINDS)})")
        if self.seconds < 0:
            raise ValueError("seconds must be ≥ 0")


PASS: Final = Fault()


@dataclass(eq=False)
class ProxyConnection:
    """One client connection through the proxy. Set ``mode`` to fault this connection only
    (``None`` follows the proxy's mode)."""

    id: int
    mode: Fault | None = None
    requests: int = 0
    #: Request line of the latest request (``b"GET /bucket/key HTTP/1.1"``).
    last_request: bytes = b""
    closed: bool = False
    _client: asyncio.StreamWriter | None = field(default=None, repr=False)
    _upstream: asyncio.StreamWriter | None = field(default=None, repr=False)

    def reset(self) -> None:
        """Abort the client side now with a TCP RST."""
        if self._client is not None:
            _rst(self._client)
        if self._upstream is not None:
            self._upstream.transport.abort()
        self.closed = True


@dataclass(slots=True)
class _Head:
    raw: bytes
    method: bytes
    content_length: int
    chunked: bool
    expect_continue: bool


class FaultProxy:
    """TCP proxy on ``host`` (an ephemeral port) forwarding to ``target_host:target_port``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        error_status: int = 503,
        error_reason: str = "Slow Down",
        error_code: str = "SlowDown",
        error_message: str = "Please reduce your request rate.",
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.error_status = error_status
        self.error_reason = error_reason
        self.error_code = error_code
        self.error_message = error_message
        self.connections: list[ProxyConnection] = []
        #: Requests seen, and how many each mode handled.
        self.requests = 0
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._mode: Fault = PASS
        self._remaining: int | None = None
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 0

    # -- control --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def mode(self) -> Fault:
        return self._mode

    def set_mode(
        self, mode: Kind | Fault, *, seconds: float = 0.0, requests: int | None = None
    ) -> None:
        """Switch every connection to ``mode`` from their next request on.

        ``requests=N`` applies it to the next N requests only, then returns to ``pass``.
        """
        fault = mode if isinstance(mode, Fault) else Fault(mode, seconds)
        if requests is not None and requests < 1:
            raise ValueError("requests must be ≥ 1")
        self._mode = fault
        self._remaining = requests if fault.kind != "pass" else None
        self._changed.set()
        self._changed = asyncio.Event()

    def pass_through(self) -> None:
        """Back to ``pass`` for everything."""
        self.set_mode(PASS)
        for conn in self.connections:
            conn.mode = None

    def reset_all(self) -> None:
        """Abort every open connection now (TCP RST)."""
        for conn in self.connections:
            if not conn.closed:
                conn.reset()

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self.connections if not c.closed)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in self.connections:
            for w in (conn._client, conn._upstream):
                if w is not None:
                    w.transport.abort()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- per request decisions ------------------------------------------------------------------
    def _take(self, conn: ProxyConnection) -> Fault:
        """The fault for a request starting now on ``conn``; counts it."""
        self.requests += 1
        conn.requests += 1
        if conn.mode is not None:
            fault = conn.mode
        else:
            fault = self._mode
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._mode, self._remaining = PASS, None
        self.counts[fault.kind] += 1
        return fault

    def _persistent(self, conn: ProxyConnection) -> Fault:
        """The mode that acts on bytes already flowing (responses): persistent modes only."""
        if conn.mode is not None:
            return conn.mode
        return self._mode if self._remaining is None else PASS

    # -- connection handling --------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._next_id += 1
        conn = ProxyConnection(self._next_id, _client=writer)
        self.connections.append(conn)
        try:
            await self._serve(conn, reader, writer)
        except asyncio.CancelledError:
            # Only aclose() cancels handlers. asyncio's start_server callback (3.11) calls
            # task.exception(), which raises on a cancelled task: end normally instead.
            return

    async def _serve(
        self, conn: ProxyConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream: _Upstream | None = None
        try:
            while not conn.closed:
                head, leftover = await _read_head(reader)
                if head is None:
                    if leftover:  # not HTTP: forward the rest as opaque bytes ("pass" only)
                        upstream = upstream or await self._connect(conn, writer)
                        upstream.writer.write(leftover)
                        while data := await reader.read(_CHUNK):
                            upstream.writer.write(data)
                            await upstream.writer.drain()
                    return  # the client closed between requests
                conn.last_request = head.raw.split(b"\r\n", 1)[0]
                fault = self._take(conn)
                if fault.kind == "latency" and fault.seconds:
                    await asyncio.sleep(fault.seconds)
                if fault.kind == "reset":
                    conn.reset()
                    return
                if fault.kind == "blackhole":
                    await _drain_forever(reader)
                    return
                if fault.kind == "503":
                    if not await self._reply_error(reader, writer, head):
                        return
                    continue
                upstream = upstream or await self._connect(conn, writer)
                upstream.writer.write(head.raw)
                await _copy_body(reader, upstream.writer, head)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            conn.closed = True
            if upstream is not None:
                if reader.at_eof() and not upstream.pump.done():
                    # The client half-closed after its request: let the response finish.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(upstream.pump), 30)
                upstream.pump.cancel()
                upstream.writer.transport.abort()
            _close(writer)

    async def _connect(self, conn: ProxyConnection, client: asyncio.StreamWriter) -> _Upstream:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        conn._upstream = up_writer
        pump = self._spawn(
            self._pump_response(conn, up_reader, client), f"faultproxy-{conn.id}-response"
        )
        return _Upstream(up_writer, pump)

    async def _reply_error(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: _Head
    ) -> bool:
        """Answer with the configured error; True when the connection stays usable."""
        has_body = head.chunked or head.content_length > 0
        keep = not (head.expect_continue and has_body)
        if keep:
            await _copy_body(reader, None, head)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.error_code}</Code><Message>{self.error_message}</Message>"
            "<RequestId>faultproxy</RequestId><HostId>faultproxy</HostId></Error>"
        ).encode()
        lines = [
            f"HTTP/1.1 {self.error_status} {self.error_reason}",
            "Content-Type: application/xml",
            f"Content-Length: {len(body)}",
            "x-amz-request-id: faultproxy",
            "Retry-After: 1",
            f"Connection: {'keep-alive' if keep else 'close'}",
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if head.method != b"HEAD":
            writer.write(body)
        await writer.drain()
        return keep

    async def _pump_response(
        self, conn: ProxyConnection, up: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await up.read(_CHUNK):
                while True:
                    fault = self._persistent(conn)
                    if fault.kind == "reset":
                        conn.reset()
                        return
                    if fault.kind != "blackhole":
                        break
                    await self._wait_change(conn)
                client.write(data)
                await client.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # Upstream closed: close the client after what was written.
            _close(client)

    async def _wait_change(self, conn: ProxyConnection) -> None:
        # A per-connection override is polled; the proxy-wide mode wakes us on change.
        if conn.mode is not None:
            await asyncio.sleep(0.05)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)


@dataclass(slots=True)
class _Upstream:
    writer: asyncio.StreamWriter
    pump: asyncio.Task[None]


async def _read_head(reader: asyncio.StreamReader) -> tuple[_Head | None, bytes]:
    """The next request head, or (None, bytes already read) at EOF or when it is not HTTP."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        return None, exc.partial
    except asyncio.LimitOverrunError as exc:
        return None, await reader.readexactly(exc.consumed)
    line, _, rest = raw.partition(b"\r\n")
    method = line.split(b" ", 1)[0]
    if method not in _METHODS:
        return None, raw
    length = 0
    chunked = expect = False
    for h in rest.split(b"\r\n"):
        name, _, value = h.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"expect" and value == b"100-continue":
            expect = True
    return _Head(raw, method, length, chunked, expect), b""


async def _copy_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, head: _Head
) -> None:
    """Forward (or, with ``writer=None``, drop) one request body."""

    def out(data: bytes) -> None:
        if writer is not None:
            writer.write(data)

    if head.chunked:
        while True:
            line = await reader.readuntil(b"\r\n")
            out(line)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = await reader.readuntil(b"\r\n")
                    out(trailer)
                    if trailer == b"\r\n":
                        break
                break
            await _copy_exactly(reader, writer, size + 2)
    elif head.content_length:
        await _copy_exactly(reader, writer, head.content_length)
    if writer is not None:
        await writer.drain()


async def _copy_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, n: int
) -> None:
    while n > 0:
        data = await reader.read(min(n, _CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        if writer is not None:
            writer.write(data)
            await writer.drain()


async def _drain_forever(reader: asyncio.StreamReader) -> None:
    while await reader.read(_CHUNK):
        pass


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
