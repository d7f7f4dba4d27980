"""Small S3 exchanges on plain HTTP/1.1 connections of our own: the lean transport's fast path.

An exchange here is one request whose answer is read whole: HEAD, DELETE, a PUT of a body
held in memory up to :data:`MAX_BODY`, a GET read into memory. On a server that closes every
connection (moto does), aiohttp's client costs about twice the CPU of the request's own system
calls; this path costs about as much as a native client (``docs/performance.md``). Streaming
reads, multipart uploads and listings stay on the aiohttp session.

What it does, and nothing more:

- one request at a time per connection; idle connections are kept (at most ``limit`` in all,
  dropped after :data:`KEEPALIVE` seconds idle, or when bytes come while idle) and an
  idempotent request that finds its kept connection closed by the server before any answer
  byte is sent once more on a new one;
- answers framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the
  connection; ``1xx`` interim answers skipped; no body for HEAD, 204 and 304;
- TLS with the system's default verified context; host names resolved once per
  :data:`DNS_TTL` seconds, each address tried in turn;
- the connect timeout bounds connecting; the read timeout bounds every wait for answer bytes
  and every wait for the server to take more of the request;
- failures raise aiohttp's exceptions (``ClientConnectorError``, ``ServerDisconnectedError``,
  ``ServerTimeoutError``, ``ClientPayloadError``, ...) so that the driver's one error table and
  retry policy treat both paths alike; a failed or cancelled exchange closes its connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["MAX_BODY", "WireAnswer", "WirePool"]

#: Request bodies up to this size take the fast path.
MAX_BODY: Final = 1024 * 1024
#: Idle connections older than this are closed instead of reused (aiohttp's default too).
KEEPALIVE: Final = 15.0
#: Seconds a host name's addresses are remembered.
DNS_TTL: Final = 10.0
#: The longest answer head accepted.
MAX_HEAD: Final = 64 * 1024
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_NO_BODY: Final = frozenset({204, 304})
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
#: Sent once more after a stale kept connection (RFC 9112 9.3.1; aiohttp does the same).
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class WireAnswer(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class _Gone(Exception):
    """The connection ended before any byte of the answer (a kept one may just be stale)."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: bytes in, a waiter woken when more arrive or it ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ended = False
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self._stall_timer: asyncio.TimerHandle | None = None

    # -- protocol callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()
        self._drain_done()  # an answer while the request is being sent: read it now

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()
        self._drain_done()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._drain_done()

    def _drain_done(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by the exchange -------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.ended and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        """Close; at once (the transport aborted) when request bytes are still unsent: they are
        of no use, and a server that does not read would otherwise keep the socket for ever."""
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()
        self.ended = True

    async def drain(self, timeout: float | None) -> None:
        """Wait until the request's bytes fit in the transport's buffer, or an answer comes;
        raise ``ServerTimeoutError`` when the server takes none for ``timeout`` seconds."""
        if self._paused and not self.ended:
            drained = self._drained = self.loop.create_future()
            if timeout is not None:
                self._stall_timer = self.loop.call_later(
                    timeout, self._stalled, drained, timeout, self._unsent()
                )
            try:
                await drained
            finally:
                if self._stall_timer is not None:
                    self._stall_timer.cancel()
                    self._stall_timer = None

    def _unsent(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def _stalled(self, drained: asyncio.Future[None], timeout: float, unsent: int) -> None:
        """``timeout`` seconds into a drain: wait on while the server took some bytes."""
        now = self._unsent()
        if now < unsent and not drained.done():
            self._stall_timer = self.loop.call_later(timeout, self._stalled, drained, timeout, now)
        else:
            _time_out(drained)

    async def more(self, timeout: float | None) -> None:
        """Wait until more bytes arrive; raise when the connection has ended or ``timeout``
        seconds pass without any."""
        if self.ended:
            raise self._ended()
        waiter = self._waiter = self.loop.create_future()
        timer = None
        if timeout is not None:
            timer = self.loop.call_later(timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self.ended and not self.buffer:
            raise self._ended()

    def _ended(self) -> BaseException:
        if isinstance(self.error, OSError):
            return aiohttp.ClientOSError(self.error.errno, str(self.error))
        return aiohttp.ServerDisconnectedError()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(aiohttp.ServerTimeoutError("Timeout on reading data from socket"))


class WirePool:
    """Connections to one S3 endpoint, and the exchanges sent on them."""

    def __init__(
        self,
        scheme: str,
        port: int | None,
        *,
        limit: int,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> None:
        self.scheme = scheme
        self.port = port if port is not None else _DEFAULT_PORTS.get(scheme, 80)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._tls = scheme == "https"
        self._limit = limit
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[str, list[_Connection]] = {}
        self._addresses: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for kept in self._idle.values():
            for connection in kept:
                connection.close()
        self._idle.clear()

    async def exchange(
        self,
        method: str,
        host: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | Sequence[bytes | memoryview] | None,
    ) -> WireAnswer:
        """Send ``method target`` to ``host`` (a virtual-hosted bucket's own name, or the
        endpoint's) with ``headers`` (``Host`` included) and ``body``; the whole answer."""
        if self._closed:
            raise aiohttp.ClientConnectionError("the S3 connection pool is closed")
        request = _request(method, target, headers, body)
        slots = self._slots
        if slots is None:
            slots = self._slots = asyncio.Semaphore(self._limit)
        async with slots:
            for attempt in range(2):
                # Once more after a stale kept connection: on a new one, not on another kept
                # one that may be just as stale.
                connection = self._kept(host) if attempt == 0 else None
                kept = connection is not None
                if connection is None:
                    connection = await self._connect(host)
                try:
                    answer, reusable = await self._send(connection, method, request)
                except _Gone:
                    connection.close()
                    if kept and method in _IDEMPOTENT:
                        continue  # the server closed a kept connection: once more, anew
                    raise connection._ended() from None
                except BaseException:
                    connection.close()
                    raise
                if reusable and not self._closed:
                    connection.idle_since = time.monotonic()
                    self._idle.setdefault(host, []).append(connection)
                else:
                    connection.close()
                return answer
        raise AssertionError("unreachable")  # pragma: no cover

    # -- connections ----------------------------------------------------------------------------
    def _kept(self, host: str) -> _Connection | None:
        kept = self._idle.get(host)
        now = time.monotonic()
        while kept:
            connection = kept.pop()
            # Bytes that came while idle answer nothing we sent: the connection is out of step.
            usable = connection.usable and not connection.buffer
            if usable and now - connection.idle_since < KEEPALIVE:
                return connection
            connection.close()
        return None

    async def _connect(self, host: str) -> _Connection:
        loop = asyncio.get_running_loop()
        name = _name_of(host)
        key = ConnectionKey(name, self.port, self._tls, True, None, None, None)
        context = _tls_context() if self._tls else None
        last: OSError | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                for address, port in await self._resolve(name, key):
                    try:
                        _, connection = await loop.create_connection(
                            lambda: _Connection(loop),
                            address,
                            port,
                            ssl=context,
                            server_hostname=name if context is not None else None,
                        )
                    except ssl.SSLCertVerificationError as exc:
                        raise aiohttp.ClientConnectorCertificateError(key, exc) from exc
                    except ssl.SSLError as exc:
                        raise aiohttp.ClientConnectorSSLError(key, exc) from exc
                    except OSError as exc:
                        last = exc
                        continue
                    return connection  # asyncio has set TCP_NODELAY
        except TimeoutError as exc:
            raise aiohttp.ConnectionTimeoutError(
                f"Connection timeout to host {name}:{self.port}"
            ) from exc
        assert last is not None
        raise aiohttp.ClientConnectorError(key, last) from last

    async def _resolve(self, name: str, key: ConnectionKey) -> list[tuple[str, int]]:
        known = self._addresses.get(name)
        now = time.monotonic()
        if known is not None and now - known[0] < DNS_TTL:
            return known[1]
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
        except OSError:
            pass
        else:
            return [(name, self.port)]  # an address: nothing to resolve
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise aiohttp.ClientConnectorDNSError(key, exc) from exc
        addresses = list(dict.fromkeys((str(i[4][0]), int(i[4][1])) for i in infos))
        self._addresses[name] = (now, addresses)
        return addresses

    # -- one exchange ---------------------------------------------------------------------------
    async def _send(
        self, connection: _Connection, method: str, request: list[bytes | memoryview]
    ) -> tuple[WireAnswer, bool]:
        transport = connection.transport
        if transport is None or not connection.usable:
            raise _Gone
        timeout = self.read_timeout
        transport.writelines(request)
        await connection.drain(timeout)
        buffer = connection.buffer
        # The head, after any 1xx interim answers.
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(buffer) > MAX_HEAD:
                    raise aiohttp.ClientResponseError(
                        _no_info(), (), message="answer head too long"
                    )
                try:
                    await connection.more(timeout)
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    if not buffer:
                        raise _Gone from None
                    raise
                end = buffer.find(b"\r\n\r\n")
            status, keep, headers = _head(bytes(buffer[:end]))
            del buffer[: end + 4]
            if status >= 200 or status == 101:
                break
            if not buffer:  # an interim answer: the rest of the request still to send
                await connection.drain(timeout)
        # The body.
        if method == "HEAD" or status in _NO_BODY:
            body = b""
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = await _chunked(connection, timeout)
        elif "Content-Length" in headers:
            length = _length(headers.getall("Content-Length"))
            while len(buffer) < length:
                try:
                    await connection.more(timeout)
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    raise aiohttp.ClientPayloadError(
                        f"answer body ended after {len(buffer)} of {length} bytes"
                    ) from exc
            # One copy, not two (a slice of a bytearray is a copy of its own).
            with memoryview(buffer) as view, view[:length] as part:
                body = bytes(part)
            del buffer[:length]
        else:
            while not connection.ended:  # framed by the end of the connection
                try:
                    await connection.more(timeout)
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    break
            body = bytes(buffer)
            buffer.clear()
            keep = False
        # An answer before the whole request was sent (the server wants no more of it): the
        # connection is out of step, and its unsent bytes are dropped when it closes.
        sent = not transport.get_write_buffer_size()
        return WireAnswer(status, CIMultiDictProxy(headers), body), (
            keep and sent and not buffer and connection.usable
        )


def _request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | Sequence[bytes | memoryview] | None,
) -> list[bytes | memoryview]:
    pieces: list[bytes | memoryview] = []
    if body is None:
        size = 0
    elif isinstance(body, bytes):
        size = len(body)
        pieces.append(body)
    else:
        pieces.extend(body)
        size = sum(memoryview(p).nbytes for p in body)  # len() counts items, not bytes
    if any(c in method + target for c in " \r\n"):
        raise ValueError(f"a space or line break in the request line: {method} {target!r}")
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"a line break in the {name!r} header")
        lines.append(f"{name}: {value}\r\n")
    if body is not None or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {size}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("utf-8")
    if size <= 64 * 1024:
        return [head + b"".join(pieces)]  # one write, one packet for a small request
    return [head, *pieces]


def _head(raw: bytes) -> tuple[int, bool, CIMultiDict[str]]:
    """(status, keep-alive, headers) of an answer head."""
    lines = raw.decode("utf-8", "surrogateescape").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not _digits(code):
        raise aiohttp.ClientResponseError(
            _no_info(), (), message=f"not an HTTP/1.x answer: {lines[0][:80]!r}"
        )
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise aiohttp.ClientResponseError(
                _no_info(), (), message=f"a malformed answer header: {line[:80]!r}"
            )
        headers.add(name, value.strip())
    connection = headers.get("Connection", "").lower()
    keep = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return int(code), keep, headers


def _digits(text: str) -> bool:
    """Only ASCII digits (``str.isdigit`` takes ``²`` and ``١`` too)."""
    return text.isascii() and text.isdigit()


def _length(values: list[str]) -> int:
    """The body length of an answer's ``Content-Length`` headers (more than one: all alike)."""
    if len(set(values)) != 1 or not _digits(values[0].strip()):
        raise aiohttp.ClientResponseError(
            _no_info(), (), message=f"a bad Content-Length: {', '.join(values)[:40]!r}"
        )
    return int(values[0])


async def _chunked(connection: _Connection, timeout: float | None) -> bytes:
    """A chunked body (trailers read and dropped)."""
    buffer = connection.buffer
    out = bytearray()
    try:
        while True:
            end = buffer.find(b"\r\n")
            while end < 0:
                await connection.more(timeout)
                end = buffer.find(b"\r\n")
            size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
            if not size_text or size_text.strip(_HEX_DIGITS):  # int() takes "-1", "0x1", "1_0"
                raise aiohttp.ClientPayloadError(f"a bad chunk size: {size_text[:20]!r}")
            size = int(size_text, 16)
            del buffer[: end + 2]
            if size == 0:
                while True:  # trailers, up to the empty line
                    end = buffer.find(b"\r\n")
                    while end < 0:
                        await connection.more(timeout)
                        end = buffer.find(b"\r\n")
                    del buffer[: end + 2]
                    if end == 0:
                        return bytes(out)
            while len(buffer) < size + 2:
                await connection.more(timeout)
            out += buffer[:size]
            del buffer[: size + 2]
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        raise aiohttp.ClientPayloadError("the chunked answer body ended early") from exc


def _name_of(host: str) -> str:
    """The host name (or address) of a ``Host`` header: ``[::1]:9000`` → ``::1``."""
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.partition(":")[0]


def _no_info() -> aiohttp.RequestInfo:
    from yarl import URL

    return aiohttp.RequestInfo(URL(), "", CIMultiDictProxy(CIMultiDict()), URL())


_CONTEXT: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = ssl.create_default_context()
    return _CONTEXT
