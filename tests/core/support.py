"""Test doubles for the core suite: a driver that counts every call, and counting inputs."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, ClassVar

from aiostore import Capability, ObjectInfo, Verdict
from aiostore.capabilities.probe import ProbeResult
from aiostore.drivers.base import BytesReader, Driver, DriverReader, DriverSession
from aiostore.errors import Duplicate, NotFound

ALL = Capability.RW_RANDOM | Capability.DRIVER_REUSABLE
#: Probes of every FakeDriver in flight now, and the most ever at once.
IN_FLIGHT = [0, 0]

#: Session methods that do the I/O of an operation (the "driver body" of the check matrix).
BODY_METHODS = ("put", "open", "read", "write", "delete", "stat", "exists", "list")


@dataclasses.dataclass(frozen=True, slots=True)
class FakeOptions:
    #: The configured layer, as an int (native is always RW_RANDOM | DRIVER_REUSABLE).
    caps: int = int(ALL)
    #: Seconds ``open_session`` takes (lets concurrent callers pile up).
    open_delay: float = 0.0


class FakeDriver(Driver[FakeOptions]):
    """A dict-backed driver that records every call; probes report ``unhealthy`` verdicts."""

    name: ClassVar[str] = "fake"
    schemes: ClassVar[tuple[str, ...]] = ("fake",)
    native_capabilities: ClassVar[Capability] = ALL
    Options: ClassVar[type[FakeOptions]] = FakeOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: FakeOptions) -> None:
        super().__init__(store, options)
        self.calls: collections.Counter[str] = collections.Counter()
        self.sessions: list[FakeSession] = []
        self.objects: dict[str, bytes] = {}
        #: Capabilities the next probes report unhealthy, with the reason.
        self.unhealthy: dict[Capability, str] = {}
        #: Raised by ``open_session`` (after ``open_delay``) while set.
        self.open_error: Exception | None = None
        #: While set, ``open_session`` waits for this event (deterministic slow opens).
        self.open_gate: asyncio.Event | None = None
        #: Seconds the session's ``probe`` takes (inside the session, holding it).
        self.probe_delay = 0.0
        #: The probe swallows a cancellation during ``probe_delay`` and answers anyway.
        self.probe_ignores_cancel = False
        #: Called with the cancellation that interrupts ``probe_delay`` (before it is re-raised or
        #: swallowed): it may raise something else instead, or cancel the task again.
        self.probe_on_cancel: Callable[[asyncio.CancelledError], None] | None = None
        #: Awaited at the start of every probe (a driver's own cancel scopes, task groups...).
        self.probe_hook: Callable[[], Awaitable[None]] | None = None
        #: Per session method: an exception its next call raises (once).
        self.fail_next: dict[str, BaseException] = {}

    def configured_capabilities(self) -> Capability:
        return Capability(self.options.caps)

    def location_prefix(self) -> str:
        return f"fake://{self.store}/"

    async def open_session(self) -> FakeSession:
        self.calls["open_session"] += 1
        if self.options.open_delay:
            await asyncio.sleep(self.options.open_delay)
        if self.open_gate is not None:
            await self.open_gate.wait()
        if self.open_error is not None:
            raise self.open_error
        session = FakeSession(self)
        self.sessions.append(session)
        return session

    def body_calls(self) -> int:
        return sum(self.calls[m] for m in BODY_METHODS)

    def open_sessions(self) -> list[FakeSession]:
        return [s for s in self.sessions if s.close_count == 0]


class FakeSession(DriverSession):
    def __init__(self, driver: FakeDriver) -> None:
        self.d = driver
        self.close_count = 0
        self.broken = False

    @property
    def is_broken(self) -> bool:
        return self.broken

    async def aclose(self) -> None:
        self.close_count += 1
        self.d.calls["close"] += 1

    async def probe(self) -> ProbeResult:
        self.d.calls["probe"] += 1
        if self.d.probe_writes:
            self.d.calls["probe_write"] += 1
        IN_FLIGHT[0] += 1
        IN_FLIGHT[1] = max(IN_FLIGHT[1], IN_FLIGHT[0])
        try:
            if self.d.probe_hook is not None:
                await self.d.probe_hook()
            if self.d.probe_delay:
                try:
                    await asyncio.sleep(self.d.probe_delay)
                except asyncio.CancelledError as exc:
                    if self.d.probe_on_cancel is not None:
                        self.d.probe_on_cancel(exc)
                    if not self.d.probe_ignores_cancel:
                        raise
        finally:
            IN_FLIGHT[0] -= 1
        verdicts = {
            Capability.READ_ACCESS: Verdict.ok(),
            Capability.READ_RANDOM: Verdict.ok(),
            Capability.WRITE_ACCESS: Verdict.ok(),
            Capability.WRITE_RANDOM: Verdict.ok(),
        }
        for cap, reason in self.d.unhealthy.items():
            verdicts[cap] = Verdict.fail(reason)
        return verdicts

    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Any,
    ) -> None:
        self.d.calls["put"] += 1
        self._maybe_fail("put")
        if not overwrite and key in self.d.objects:
            raise Duplicate("exists", key=key)
        data = b"".join([c async for c in stream])
        self.d.objects[key] = data

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        self.d.calls["open"] += 1
        self._maybe_fail("open")
        data = self._get(key)
        end = len(data) if length is None else offset + length
        return BytesReader(data[offset:end], chunk_size=4)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        self.d.calls["read"] += 1
        self._maybe_fail("read")
        data = self._get(key)
        end = len(data) if length is None else offset + length
        return data[offset:end]

    async def write(self, key: str, data: bytes, offset: int) -> int:
        self.d.calls["write"] += 1
        self._maybe_fail("write")
        old = self._get(key)
        self.d.objects[key] = old[:offset] + data + old[offset + len(data) :]
        return len(data)

    async def delete(self, key: str) -> None:
        self.d.calls["delete"] += 1
        self._maybe_fail("delete")
        self._get(key)
        del self.d.objects[key]

    async def stat(self, key: str) -> ObjectInfo:
        self.d.calls["stat"] += 1
        self._maybe_fail("stat")
        return ObjectInfo(key, len(self._get(key)), time.time())

    async def exists(self, key: str) -> bool:
        self.d.calls["exists"] += 1
        self._maybe_fail("exists")
        return key in self.d.objects

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        self.d.calls["list"] += 1
        for key in sorted(self.d.objects):
            if key.startswith(prefix):
                yield ObjectInfo(key, len(self.d.objects[key]))

    def _maybe_fail(self, method: str) -> None:
        exc = self.d.fail_next.pop(method, None)
        if exc is not None:
            raise exc

    def _get(self, key: str) -> bytes:
        try:
            return self.d.objects[key]
        except KeyError:
            raise NotFound("no such object", key=key) from None


class CountingChunks:
    """An async iterable of chunks that records whether anyone started reading it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.iterated = False
        self.pulled = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        self.iterated = True
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


def fake_store(**options: Any) -> dict[str, Any]:
    """A store table for :class:`FakeDriver` (the manager accepts a Driver class as ``driver``)."""
    return {"driver": FakeDriver, **options}


NO_PROBE: dict[str, Any] = {"enabled": False}
