"""In-process memory driver: every operation, atomic puts, an optional size limit.

Objects live in the driver instance (one per store), shared by every session. A put collects its
chunks and commits them in one step with no await in between the existence check and the
assignment, so create-only puts are atomic and a failed or cancelled put leaves nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import ClassVar, Final

from ..errors import BadStoreConfiguration, Duplicate, InvalidRange, NotFound, StorageFull
from ..sdk import (
    BytesReader,
    Capability,
    Driver,
    DriverReader,
    DriverSession,
    Metadata,
    ObjectInfo,
    ProbeResult,
    Verdict,
)

__all__ = ["MemoryDriver", "MemoryOptions"]


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryOptions:
    """Options of the ``memory`` driver."""

    #: Total bytes the store may hold; a put beyond it raises ``StorageFull``.
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes < 0:
            raise BadStoreConfiguration(f"must be ≥ 0, not {self.max_bytes!r}", option="max_bytes")


_versions = itertools.count(1)

_HEALTHY: Final[ProbeResult] = MappingProxyType(
    {
        Capability.READ_ACCESS: Verdict.ok(),
        Capability.READ_RANDOM: Verdict.ok(),
        Capability.WRITE_ACCESS: Verdict.ok(),
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Object:
    data: bytes
    metadata: Metadata
    modified: float
    #: A tag of this version (the ETag readers report).
    version: int = dataclasses.field(default_factory=lambda: next(_versions))


class MemoryDriver(Driver[MemoryOptions]):
    """Objects in a dict. Native RW_RANDOM | DRIVER_REUSABLE."""

    name: ClassVar[str] = "memory"
    schemes: ClassVar[tuple[str, ...]] = ("memory",)
    native_capabilities: ClassVar[Capability] = Capability.RW_RANDOM | Capability.DRIVER_REUSABLE
    Options: ClassVar[type[MemoryOptions]] = MemoryOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: MemoryOptions) -> None:
        super().__init__(store, options)
        self.objects: dict[str, _Object] = {}
        self.used = 0

    def location_prefix(self) -> str:
        return f"memory://{self.store}/"

    async def open_session(self) -> MemorySession:
        return MemorySession(self)


class MemorySession(DriverSession):
    """A view on the driver's dict; closing it only marks it closed."""

    def __init__(self, driver: MemoryDriver) -> None:
        self._d = driver
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True

    async def probe(self) -> ProbeResult:
        limit = self._d.options.max_bytes
        if limit is None or self._d.used < limit:
            return _HEALTHY
        full = Verdict.full(f"store full: {self._d.used} of {limit} bytes used")
        return {**_HEALTHY, Capability.WRITE_ACCESS: full}

    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        d = self._d
        limit = d.options.max_bytes
        if not overwrite and key in d.objects:
            raise Duplicate("an object with this key exists", key=key)
        parts: list[bytes] = []
        total = 0
        async for chunk in stream:
            parts.append(chunk)
            total += len(chunk)
            if limit is not None and d.used + total > limit:
                raise StorageFull(f"memory store limit of {limit} bytes reached", key=key)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        # Commit: no await from here on, so the check and the assignment are one step.
        old = d.objects.get(key)
        if old is not None and not overwrite:
            raise Duplicate("an object with this key exists", key=key)
        new_used = d.used - (len(old.data) if old else 0) + len(data)
        if limit is not None and new_used > limit:
            raise StorageFull(f"memory store limit of {limit} bytes reached", key=key)
        d.objects[key] = _Object(data, metadata, time.time())
        d.used = new_used

    def _get(self, key: str) -> _Object:
        obj = self._d.objects.get(key)
        if obj is None:
            raise NotFound("no such object", key=key)
        return obj

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        # One snapshot: the object, its metadata and its bytes of one version (a concurrent
        # put replaces the entry, never the bytes this reader holds).
        obj = self._get(key)
        data = obj.data
        end = len(data) if length is None else min(len(data), offset + length)
        info = ObjectInfo(key, len(data), obj.modified, obj.metadata, f"m{obj.version}")
        view = memoryview(data)[offset:end] if offset or end != len(data) else data
        return BytesReader(view, info=info)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        obj = self._d.objects.get(key)
        if obj is None:
            raise NotFound("no such object", key=key)
        data = obj.data
        if offset == 0 and length is None:
            return data
        end = len(data) if length is None else offset + length
        return data[offset:end]

    async def write(self, key: str, data: bytes, offset: int) -> int:
        d = self._d
        obj = self._get(key)
        old = obj.data
        if offset > len(old):
            # No holes: a patch must touch or extend the existing bytes.
            raise InvalidRange(f"offset {offset} is beyond the object's size {len(old)}", key=key)
        new = old[:offset] + data + old[offset + len(data) :]
        limit = d.options.max_bytes
        new_used = d.used - len(old) + len(new)
        if limit is not None and new_used > limit:
            raise StorageFull(f"memory store limit of {limit} bytes reached", key=key)
        d.objects[key] = _Object(new, obj.metadata, time.time())
        d.used = new_used
        return len(data)

    async def delete(self, key: str) -> None:
        obj = self._d.objects.pop(key, None)
        if obj is None:
            raise NotFound("no such object", key=key)
        self._d.used -= len(obj.data)

    async def stat(self, key: str) -> ObjectInfo:
        obj = self._get(key)
        return ObjectInfo(key, len(obj.data), obj.modified, obj.metadata, f"m{obj.version}")

    async def exists(self, key: str) -> bool:
        return key in self._d.objects

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        # Snapshot the keys: concurrent puts/deletes must not break the iteration.
        for key in sorted(k for k in self._d.objects if k.startswith(prefix)):
            obj = self._d.objects.get(key)
            if obj is not None:
                yield ObjectInfo(key, len(obj.data), obj.modified, obj.metadata)
