"""The capability bitmask, with glance_store's integer values so ints interoperate."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["Capability"]


class Capability(enum.IntFlag):
    """What a store can do, as glance_store's capability bitmask.

    ``a in b`` is true when ``b`` holds every bit of ``a``. A value held by a store is always
    *normalized*: no offset/chunk bit without the access bit it extends. Use :meth:`revoke` and
    :meth:`grant` to change a value; both normalize.
    """

    NONE = 0
    READ_ACCESS = 1
    READ_OFFSET = 3
    READ_CHUNK = 5
    READ_RANDOM = 7
    WRITE_ACCESS = 8
    WRITE_OFFSET = 24
    WRITE_CHUNK = 40
    WRITE_RANDOM = 56
    RW_ACCESS = 9
    RW_OFFSET = 27
    RW_CHUNK = 45
    RW_RANDOM = 63
    DRIVER_REUSABLE = 64

    def normalized(self) -> Capability:
        """This value without orphan bits (offset/chunk bits whose access bit is missing)."""
        value = int(self)
        if not value & _READ:
            value &= ~_READ_EXTRA
        if not value & _WRITE:
            value &= ~_WRITE_EXTRA
        return Capability(value & _ALL)

    def revoke(self, capability: Capability | int) -> Capability:
        """Remove ``capability`` the way the contract defines revoking.

        Revoking a capability removes the bits it adds over its base access bit: revoking
        READ_RANDOM keeps READ_ACCESS, revoking RW_RANDOM keeps RW_ACCESS. Revoking a base
        (READ_ACCESS, WRITE_ACCESS, RW_ACCESS) also removes every bit that depends on it.
        DRIVER_REUSABLE stands alone.
        """
        cap = int(capability)
        extra = cap & ~_BASES
        removed = extra if extra else cap
        return Capability(int(self) & ~removed).normalized()

    def grant(
        self, capability: Capability | int, ceiling: Capability | int | None = None
    ) -> Capability:
        """Add ``capability`` (its base bits included), never above ``ceiling`` when given."""
        value = int(self) | int(capability)
        if ceiling is not None:
            value &= int(ceiling)
        return Capability(value).normalized()

    @property
    def names(self) -> list[str]:
        """Names of every named capability this value holds (composites included), NONE excluded."""
        value = int(self)
        names = _NAMES.get(value)
        if names is None:
            names = _NAMES[value] = tuple(c.name for c in NAMED if c in self and c.name is not None)
        return list(names)


_READ: Final = 1
_WRITE: Final = 8
_READ_EXTRA: Final = 2 | 4
_WRITE_EXTRA: Final = 16 | 32
_BASES: Final = _READ | _WRITE
_ALL: Final = 127
#: ``Capability.names`` by int value (at most 128 entries).
_NAMES: dict[int, tuple[str, ...]] = {}

#: Every named capability except NONE, in contract order (the dashboard's 13 columns).
NAMED: Final[tuple[Capability, ...]] = tuple(
    Capability[name]
    for name in (
        "READ_ACCESS",
        "READ_OFFSET",
        "READ_CHUNK",
        "READ_RANDOM",
        "WRITE_ACCESS",
        "WRITE_OFFSET",
        "WRITE_CHUNK",
        "WRITE_RANDOM",
        "RW_ACCESS",
        "RW_OFFSET",
        "RW_CHUNK",
        "RW_RANDOM",
        "DRIVER_REUSABLE",
    )
)
