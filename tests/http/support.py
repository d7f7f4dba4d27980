"""Servers on 127.0.0.1 and helpers for the HTTP driver's tests (fixtures: ``conftest.py``).

- :class:`WebServer`: an aiohttp app serving a directory (GET/HEAD; ``web.FileResponse``, which
  honours Range) with switches: ``honour_range`` (off: every answer is the whole file, 200),
  ``routes`` (a handler per path, for redirects and misbehaving answers), a request log, and
  stop/start on the same port. It resolves paths *naively* (decode once, normalize ``..``) on
  purpose: a client that let a key climb out of base_url would be served the secret file.
- :class:`RawServer`: an asyncio TCP server whose handler writes raw bytes, for answers aiohttp's
  server refuses to produce (more bytes than Content-Length, headers trickled byte by byte).
- :class:`ConnectionCounter`: a listener on 127.0.0.2 that only counts connections: the
  "other host" a redirect points to, which must never be contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from aiostore import Store, StoreManager

HELLO = b"hello, world\n"
BIG_SIZE = 3 * 1024 * 1024 + 17
MTIME = 1_700_000_000
#: Fast probing so health changes show within a test; hysteresis kept at its default of 2.
FAST_PROBE: dict[str, Any] = {"interval": 0.05, "timeout": 1.0}
#: Probing that never runs on its own during a test (only the start-up probe).
NO_BACKGROUND_PROBE: dict[str, Any] = {"interval": 3600.0, "timeout": 1.0}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Seen:
    """One request the server received."""

    method: str
    raw_path: str
    headers: dict[str, str]


@dataclass
class WebServer:
    """The aiohttp test server (see the module docstring)."""

    root: Path
    host: str = "127.0.0.1"
    honour_range: bool = True
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    _runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/data/"

    def seen(self, raw_path: str) -> list[Seen]:
        return [r for r in self.requests if r.raw_path == raw_path]

    async def start(self) -> None:
        """Start, on the previous port when there was one (a restart)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Handlers that hang on purpose must not hold up teardown.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(request.method, request.raw_path, dict(request.headers)))
        custom = self.routes.get(request.path)
        if custom is not None:
            return await custom(request)
        path = self.root / posixpath.normpath(request.path).lstrip("/")
        if not path.is_file():
            raise web.HTTPNotFound()
        if self.honour_range:
            return web.FileResponse(path)
        return web.Response(body=path.read_bytes(), content_type="application/octet-stream")


class RawServer:
    """An asyncio TCP server on 127.0.0.1 running ``handler(reader, writer)`` per connection."""

    def __init__(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/data/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None


async def read_request_head(reader: asyncio.StreamReader) -> list[str]:
    """The request line and header lines of the next request on ``reader`` ([] at EOF)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return []
    return head.decode("latin-1").split("\r\n")[:-2]


class ConnectionCounter:
    """A listener that accepts, counts and closes: a host that must never be contacted."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._count, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _count(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def store_config(
    base_url: str, probe: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """A manager config with one ``http`` store named ``web``."""
    store = {"driver": "http", "base_url": base_url, "probe": probe or NO_BACKGROUND_PROBE}
    store.update(options)
    return {"stores": {"web": store}}


@contextlib.asynccontextmanager
async def http_store(
    base_url: str, probe: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[Store]:
    """A running manager with one ``http`` store; yields the store."""
    async with StoreManager(store_config(base_url, probe, **options)) as manager:
        yield manager["web"]
