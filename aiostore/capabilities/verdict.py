"""What a driver's probe returns: a :class:`Verdict` per capability it checked.

Drivers import this module (or :mod:`aiostore.sdk`), never the probe scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from .flags import Capability

__all__ = ["ProbeResult", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One capability's probe outcome."""

    healthy: bool
    reason: str = ""
    #: The failure is a lack of space (ENOSPC, a free-space threshold, a quota). A store whose
    #: WRITE_ACCESS is revoked only for that still lets ``delete`` through: deleting makes room.
    out_of_space: bool = False

    @classmethod
    def ok(cls, reason: str = "") -> Verdict:
        return cls(True, reason)

    @classmethod
    def fail(cls, reason: str) -> Verdict:
        return cls(False, reason)

    @classmethod
    def full(cls, reason: str) -> Verdict:
        """WRITE_ACCESS fails for lack of space only (deletes still pass)."""
        return cls(False, reason, out_of_space=True)


#: What ``probe()`` returns: a verdict per capability it checked.
ProbeResult: TypeAlias = Mapping[Capability, Verdict]
