"""A small real HTTP proxy in front of Azurite that can lose answers: the request reaches the
service (which acts on it), and the client gets a 503 instead of the answer, as when a
connection breaks on the way back."""

from __future__ import annotations

from types import TracebackType
from typing import Final

import aiohttp
from aiohttp import web

__all__ = ["LossyProxy"]

_HOP: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)


class LossyProxy:
    """``async with LossyProxy(upstream) as proxy:`` — ``proxy.url`` is the service URL."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        #: Successful PUTs (Put Blob, Put Block List) still to be lost.
        self.lose_puts = 0
        self.lost = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LossyProxy:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._http = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._http.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            # Forward the request as signed: no header of aiohttp's own.
            skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent", "Accept"),
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            status = resp.status
        committing = request.method == "PUT" and request.query.get("comp") in (None, "blocklist")
        if committing and self.lose_puts and status == 201:
            self.lose_puts -= 1
            self.lost += 1
            return web.Response(status=503, text="answer lost")
        return web.Response(status=status, body=data, headers=out)
