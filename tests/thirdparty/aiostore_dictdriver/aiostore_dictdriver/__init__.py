"""A tiny aiostore driver keeping objects in a dict: an example of a third-party driver.

Everything a driver needs: an options dataclass, a ``Driver`` subclass declaring its name,
schemes and native capabilities, and a ``DriverSession`` doing the I/O and raising only
``aiostore.errors`` exceptions.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from aiostore.errors import Duplicate, NotFound
from aiostore.sdk import (
    BytesReader,
    Capability,
    Driver,
    DriverReader,
    DriverSession,
    ObjectInfo,
    ProbeResult,
    Verdict,
)

__all__ = ["DictDriver", "DictOptions"]


@dataclasses.dataclass(frozen=True, slots=True)
class DictOptions:
    """Options of the ``dictdrv`` driver."""

    #: Bytes per chunk when reading.
    chunk_size: int = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    data: bytes
    metadata: dict[str, Any]
    modified: float


class DictDriver(Driver[DictOptions]):
    """Objects in a dict per store. Reads at any offset; writes whole objects only."""

    name: ClassVar[str] = "dictdrv"
    schemes: ClassVar[tuple[str, ...]] = ("dict",)
    native_capabilities: ClassVar[Capability] = (
        Capability.READ_RANDOM | Capability.WRITE_ACCESS | Capability.DRIVER_REUSABLE
    )
    Options: ClassVar[type[DictOptions]] = DictOptions

    def __init__(self, store: str, options: DictOptions) -> None:
        super().__init__(store, options)
        self.objects: dict[str, _Entry] = {}

    def location_prefix(self) -> str:
        return f"dict://{self.store}/"

    async def open_session(self) -> DictSession:
        return DictSession(self)


class DictSession(DriverSession):
    """Operations on the driver's dict."""

    def __init__(self, driver: DictDriver) -> None:
        self._driver = driver

    async def probe(self) -> ProbeResult:
        return {Capability.READ_ACCESS: Verdict.ok(), Capability.WRITE_ACCESS: Verdict.ok()}

    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Any,
    ) -> None:
        objects = self._driver.objects
        if not overwrite and key in objects:
            raise Duplicate("an object with this key exists", key=key)
        data = b"".join([chunk async for chunk in stream])
        # No await between this check and the assignment: create-only puts are atomic.
        if not overwrite and key in objects:
            raise Duplicate("an object with this key exists", key=key)
        objects[key] = _Entry(data, dict(metadata), time.time())

    def _get(self, key: str) -> _Entry:
        try:
            return self._driver.objects[key]
        except KeyError:
            raise NotFound("no such object", key=key) from None

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        entry = self._get(key)  # one entry: the bytes and the info of one version
        end = len(entry.data) if length is None else offset + length
        info = ObjectInfo(key, len(entry.data), entry.modified, entry.metadata)
        return BytesReader(entry.data[offset:end], self._driver.options.chunk_size, info=info)

    async def delete(self, key: str) -> None:
        self._get(key)
        del self._driver.objects[key]

    async def stat(self, key: str) -> ObjectInfo:
        entry = self._get(key)
        return ObjectInfo(key, len(entry.data), entry.modified, entry.metadata)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for key in sorted(k for k in self._driver.objects if k.startswith(prefix)):
            entry = self._driver.objects.get(key)
            if entry is not None:
                yield ObjectInfo(key, len(entry.data), entry.modified, entry.metadata)
