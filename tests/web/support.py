"""Helpers of the aiostore.web and CLI tests: store configurations, test drivers, SSE reading."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from aiostore import Capability, StoreManager
from aiostore._types import Metadata, ObjectInfo
from aiostore.capabilities.probe import ProbeResult, Verdict
from aiostore.drivers.base import Driver, DriverReader, DriverSession, NoOptions
from aiostore.drivers.memory import MemoryDriver
from aiostore.errors import BackendUnavailable, NotFound
from aiostore.web import STORES, ServerOptions, create_app

HAS_FILE_DRIVER = importlib.util.find_spec("aiostore.drivers.file") is not None
#: The real drivers every REST test runs on.
BACKENDS = ["memory", "file"] if HAS_FILE_DRIVER else ["memory"]
PROBE_INTERVAL = 2.5  # -> Retry-After: 3


def store_config(kind: str, tmp_path: Path, name: str = "root") -> dict[str, Any]:
    if kind == "memory":
        return {"driver": "memory"}
    if kind == "file":
        return {"driver": "file", "root": str(tmp_path / name), "fsync": False}
    raise ValueError(kind)


class SequentialDriver(MemoryDriver):
    """A memory store that can only read whole objects (no READ_RANDOM): ranges are 501."""

    name: ClassVar[str] = "sequential"
    native_capabilities: ClassVar[Capability] = Capability.RW_ACCESS | Capability.DRIVER_REUSABLE


class SinkDriver(Driver[NoOptions]):
    """Counts what a put streams into it and keeps nothing: isolates the web layer's memory use."""

    name: ClassVar[str] = "sink"
    schemes: ClassVar[tuple[str, ...]] = ("sink",)
    native_capabilities: ClassVar[Capability] = Capability.RW_ACCESS | Capability.DRIVER_REUSABLE
    Options: ClassVar[type[NoOptions]] = NoOptions
    received: ClassVar[dict[str, int]] = {}

    def location_prefix(self) -> str:
        return f"sink://{self.store}/"

    async def open_session(self) -> DriverSession:
        return _SinkSession(self)


class _SinkSession(DriverSession):
    def __init__(self, driver: SinkDriver) -> None:
        self.driver = driver

    async def probe(self) -> ProbeResult:
        return {Capability.READ_ACCESS: Verdict.ok(), Capability.WRITE_ACCESS: Verdict.ok()}

    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        total = 0
        async for chunk in stream:
            total += len(chunk)
        SinkDriver.received[key] = total

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        raise NotFound("the sink keeps nothing", key=key)

    async def delete(self, key: str) -> None:
        raise NotFound("the sink keeps nothing", key=key)

    async def stat(self, key: str) -> ObjectInfo:
        if key == "broken":  # for the mid-stream failure test
            return ObjectInfo(key, 3 << 20, 0.0)
        raise NotFound("the sink keeps nothing", key=key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return
        yield


class BrokenReaderDriver(SinkDriver):
    """``broken`` stats as 3 MiB; reading it yields one chunk, then the backend fails."""

    name: ClassVar[str] = "broken-reader"

    async def open_session(self) -> DriverSession:
        return _BrokenSession(self)


class _BrokenReader(DriverReader):
    def __init__(self) -> None:
        self.size = 3 << 20
        self.chunks = 0

    async def read_chunk(self) -> bytes:
        self.chunks += 1
        if self.chunks > 1:
            raise BackendUnavailable("injected: the backend went away mid-read")
        return b"x" * (1 << 20)


class _BrokenSession(_SinkSession):
    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        return _BrokenReader()


def rest_config(backend: str, tmp_path: Path) -> dict[str, Any]:
    """``s``: the backend under test; ``ro``: read-only; ``tiny``: 16 bytes; ``seq``: no ranges.

    No background probing: tests probe explicitly, so no scheduled or early probe races with
    theirs (the file driver reports overlapping probes as a hung file system).
    """
    return {
        "default": "s",
        "probe": {
            "enabled": False,
            "interval": PROBE_INTERVAL,
            "failures_to_revoke": 1,
            "successes_to_restore": 1,
        },
        "stores": {
            "s": store_config(backend, tmp_path),
            "ro": {"driver": "memory", "read_only": True},
            "tiny": {"driver": "memory", "max_bytes": 16},
            "seq": {"driver": SequentialDriver},
        },
    }


@contextlib.asynccontextmanager
async def serve(
    config: dict[str, Any] | StoreManager,
    *,
    heartbeat: float = 15.0,
    server: ServerOptions | None = None,
) -> AsyncIterator[tuple[TestClient[Any, Any], StoreManager]]:
    """The app of ``aiostore.web.create_app`` on 127.0.0.1, with a client; the manager runs."""
    app = create_app(config, heartbeat=heartbeat, server=server)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, app[STORES]


async def next_event(resp: ClientResponse, *, comments: bool = False) -> tuple[str, Any]:
    """The next Server-Sent Event as (event, parsed data); ``(": comment", text)`` for
    comments when ``comments`` is true."""
    event, data = "message", []
    while True:
        raw = await resp.content.readline()
        if not raw:
            raise EOFError("the event stream ended")
        line = raw.decode().rstrip("\n")
        if line == "":
            if data:
                return event, json.loads("\n".join(data))
            event = "message"
            continue
        if line.startswith(":"):
            if comments:
                return ":", line[1:].strip()
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


async def next_event_of(resp: ClientResponse, kind: str, timeout: float) -> Any:
    """The data of the next event named ``kind`` within ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            event, data = await next_event(resp)
            if event == kind:
                return data
