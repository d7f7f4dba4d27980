"""The token at the door, in process: what reaches the stores without the right token."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from aiostore.errors import BadStoreConfiguration
from aiostore.web import ServerOptions, create_app

from .support import serve

CONFIG: dict[str, Any] = {"probe": {"enabled": False}, "stores": {"s": {"driver": "memory"}}}


def _tokens(tmp_path: Path) -> ServerOptions:
    (tmp_path / "full").write_text("full-token")
    (tmp_path / "read").write_text("read-token")
    return ServerOptions(token_file=str(tmp_path / "full"), read_token_file=str(tmp_path / "read"))


async def _expect_put(port: int, key: str, token: str | None) -> bytes:
    """A PUT with ``Expect: 100-continue``: what the server answers before any body is sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(
            f"PUT /stores/s/objects/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            f"Expect: 100-continue\r\n{auth}\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(20):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_expect_continue_checks_the_token_first(tmp_path: Path) -> None:
    """aiohttp runs a route's Expect handler before any middleware: without the token a PUT
    must learn nothing (not 409 for an existing key, not 100 Continue)."""
    async with serve(CONFIG, server=_tokens(tmp_path)) as (client, manager):
        await manager["s"].put("exists", b"abc")
        for key in ("exists", "new"):
            head = await _expect_put(client.port, key, None)
            assert head.startswith(b"HTTP/1.1 401 "), head
            head = await _expect_put(client.port, key, "wrong")
            assert head.startswith(b"HTTP/1.1 401 "), head
            head = await _expect_put(client.port, key, "read-token")
            assert head.startswith(b"HTTP/1.1 403 "), head
        assert (await _expect_put(client.port, "exists", "full-token")).startswith(b"HTTP/1.1 409 ")
        assert (await _expect_put(client.port, "new", "full-token")).startswith(b"HTTP/1.1 100 ")


async def test_bearer_scheme_is_case_insensitive_and_tokens_exact(tmp_path: Path) -> None:
    async with serve(CONFIG, server=_tokens(tmp_path)) as (client, _):
        for header, status in (
            ("Bearer full-token", 200),
            ("bearer full-token", 200),
            ("Bearer  full-token ", 200),
            ("Bearer full-toke", 401),
            ("Bearer full-token2", 401),
            ("Basic full-token", 401),
            ("full-token", 401),
            ("Bearer read-token", 200),
        ):
            resp = await client.get("/stores", headers={"Authorization": header})
            assert resp.status == status, header
            if status == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                assert (await resp.json())["error"] == "Unauthorized"


async def test_same_token_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("same")
    with pytest.raises(BadStoreConfiguration, match="read_token_file"):
        create_app(
            CONFIG,
            server=ServerOptions(
                token_file=str(tmp_path / "t"), read_token_file=str(tmp_path / "t")
            ),
        )


async def test_without_tokens_nothing_is_asked(tmp_path: Path) -> None:
    async with serve(CONFIG) as (client, _):
        assert (await client.get("/stores")).status == 200
        assert (await client.put("/stores/s/objects/k", data=b"v")).status == 201
