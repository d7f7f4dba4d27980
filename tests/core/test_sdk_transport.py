"""The SDK's transport table (``transport_error_map``) on real aiohttp failures against loopback
servers, and the ErrorMap lookups drivers build on it (``table[cls]``, ``with_write``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from aiostore.errors import BackendUnavailable, OperationTimeout, StoreError
from aiostore.sdk import Capability, ErrorContext, ErrorMap, transport_error_map
from tests.support.net import free_port

SECRET = "sig=s3cr3t"


def _scrub(text: str) -> str:
    return text.replace(SECRET, "***")


@pytest.fixture
async def hanging() -> AsyncIterator[str]:
    """A server whose answers never come (until the test ends); its URL."""
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await done.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        done.set()
        await runner.cleanup()


@pytest.fixture
async def hanging_up() -> AsyncIterator[str]:
    """A server that closes every connection without answering; its URL."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def _failure(table: ErrorMap, url: str, operation: str, **timeout: float) -> StoreError:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(**timeout)) as session:
        with pytest.raises(StoreError) as info, table.mapping(key="k", operation=operation):
            async with session.get(f"{url}/?{SECRET}") as response:
                await response.read()
    return info.value


async def test_a_refused_connection_cannot_reach_the_endpoint_and_revokes() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    table = transport_error_map("Svc", f"{url}/?{SECRET}", scrub=_scrub)
    err = await _failure(table, url, "put")
    assert type(err) is BackendUnavailable
    assert f"Svc put: cannot reach {url}/?***: ClientConnectorError" in str(err)
    assert SECRET not in str(err) and err.key == "k"
    assert err.revokes == Capability.WRITE_ACCESS and not err.session_broken
    assert isinstance(err.__cause__, aiohttp.ClientConnectorError)
    err = await _failure(transport_error_map("Svc"), url, "read")
    assert "Svc read: cannot reach the service: " in str(err)
    assert err.revokes == Capability.READ_ACCESS


async def test_a_dropped_connection_is_a_failed_connection(hanging_up: str) -> None:
    err = await _failure(transport_error_map("Svc", scrub=_scrub), hanging_up, "read")
    assert type(err) is BackendUnavailable
    assert "Svc read: connection failed: ServerDisconnectedError" in str(err)
    assert err.revokes == Capability.READ_ACCESS


async def test_timeouts_are_operation_timeouts(hanging: str) -> None:
    table = transport_error_map("Svc", hanging)
    err = await _failure(table, hanging, "read", sock_read=0.2)  # aiohttp's own timeout
    assert type(err) is OperationTimeout and err.revokes == Capability.READ_ACCESS
    assert "Svc read: timed out (" in str(err) and "Timeout on reading data" in str(err)
    async with asyncio.timeout(10):
        with pytest.raises(OperationTimeout) as info, table.mapping(operation="delete"):
            async with asyncio.timeout(0.2):  # a bare TimeoutError: the caller's deadline
                await _failure(table, hanging, "unused")
    assert str(info.value) == "Svc delete: timed out"
    assert info.value.revokes == Capability.WRITE_ACCESS


def test_entries_are_found_by_class_and_extended_with_or() -> None:
    table = transport_error_map("Svc")
    assert table[ConnectionResetError] is table[OSError] is table[aiohttp.ClientPayloadError]
    assert table[aiohttp.ServerTimeoutError] is table[TimeoutError]
    with pytest.raises(KeyError):
        table[ValueError]

    class Refused(Exception):
        pass

    extended = table | ErrorMap({Refused: table[aiohttp.ClientConnectorError]})
    err = extended.translate(Refused("no"), operation="list")
    assert isinstance(err, BackendUnavailable)
    assert str(err) == "Svc list: cannot reach the service: Refused: no"
    assert extended.translate(ValueError("x")).__class__ is ValueError


def test_with_write_fixes_the_side_whatever_the_operation_is_called() -> None:
    sides: list[bool] = []

    def record(exc: BaseException, ctx: ErrorContext) -> StoreError:
        sides.append(ctx.write)
        return StoreError("x")

    table = ErrorMap({ValueError: record})
    table.translate(ValueError(), operation="PutObject")
    table.translate(ValueError(), operation="put")
    table.with_write(True).translate(ValueError(), operation="PutObject")
    table.with_write(False).translate(ValueError(), operation="put")
    (table.with_write(True) | ErrorMap({})).translate(ValueError(), operation="GetObject")
    assert sides == [False, True, True, False, True]
