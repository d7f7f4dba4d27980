"""``service_file`` end to end, on loopback: a service-account key file whose token endpoint is
a small aiohttp server of the test; the driver signs a JWT with the key, trades it for an access
token and sends that token on every request (checked by a proxy in front of fake-gcs-server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from aiostore import Capability, StoreGetNotSupported, StoreManager

from .conftest import CHUNK, FakeGCS
from .preconditions import PreconditionProxy

ACCESS_TOKEN = "ya29.loopback-access-token"


@pytest.fixture
async def token_server() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """An OAuth token endpoint: checks the signed assertion's claims, answers a token."""
    assertions: list[dict[str, object]] = []

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        claims = jwt.decode(str(form["assertion"]), options={"verify_signature": False})
        assertions.append(claims)
        return web.json_response({"access_token": ACCESS_TOKEN, "expires_in": 3600})

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/token", assertions
    finally:
        await runner.cleanup()


def service_file(path: Path, token_uri: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    data = {
        "type": "service_account",
        "project_id": "test",
        "client_email": "aiostore@test.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(data))
    return path


async def test_service_file_tokens_reach_every_request(
    fake_gcs: FakeGCS,
    bucket: str,
    tmp_path: Path,
    token_server: tuple[str, list[dict[str, object]]],
) -> None:
    uri, assertions = token_server
    credentials = service_file(tmp_path / "key.json", uri)
    async with PreconditionProxy(fake_gcs.url, require=f"Bearer {ACCESS_TOKEN}") as proxy:
        table = {
            "driver": "gcs",
            "bucket": bucket,
            "endpoint_url": proxy.url,
            "service_file": str(credentials),
            "chunk_size": CHUNK,
        }
        async with StoreManager({"stores": {"gcs": table}}) as manager:
            store = manager["gcs"]
            assert store.health.healthy, store.health
            await store.put("small", b"x", metadata={"a": "b"})
            await store.put("big", b"y" * (2 * CHUNK + 1))
            assert await store.read("small") == b"x"
            async with store.open("big", offset=CHUNK) as reader:
                assert await reader.read() == b"y" * (CHUNK + 1)
            assert [i.key async for i in store.list("")] == ["big", "small"]
            await store.delete("small")
        assert proxy.unauthorized == 0
    assert assertions and assertions[0]["iss"] == "aiostore@test.iam.gserviceaccount.com"
    assert assertions[0]["aud"] == uri


async def test_without_credentials_the_server_refuses(fake_gcs: FakeGCS, bucket: str) -> None:
    """Anonymous requests (an endpoint without service_file) to a server that wants a token:
    the probe reports it, nothing is retried forever."""
    async with PreconditionProxy(fake_gcs.url, require="Bearer something") as proxy:
        table = {"driver": "gcs", "bucket": bucket, "endpoint_url": proxy.url}
        async with StoreManager({"stores": {"gcs": table}}) as manager:
            store = manager["gcs"]
            assert Capability.READ_ACCESS not in store.capabilities
            assert "401" in str(store.health)
        assert proxy.unauthorized >= 1


async def test_unreadable_service_file(fake_gcs: FakeGCS, bucket: str, tmp_path: Path) -> None:
    """A credentials file that cannot be read: the probe revokes access and says which option
    is wrong; operations are refused with that reason (the file may appear later)."""
    table = {
        "driver": "gcs",
        "bucket": bucket,
        "endpoint_url": fake_gcs.url,
        "service_file": str(tmp_path / "missing.json"),
    }
    async with StoreManager({"stores": {"gcs": table}}) as manager:
        store = manager["gcs"]
        assert Capability.READ_ACCESS not in store.capabilities
        assert "option 'service_file'" in str(store.health)
        with pytest.raises(StoreGetNotSupported) as info:
            await store.read("k")
        assert "service_file" in str(info.value)
