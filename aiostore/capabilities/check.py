"""The check routine: one declarative table, run before any I/O and before any input is read.

Each operation names the capability it always needs and, per argument, the extra capability an
argument value adds (``offset > 0`` needs READ_OFFSET, and so on). Store methods call
:func:`check` with their bound arguments, so positional and keyword calls count the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import (
    CapabilityError,
    StoreAddDisabled,
    StoreDeleteNotSupported,
    StoreGetNotSupported,
    StoreRandomGetNotSupported,
    StoreWriteNotSupported,
)
from .flags import Capability
from .state import CapabilitySnapshot

__all__ = ["CEILINGS", "CHECKS", "ArgRule", "Rule", "check", "required_for"]


@dataclass(frozen=True, slots=True)
class ArgRule:
    """An argument whose value, when ``applies(value)``, adds ``requires`` to the operation."""

    arg: str
    applies: Callable[[Any], bool]
    requires: Capability
    error: type[CapabilityError]
    why: str


@dataclass(frozen=True, slots=True)
class Rule:
    """What one operation always needs, the error when it is missing, and its argument rules."""

    requires: Capability
    error: type[CapabilityError]
    args: tuple[ArgRule, ...] = ()
    #: Passes while WRITE_ACCESS is revoked only for lack of space (``delete`` makes room).
    when_full: bool = False
    #: ``int(requires)``, and everything the operation can need with any arguments: a store
    #: holding all of ``ceiling`` passes without looking at the arguments (the fast path).
    bits: int = field(init=False, repr=False, compare=False)
    ceiling: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", int(self.requires))
        ceiling = int(self.requires)
        for arg in self.args:
            ceiling |= int(arg.requires)
        object.__setattr__(self, "ceiling", ceiling)


def _positive(value: Any) -> bool:
    return value is not None and value > 0


def _given(value: Any) -> bool:
    return value is not None


_C = Capability
_RANGE: Final = (
    ArgRule("offset", _positive, _C.READ_OFFSET, StoreRandomGetNotSupported, "an offset read"),
    ArgRule("length", _given, _C.READ_CHUNK, StoreRandomGetNotSupported, "a bounded-length read"),
)

#: The whole check table (``docs/contract.md``, the check routine).
CHECKS: Final[Mapping[str, Rule]] = {
    "open": Rule(_C.READ_ACCESS, StoreGetNotSupported, _RANGE),
    "read": Rule(_C.READ_ACCESS, StoreGetNotSupported, _RANGE),
    "stat": Rule(_C.READ_ACCESS, StoreGetNotSupported),
    "exists": Rule(_C.READ_ACCESS, StoreGetNotSupported),
    "list": Rule(_C.READ_ACCESS, StoreGetNotSupported),
    "put": Rule(_C.WRITE_ACCESS, StoreAddDisabled),
    "write": Rule(
        _C.WRITE_CHUNK,
        StoreWriteNotSupported,
        (
            ArgRule(
                "offset", _positive, _C.WRITE_OFFSET, StoreWriteNotSupported, "a write at an offset"
            ),
        ),
    ),
    "delete": Rule(_C.WRITE_ACCESS, StoreDeleteNotSupported, when_full=True),
}


#: Per operation, every capability bit it can need: a current set holding all of them passes
#: the check whatever the arguments (the facade tests this before calling :func:`check`).
CEILINGS: Final[Mapping[str, int]] = {op: rule.ceiling for op, rule in CHECKS.items()}


def required_for(operation: str, args: Mapping[str, Any]) -> Capability:
    """Everything ``operation`` called with ``args`` needs."""
    rule = CHECKS[operation]
    required = rule.requires
    for arg in rule.args:
        if arg.applies(args.get(arg.arg)):
            required |= arg.requires
    return required


def check(
    store: str,
    snapshot: CapabilitySnapshot,
    operation: str,
    key: str | None = None,
    reasons: Callable[[Capability], str] | None = None,
    **args: Any,
) -> None:
    """Raise the contract's :class:`CapabilityError` when ``snapshot.current`` lacks what
    ``operation`` with ``args`` needs; return None otherwise.

    ``reasons(missing)`` supplies the health reason text for revoked capabilities.
    """
    rule = CHECKS[operation]
    current = snapshot.bits
    if current & rule.ceiling == rule.ceiling or (rule.when_full and snapshot.full_only):
        return
    required = rule.bits
    need = rule.requires
    error = rule.error
    why = operation
    if current & required == required:
        for arg in rule.args:
            if arg.applies(args.get(arg.arg)):
                required |= int(arg.requires)
                if current & required != required:
                    error, why, need = arg.error, arg.why, arg.requires
                    break
        else:
            return
    missing = Capability(required & ~current)
    transient = required & int(snapshot.configured) == required
    if transient:
        reason = reasons(missing) if reasons is not None else ""
        reason = reason or "revoked by health probing"
        cause = f"{why} needs {need.name}, currently revoked ({reason}); retry later"
    else:
        reason = "not supported by this store's driver or configuration"
        cause = f"{why} needs {need.name}, which this store never has"
    raise error(
        cause,
        store=store,
        key=key,
        operation=operation,
        required=Capability(required),
        available=snapshot.current,
        reason=reason,
        transient=transient,
    )
