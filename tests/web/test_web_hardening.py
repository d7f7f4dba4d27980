"""Defects found by attacking the REST service: each test failed on the first release."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import TestClient

from aiostore import StoreManager
from aiostore.web import STORES, ServerOptions, create_app

from .support import HAS_FILE_DRIVER, serve, store_config

needs_file = pytest.mark.skipif(not HAS_FILE_DRIVER, reason="aiostore.drivers.file is missing")
WAIT = 20.0  # generous: the machine is shared


def _config(tmp_path: Path, backend: str = "memory") -> dict[str, Any]:
    return {"probe": {"enabled": False}, "stores": {"s": store_config(backend, tmp_path)}}


async def raw_request(client: TestClient[Any, Any], request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as is on a new connection; (status, whole response)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            data = await read_response(reader, head_only=request.startswith(b"HEAD "))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return int(data.split(b" ", 2)[1]), data


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> bytes:
    """One response: its head and its Content-Length bytes (not up to EOF: a server may keep
    the connection open to read a body the test never sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if head_only:
        return head
    return head + (await reader.readexactly(int(match.group(1))) if match else b"")


def _json_body(response: bytes) -> str:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    return body.decode()


# -- defect 10: every error JSON ----------------------------------------------------------------


async def test_router_404_and_405_are_json(tmp_path: Path) -> None:
    async with serve(_config(tmp_path)) as (client, _):
        resp = await client.get("/no/such/path")
        assert resp.status == 404
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert body["error"] == "NotFound" and "/no/such/path" in body["message"]

        resp = await client.post("/stores/s/objects/x")
        assert resp.status == 405
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert body["error"] == "MethodNotAllowed"
        assert "PUT" in resp.headers["Allow"] and "POST" in body["message"]

        resp = await client.get("/dashboard/nope.js")
        assert resp.status == 404 and resp.content_type == "application/json"


# -- defect 5: metadata that is not text --------------------------------------------------------


async def test_metadata_with_a_lone_surrogate_is_400(tmp_path: Path) -> None:
    async with serve(_config(tmp_path)) as (client, manager):
        resp = await client.put(
            "/stores/s/objects/k", data=b"abc", headers={"X-Aiostore-Meta": '{"a":"\\ud800"}'}
        )
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"] == "InvalidMetadata"
        assert not await manager["s"].exists("k")


async def test_metadata_header_of_raw_latin1_bytes_is_400(tmp_path: Path) -> None:
    async with serve(_config(tmp_path)) as (client, manager):
        status, response = await raw_request(
            client,
            b"PUT /stores/s/objects/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b'Connection: close\r\nX-Aiostore-Meta: {"a":"caf\xe9"}\r\n\r\nabc',
        )
        assert status == 400, response
        assert '"InvalidMetadata"' in _json_body(response)
        assert not await manager["s"].exists("k")


# -- defect 9: keys that cannot be told apart ---------------------------------------------------


async def test_path_that_is_not_utf8_is_invalid_key(tmp_path: Path) -> None:
    async with serve(_config(tmp_path)) as (client, manager):
        store = manager["s"]
        status, response = await raw_request(
            client,
            b"PUT /stores/s/objects/%25ff%25fe HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nabc",
        )
        assert status == 201, response
        assert await store.read("%ff%fe") == b"abc"
        for method in (b"GET", b"HEAD", b"DELETE", b"PUT"):
            status, response = await raw_request(
                client,
                method + b" /stores/s/objects/%ff%fe HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n",
            )
            assert status == 400, (method, response)
            if method != b"HEAD":
                assert '"InvalidKey"' in _json_body(response)
        assert await store.read("%ff%fe") == b"abc"  # untouched


@pytest.mark.parametrize("raw", [b"a%0d%0ab", b"a%0Ab", b"%0D", b"x/%00"])
async def test_key_with_control_characters_is_400_json(tmp_path: Path, raw: bytes) -> None:
    async with serve(_config(tmp_path)) as (client, _):
        for method in (b"GET", b"PUT", b"DELETE"):
            status, response = await raw_request(
                client,
                method + b" /stores/s/objects/" + raw + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n",
            )
            assert status == 400, (method, response)
            assert '"InvalidKey"' in _json_body(response)


async def test_encoded_slash_and_utf8_keys_still_work(tmp_path: Path) -> None:
    async with serve(_config(tmp_path)) as (client, manager):
        status, response = await raw_request(
            client,
            b"PUT /stores/s/objects/a%2Fcaf%C3%A9+x HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\nhi",
        )
        assert status == 201, response
        assert await manager["s"].read("a/café+x") == b"hi"


# -- defect 7: a client that goes away mid-GET --------------------------------------------------


@needs_file
async def test_client_gone_mid_get_logs_one_quiet_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As ``aiostore serve`` runs it (aiohttp's TestServer cancels handlers instead)."""
    caplog.set_level(logging.DEBUG)
    async with serve_like_the_cli(_config(tmp_path, "file")) as (port, manager):
        await manager["s"].put("big", os.urandom(32 << 20))
        for close in ("rst", "fin", "rst"):
            caplog.clear()
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(sock, b"GET /stores/s/objects/big HTTP/1.1\r\nHost: x\r\n\r\n")
            await loop.sock_recv(sock, 65536)
            if close == "rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            async with asyncio.timeout(WAIT):
                while not [r for r in caplog.records if "went away" in r.getMessage()]:
                    if [r for r in caplog.records if r.levelno >= logging.ERROR]:
                        break
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # anything logged late would show now
            errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert not errors, [r.getMessage() for r in errors]
            gone = [r for r in caplog.records if "went away" in r.getMessage()]
            assert len(gone) == 1 and gone[0].levelno <= logging.INFO
            assert gone[0].exc_info is None


@contextlib.asynccontextmanager
async def serve_like_the_cli(config: dict[str, Any]) -> AsyncIterator[tuple[int, StoreManager]]:
    app = create_app(config)
    runner = aioweb.AppRunner(app)  # handler_cancellation=False, as web.run_app
    await runner.setup()
    try:
        site = aioweb.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield port, app[STORES]
    finally:
        await runner.cleanup()


# -- defect 6: stalled uploads and too many uploads ---------------------------------------------


def _open_fds_under(root: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(root) + "/"):
                found.append(target)
    return found


def _files_under(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]


@contextlib.asynccontextmanager
async def stalled_upload(port: int, key: str, sent: int, total: int) -> AsyncIterator[Any]:
    """A PUT that declares ``total`` bytes, sends ``sent`` and stops; yields the reader."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"PUT /stores/s/objects/{key} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {total}\r\n\r\n".encode()
            + b"x" * sent
        )
        await writer.drain()
        yield reader
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@needs_file
async def test_stalled_upload_is_408_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = ServerOptions(body_timeout=0.5)
    async with serve(_config(tmp_path, "file"), server=server) as (client, manager):
        async with stalled_upload(client.port, "stalled", 2 << 20, 10 << 20) as reader:
            async with asyncio.timeout(WAIT):
                response = await read_response(reader)
                assert await reader.read() == b""  # and the connection is closed at once
            assert response.startswith(b"HTTP/1.1 408 "), response[:200]
            assert '"RequestTimeout"' in _json_body(response)
            assert not _files_under(root)
            assert not _open_fds_under(root)
        assert not await manager["s"].exists("stalled")
        # The store still works.
        resp = await client.put("/stores/s/objects/after", data=b"ok")
        assert resp.status == 201


async def test_uploads_beyond_max_uploads_are_503(tmp_path: Path) -> None:
    server = ServerOptions(max_uploads=2, body_timeout=WAIT)
    async with serve(_config(tmp_path), server=server) as (client, manager):
        async with contextlib.AsyncExitStack() as stack:
            for i in range(2):
                await stack.enter_async_context(stalled_upload(client.port, f"s{i}", 10, 1000))
            # The two stalled uploads are running once the server has seen their headers.
            async with asyncio.timeout(WAIT):
                while True:
                    resp = await client.put(
                        "/stores/s/objects/third", data=b"abc", params={"overwrite": "true"}
                    )
                    if resp.status == 503:
                        break
                    assert resp.status == 201  # it got in before the others: try again
            body = await resp.json()
            assert body["error"] == "TooManyUploads"
            assert int(resp.headers["Retry-After"]) >= 1
        # Stalled uploads gone: uploads are accepted again.
        for _ in range(400):
            if (await client.put("/stores/s/objects/later", data=b"x")).status == 201:
                break
            await asyncio.sleep(0.05)
        assert await manager["s"].read("later") == b"x"


def test_default_limits() -> None:
    assert ServerOptions().body_timeout == 60.0
    assert ServerOptions().max_uploads >= 1


async def test_manager_instance_is_accepted(tmp_path: Path) -> None:
    manager = StoreManager(_config(tmp_path))
    async with serve(manager) as (client, m):
        assert m is manager
        assert (await client.get("/stores/s")).status == 200


async def test_unknown_expectation_is_417_json(tmp_path: Path) -> None:
    async with serve(_config(tmp_path)) as (client, _):
        status, response = await raw_request(
            client,
            b"PUT /stores/s/objects/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Expect: something-else\r\nConnection: close\r\n\r\n",
        )
        assert status == 417, response
        assert '"ExpectationFailed"' in _json_body(response)
