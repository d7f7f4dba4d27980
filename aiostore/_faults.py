"""Fault switches every store carries, for tests (the pytest plugin's ``faults`` fixture).

They act at the store facade, in front of any driver: an operation or probe consults the plan
first. Real faults (full disks, read-only mounts, stalled servers) are tested separately against
each real driver; these exist so *users* can test how their code reacts, on any backend.
"""

from __future__ import annotations

import errno as _errno
import math
from dataclasses import dataclass, field

import anyio

from .capabilities.flags import Capability
from .capabilities.probe import ProbeResult, Verdict
from .drivers.base import map_os_error
from .errors import StoreError, StoreRandomGetNotSupported

__all__ = ["FaultPlan"]

_WRITES = frozenset({"put", "write", "delete"})


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
    # Kept up to date by __setattr__: every operation tests it, so it must cost one attribute read.
    _active: bool = field(default=False, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        # Recomputed after every assignment, "_active" itself included (``__init__`` sets it last).
        object.__setattr__(self, "_active", self._compute_active())

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
            if self.write_errno is not None:
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
            out[Capability.WRITE_ACCESS] = Verdict.fail(f"writes fail with {name} (injected fault)")
        if self.drop_random and Capability.READ_RANDOM in configured:
            out[Capability.READ_RANDOM] = Verdict.fail("server ignores Range (injected fault)")
        return out
