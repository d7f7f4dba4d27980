"""A small real HTTP proxy in front of fake-gcs-server that enforces ``ifGenerationMatch=0`` on
uploads, as Google Cloud Storage does (the emulator ignores it).

Media and multipart uploads with the precondition are checked when they arrive; a resumable
upload started with it is checked when its last chunk (the one with the total size) arrives.
The check and the forwarding run under one lock per object name, so the proxy is atomic like
the real service. Everything else is forwarded unchanged; ``Location`` headers of resumable
uploads are rewritten to point back at the proxy.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from urllib.parse import quote

from aiohttp import web

from tests.support.cloudstores import ForwardingProxy

__all__ = ["PreconditionProxy"]


class PreconditionProxy(ForwardingProxy):
    """``async with PreconditionProxy(upstream_url) as proxy:`` — ``proxy.url`` is the endpoint.
    With ``require=``, it also checks every request's ``Authorization`` header."""

    def __init__(self, upstream: str, *, require: str | None = None) -> None:
        super().__init__(upstream)
        #: With ``require``: every request must carry ``Authorization: require`` (else 401).
        self.require = require
        self.unauthorized = 0
        #: Uploads still to be "lost": forwarded (the server stores them), then answered 503,
        #: as when an answer is lost on the way back.
        self.lose_uploads = 0
        #: Requests seen, by ``"METHOD kind"`` (kind: upload, chunk, object, list, other), and
        #: how many uploads the proxy refused with 412.
        self.seen: Counter[str] = Counter()
        self.refused = 0
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._resumable: dict[str, tuple[str, str]] = {}

    # -- handling ---------------------------------------------------------------------------
    async def handle(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if self.require is not None and request.headers.get("Authorization") != self.require:
            self.unauthorized += 1
            error = {"error": {"code": 401, "message": "Unauthorized"}}
            return web.json_response(error, status=401)
        query = request.query
        path = request.path
        if path.startswith("/upload/storage/v1/b/") and request.method == "POST":
            self.seen["POST upload"] += 1
            bucket = path.split("/")[5]
            kind = query.get("uploadType", "")
            if query.get("ifGenerationMatch") == "0":
                name = query.get("name") or _multipart_name(request.content_type, body)
                if kind == "resumable":
                    response = await self.forward(request, body)
                    upload_id = _upload_id(response.headers.get("Location", ""))
                    if upload_id:
                        self._resumable[upload_id] = (bucket, name)
                    return response
                return await self._guarded(request, body, bucket, name)
            return await self.forward(request, body)
        if path.startswith("/upload/storage/v1/b/") and request.method == "PUT":
            self.seen["PUT chunk"] += 1
            target = self._resumable.get(query.get("upload_id", ""))
            total = request.headers.get("Content-Range", "").rsplit("/", 1)[-1]
            if target is not None and total not in ("", "*"):
                return await self._guarded(request, body, *target)
            return await self.forward(request, body)
        if path.startswith("/upload/"):
            self.seen[f"{request.method} upload"] += 1
            return await self.forward(request, body)
        kind = "object" if "/o/" in path else "list" if path.endswith("/o") else "other"
        self.seen[f"{request.method} {kind}"] += 1
        return await self.forward(request, body)

    async def _guarded(
        self, request: web.Request, body: bytes, bucket: str, name: str
    ) -> web.StreamResponse:
        lock = self._locks.setdefault((bucket, name), asyncio.Lock())
        async with lock:
            assert self._http is not None
            url = f"{self.upstream}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
            async with self._http.get(url) as resp:
                exists = resp.status == 200
            if exists:
                self.refused += 1
                error = {"error": {"code": 412, "message": "Precondition Failed"}}
                return web.json_response(error, status=412)
            response = await self.forward(request, body)
            if self.lose_uploads and response.status in (200, 201):
                self.lose_uploads -= 1
                error = {"error": {"code": 503, "message": "answer lost"}}
                return web.json_response(error, status=503)
            return response


def _upload_id(location: str) -> str:
    for part in location.split("?", 1)[-1].split("&"):
        if part.startswith("upload_id="):
            return part.split("=", 1)[1]
    return ""


def _multipart_name(content_type: str, body: bytes) -> str:
    """The object name in the JSON part of a multipart upload."""
    start = body.find(b"{")
    end = body.find(b"\r\n--", start)
    try:
        return str(json.loads(body[start:end])["name"])
    except (ValueError, KeyError):
        return ""
