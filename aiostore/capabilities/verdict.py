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

    @classmethod
    def ok(cls, reason: str = "") -> Verdict:
        return cls(True, reason)

    @classmethod
    def fail(cls, reason: str) -> Verdict:
        return cls(False, reason)


#: What ``probe()`` returns: a verdict per capability it checked.
ProbeResult: TypeAlias = Mapping[Capability, Verdict]
