"""PUT streams request bodies into the store without buffering them; GET streams out."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .support import HAS_FILE_DRIVER, BrokenReaderDriver, SinkDriver, serve, store_config

SIZE = 64 << 20
CHUNK = 1 << 20


async def _body(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield chunk  # the same object every time: the client side allocates nothing per chunk


@pytest.mark.parametrize(
    "kind",
    [
        "sink",
        pytest.param(
            "file",
            marks=pytest.mark.skipif(not HAS_FILE_DRIVER, reason="aiostore.drivers.file missing"),
        ),
    ],
)
async def test_put_64_mib_streams_without_buffering(kind: str, tmp_path: Path) -> None:
    """64 MiB go through PUT while the process's traced memory peaks far below 64 MiB (the
    memory driver is left out: it keeps objects in memory by design)."""
    cfg: dict[str, Any] = (
        {"driver": SinkDriver} if kind == "sink" else store_config("file", tmp_path)
    )
    chunk = b"\xa5" * CHUNK
    expected = hashlib.md5()
    for _ in range(SIZE // CHUNK):
        expected.update(chunk)
    async with serve({"stores": {"big": cfg}}) as (client, manager):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            resp = await client.put(
                "/stores/big/objects/blob",
                data=_body(chunk, SIZE // CHUNK),
                params={"size": str(SIZE)},
            )
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        body = await resp.json()
        assert resp.status == 201, body
        assert body["size"] == SIZE
        assert body["checksum"] == expected.hexdigest()
        assert peak < 16 << 20, f"peak traced memory grew by {peak / 2**20:.1f} MiB"
        if kind == "sink":
            assert SinkDriver.received["blob"] == SIZE
        else:
            assert (await manager["big"].stat("blob")).size == SIZE
            resp = await client.get("/stores/big/objects/blob", headers={"Range": "bytes=-5"})
            assert (resp.status, await resp.read()) == (206, b"\xa5" * 5)


async def test_get_failing_mid_stream_cuts_the_connection() -> None:
    """When the backend fails after the headers went out, the client sees a truncated body
    (a payload error), never a complete-looking short one."""
    async with serve({"stores": {"b": {"driver": BrokenReaderDriver}}}) as (client, _):
        resp = await client.get("/stores/b/objects/broken")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(3 << 20)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        # The server is fine afterwards.
        assert (await client.get("/stores")).status == 200
