"""A small real HTTP proxy in front of Azurite that can lose answers: the request reaches the
service (which acts on it), and the client gets a 503 instead of the answer, as when a
connection breaks on the way back."""

from __future__ import annotations

from aiohttp import web

from tests.support.cloudstores import ForwardingProxy

__all__ = ["LossyProxy"]


class LossyProxy(ForwardingProxy):
    """``async with LossyProxy(upstream) as proxy:`` — ``proxy.url`` is the service URL."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        #: Successful PUTs (Put Blob, Put Block List) still to be lost.
        self.lose_puts = 0
        self.lost = 0

    async def handle(self, request: web.Request, body: bytes) -> web.StreamResponse:
        response = await self.forward(request, body)
        committing = request.method == "PUT" and request.query.get("comp") in (None, "blocklist")
        if committing and self.lose_puts and response.status == 201:
            self.lose_puts -= 1
            self.lost += 1
            return web.Response(status=503, text="answer lost")
        return response
