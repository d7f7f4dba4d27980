"""Keystone v3 for the swift driver against a small real aiohttp server that speaks the token
API (``POST /v3/auth/tokens``) and, at the endpoints its catalog lists, enough of the Swift
object API for a store: the catalog choice by region and interface, wrong credentials, a token
the server stops accepting (401 → one refresh), and the token never shown."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aiostore import BadStoreConfiguration, Duplicate, StoreManager
from aiostore.drivers.swift import SwiftOptions, endpoint_from_catalog
from aiostore.drivers.swift._auth import authenticate
from aiostore.drivers.swift._errors import AuthError

PASSWORD = "keystone-secret-password"


@dataclass
class FakeCloud:
    """Keystone + Swift in one aiohttp app; ``tokens`` are the ones Swift accepts."""

    base: str = ""
    issued: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    objects: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    #: Listing pages served; the page with this number (1-based) answers 500.
    pages: int = 0
    heads: int = 0
    failing_page: int | None = None

    def catalog(self) -> list[dict[str, Any]]:
        def ep(iface: str, region: str) -> dict[str, Any]:
            url = f"{self.base}/swift/{region}/{iface}/v1/AUTH_demo"
            return {"interface": iface, "region_id": region, "region": region, "url": url}

        return [
            {"type": "identity", "endpoints": [ep("public", "RegionOne")]},
            {
                "type": "object-store",
                "endpoints": [
                    ep("public", "RegionOne"),
                    ep("internal", "RegionOne"),
                    ep("public", "RegionTwo"),
                ],
            },
        ]

    async def tokens_post(self, request: web.Request) -> web.Response:
        body = await request.json()
        pw = body["auth"]["identity"]["password"]["user"]
        scope = body["auth"]["scope"]["project"]
        if pw["password"] != PASSWORD or pw["name"] != "demo" or scope["name"] != "proj":
            return web.json_response({"error": {"code": 401}}, status=401)
        token = f"gAAAAAtoken{len(self.issued):04d}"
        self.issued.append(token)
        self.tokens.add(token)
        data = {"token": {"expires_at": "2999-01-01T00:00:00.000000Z", "catalog": self.catalog()}}
        return web.json_response(data, status=201, headers={"X-Subject-Token": token})

    async def swift(self, request: web.Request) -> web.StreamResponse:
        region, iface = request.match_info["region"], request.match_info["iface"]
        where = f"{region}/{iface}"
        self.hits[where] = self.hits.get(where, 0) + 1
        if request.headers.get("X-Auth-Token") not in self.tokens:
            return web.Response(status=401)
        path = request.match_info["path"]
        _container, _, name = path.partition("/")
        if not name:  # the container
            if request.method in ("HEAD", "PUT"):
                return web.Response(status=204 if request.method == "HEAD" else 202)
            self.pages += 1
            if self.pages == self.failing_page:
                return web.Response(status=500)
            prefix = request.query.get("prefix", "")
            marker = request.query.get("marker", "")
            limit = int(request.query.get("limit", "10000"))
            names = sorted(n for n in self.objects if n.startswith(prefix) and n > marker)
            listing = [{"name": n, "bytes": len(self.objects[n][0])} for n in names[:limit]]
            return web.json_response(listing)
        if request.method == "PUT":
            if request.headers.get("If-None-Match") == "*" and name in self.objects:
                await request.read()
                return web.Response(status=412)
            meta = {k: v for k, v in request.headers.items() if k.startswith("X-Object-Meta-")}
            self.objects[name] = (await request.read(), meta)
            return web.Response(status=201, headers={"ETag": "e"})
        if name not in self.objects:
            return web.Response(status=404)
        data, meta = self.objects[name]
        if request.method == "HEAD":
            self.heads += 1
        if request.method == "DELETE":
            del self.objects[name]
            return web.Response(status=204)
        headers = {**meta, "ETag": "e"}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if match:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return web.Response(status=416)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return web.Response(status=206, body=data[start : end + 1], headers=headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=data, headers=headers)


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    fake = FakeCloud()
    app = web.Application()
    app.router.add_post("/v3/auth/tokens", fake.tokens_post)
    app.router.add_route("*", "/swift/{region}/{iface}/v1/AUTH_demo/{path:.*}", fake.swift)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def _options(cloud: FakeCloud, **kw: Any) -> SwiftOptions:
    values: dict[str, Any] = {
        "auth_url": f"{cloud.base}/v3",
        "auth_version": "3",
        "user": "demo",
        "key": PASSWORD,
        "project": "proj",
        "container": "images",
        **kw,
    }
    return SwiftOptions(**values)


@pytest.mark.parametrize(
    ("region", "interface", "expect"),
    [
        (None, "public", "RegionOne/public"),
        ("RegionOne", "internal", "RegionOne/internal"),
        ("RegionTwo", "public", "RegionTwo/public"),
    ],
)
async def test_catalog_endpoint_by_region_and_interface(
    cloud: FakeCloud, region: str | None, interface: Any, expect: str
) -> None:
    async with aiohttp.ClientSession() as client:
        token = await authenticate(client, _options(cloud, region=region, interface=interface))
    assert token.storage_url == f"{cloud.base}/swift/{expect}/v1/AUTH_demo"
    assert token.value == cloud.issued[-1]
    assert token.value not in repr(token) and token.value not in str(token)
    assert not token.expired


async def test_no_matching_endpoint_names_what_the_catalog_offers(cloud: FakeCloud) -> None:
    async with aiohttp.ClientSession() as client:
        with pytest.raises(BadStoreConfiguration) as info:
            await authenticate(client, _options(cloud, region="RegionTwo", interface="internal"))
    text = str(info.value)
    assert "internal" in text and "RegionTwo" in text and "public@RegionOne" in text


def test_catalog_without_object_store() -> None:
    with pytest.raises(BadStoreConfiguration, match="no object-store service"):
        endpoint_from_catalog([{"type": "identity", "endpoints": []}], region=None,
                              interface="public")  # fmt: skip


async def test_wrong_password_is_refused(cloud: FakeCloud) -> None:
    async with aiohttp.ClientSession() as client:
        with pytest.raises(AuthError) as info:
            await authenticate(client, _options(cloud, key="wrong"))
    assert info.value.status == 401
    assert "wrong" not in str(info.value) and PASSWORD not in str(info.value)


async def test_store_over_keystone_refreshes_a_rejected_token_once(
    cloud: FakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    table = {
        "driver": "swift",
        "auth_url": f"{cloud.base}/v3",
        "auth_version": "3",
        "user": "demo",
        "key": PASSWORD,
        "project": "proj",
        "region": "RegionTwo",
        "container": "images",
        "probe": {"interval": 60},
    }
    async with StoreManager({"stores": {"ks": table}}) as manager:
        store = manager["ks"]
        report = await store.probe()
        assert report.healthy, str(report)
        # This server honours If-None-Match: create-only is left to it (no HEAD first).
        assert store.driver.conditional_put is True
        await store.put("a/b c", b"hello", metadata={"who": "Zoë"})
        heads = cloud.heads
        with pytest.raises(Duplicate):
            await store.put("a/b c", b"again")
        assert cloud.heads == heads
        assert cloud.hits.get("RegionTwo/public", 0) > 0
        assert set(cloud.hits) == {"RegionTwo/public"}
        issued = len(cloud.issued)
        cloud.tokens.clear()  # the server stops accepting every token it gave out
        assert await store.read("a/b c", offset=1, length=3) == b"ell"
        assert len(cloud.issued) == issued + 1  # one refresh
        assert dict((await store.stat("a/b c")).metadata) == {"who": "Zoë"}
        assert [i.key async for i in store.list("a/")] == ["a/b c"]
        snapshot = json.dumps(manager.snapshot(), default=str)
        shown = [snapshot, repr(store.driver), *(r.getMessage() for r in caplog.records)]
    for text in shown:
        assert PASSWORD not in text
        for token in cloud.issued:
            assert token not in text


async def test_listing_pages_with_marker_and_never_returns_part_of_it(
    cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiostore import BackendUnavailable
    from aiostore.drivers.swift import _session

    monkeypatch.setattr(_session, "PAGE", 2)
    table = {
        "driver": "swift",
        "auth_url": f"{cloud.base}/v3",
        "auth_version": "3",
        "user": "demo",
        "key": PASSWORD,
        "project": "proj",
        "container": "images",
        "max_attempts": 1,
        "probe": {"enabled": False},
    }
    async with StoreManager({"stores": {"ks": table}}) as manager:
        store = manager["ks"]
        keys = [f"p/{i}" for i in range(5)]
        for key in keys:
            await store.put(key, key.encode())
        cloud.pages = 0
        assert [i.key async for i in store.list("p/")] == keys
        assert cloud.pages == 3  # 2 + 2 + 1
        cloud.pages, cloud.failing_page = 0, 2
        seen: list[str] = []
        with pytest.raises(BackendUnavailable):
            async for info in store.list("p/"):
                seen.append(info.key)
        assert seen == keys[:2]  # what came before the failure, then an error: never a silent end
