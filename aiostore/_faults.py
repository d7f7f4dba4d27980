"""Fault switches every store carries, for tests (the pytest plugin's ``faults`` fixture).

A fault plan is one more layer around the driver session, like any other: while a switch is on,
the store's session pool hands out its sessions wrapped in a :class:`FaultySession`, which
raises what the fault causes before delegating to the real session and adjusts probe verdicts.
While every switch is off there is no wrapper at all, so operations pay nothing for it. Real
faults (full disks, read-only mounts, stalled servers) are tested separately against each real
driver; these exist so *users* can test how their code reacts, on any backend.
"""

from __future__ import annotations

import errno as _errno
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio

from ._errormap import map_os_error
from ._types import Metadata, ObjectInfo
from .capabilities.flags import Capability
from .capabilities.verdict import ProbeResult, Verdict
from .drivers.base import DriverReader, DriverSession
from .errors import StoreError, StoreRandomGetNotSupported

__all__ = ["FaultPlan", "FaultySession"]

_WRITES = frozenset({"put", "write", "delete"})
#: A full disk still lets deletes through (that is how room is made).
_SPACE = frozenset({_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG})


@dataclass(slots=True)
class FaultPlan:
    """Mutable switches; all off by default. :meth:`clear` turns everything off."""

    read_only: bool = False
    write_errno: int | None = None
    drop_random: bool = False
    latency: float = 0.0
    probe_error: str | None = None
    probe_hang: bool = False
    session_broken: bool = False
    # Kept up to date by __setattr__; the listener (the store's session pool) adds or removes
    # the FaultySession layer when it flips.
    _active: bool = field(default=False, init=False, repr=False, compare=False)
    _listener: Callable[[bool], None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name == "_listener":
            return
        # Recomputed after every assignment, "_active" itself included (``__init__`` sets it last).
        was = getattr(self, "_active", False)
        now = self._compute_active()
        object.__setattr__(self, "_active", now)
        listener = getattr(self, "_listener", None)
        if listener is not None and now != was:
            listener(now)

    def listen(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(active)`` whenever the plan turns on or off (the store's pool)."""
        object.__setattr__(self, "_listener", listener)

    def _compute_active(self) -> bool:
        # getattr defaults: during __init__ the later fields are not set yet.
        return bool(
            getattr(self, "read_only", False)
            or getattr(self, "write_errno", None) is not None
            or getattr(self, "drop_random", False)
            or getattr(self, "latency", 0.0)
            or getattr(self, "probe_error", None)
            or getattr(self, "probe_hang", False)
            or getattr(self, "session_broken", False)
        )

    @property
    def active(self) -> bool:
        """True when any switch is on (operations then consult :meth:`before`)."""
        return self._active

    def clear(self) -> None:
        self.read_only = False
        self.write_errno = None
        self.drop_random = False
        self.latency = 0.0
        self.probe_error = None
        self.probe_hang = False
        self.session_broken = False

    async def before(
        self, operation: str, key: str | None, offset: int, length: int | None
    ) -> None:
        """Raise the error an injected fault causes for this operation, after any latency."""
        if self.latency:
            await anyio.sleep(self.latency)
        if self.session_broken:
            self.session_broken = False  # one broken session, then a fresh one works
            raise StoreError(
                "injected fault: the driver session broke", key=key, session_broken=True
            )
        if operation in _WRITES:
            if self.read_only:
                err = OSError(_errno.EROFS, "Read-only file system (injected fault)")
                raise map_os_error(err, key=key, write=True) from err
            if self.write_errno is not None and not (
                operation == "delete" and self.write_errno in _SPACE
            ):
                err = OSError(
                    self.write_errno,
                    f"{_errno.errorcode.get(self.write_errno, '?')} (injected fault)",
                )
                raise map_os_error(err, key=key, write=True) from err
        if self.drop_random and (offset > 0 or length is not None):
            err2 = StoreRandomGetNotSupported(
                "the backend ignored a range request (injected fault)",
                key=key,
                operation=operation,
                required=Capability.READ_RANDOM,
                reason="server ignores Range (injected)",
                transient=True,
            )
            err2.revokes = Capability.READ_RANDOM
            raise err2

    async def before_probe(self) -> None:
        if self.latency:
            await anyio.sleep(self.latency)
        if self.probe_hang:
            await anyio.sleep(math.inf)
        if self.probe_error:
            raise RuntimeError(self.probe_error)

    def adjust(self, verdicts: ProbeResult, configured: Capability) -> ProbeResult:
        """Override a real probe's verdicts with what the injected faults imply."""
        out = dict(verdicts)
        if self.read_only and Capability.WRITE_ACCESS in configured:
            out[Capability.WRITE_ACCESS] = Verdict.fail("read-only (injected fault)")
        elif self.write_errno is not None and Capability.WRITE_ACCESS in configured:
            name = _errno.errorcode.get(self.write_errno, str(self.write_errno))
            why = f"writes fail with {name} (injected fault)"
            full = self.write_errno in _SPACE
            out[Capability.WRITE_ACCESS] = Verdict.full(why) if full else Verdict.fail(why)
        if self.drop_random and Capability.READ_RANDOM in configured:
            out[Capability.READ_RANDOM] = Verdict.fail("server ignores Range (injected fault)")
        return out


class FaultySession(DriverSession):
    """A driver session seen through a :class:`FaultPlan`: the fault layer."""

    __slots__ = ("_configured", "_inner", "_plan")

    def __init__(self, inner: DriverSession, plan: FaultPlan, configured: Capability) -> None:
        self._inner = inner
        self._plan = plan
        self._configured = configured

    @property
    def is_broken(self) -> bool:
        return self._inner.is_broken

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def probe(self) -> ProbeResult:
        plan = self._plan
        await plan.before_probe()
        verdicts = await self._inner.probe()
        return plan.adjust(verdicts, self._configured)

    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        await self._plan.before("put", key, 0, None)
        await self._inner.put(key, stream, size=size, overwrite=overwrite, metadata=metadata)

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        await self._plan.before("open", key, offset, length)
        return await self._inner.open(key, offset, length)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        await self._plan.before("read", key, offset, length)
        return await self._inner.read(key, offset, length)

    async def write(self, key: str, data: bytes, offset: int) -> int:
        await self._plan.before("write", key, offset, len(data))
        return await self._inner.write(key, data, offset)

    async def delete(self, key: str) -> None:
        await self._plan.before("delete", key, 0, None)
        await self._inner.delete(key)

    async def stat(self, key: str) -> ObjectInfo:
        await self._plan.before("stat", key, 0, None)
        return await self._inner.stat(key)

    async def exists(self, key: str) -> bool:
        await self._plan.before("exists", key, 0, None)
        return await self._inner.exists(key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        await self._plan.before("list", None, 0, None)
        async for info in self._inner.list(prefix):
            yield info
