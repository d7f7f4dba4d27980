"""Instrumentation: every operation, probe and capability change as an event to observe.

Register an object with ``manager.instrument(obj)``; aiostore calls whichever of these methods
it defines, each with one frozen details object:

- ``on_operation(OperationEvent)`` — after every store operation (put, read, open, write,
  delete, stat, exists, list), successful or not; an open reader reports when it is closed;
- ``on_probe(ProbeEvent)`` — after every probe of a store;
- ``on_change(CapabilityChange)`` — after every change of a store's current capabilities.

The Prometheus exporter of :mod:`aiostore.web` is one such object; an OpenTelemetry exporter
is another. Without any instrument, operations pay nothing but one attribute test. A hook that
raises is logged once and removed, so a broken exporter never breaks storage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from .capabilities.state import CapabilityChange

__all__ = ["Instrument", "Instruments", "OperationEvent", "ProbeEvent"]

log = logging.getLogger("aiostore.instrumentation")


@dataclass(frozen=True, slots=True)
class OperationEvent:
    """One finished store operation."""

    store: str
    operation: str
    #: ``"ok"``, or the name of the aiostore error class it failed with (``"cancelled"`` when
    #: the caller was cancelled).
    outcome: str
    #: Seconds from the call to its end (for an open reader: to its close).
    duration: float
    #: Bytes of object data moved (written by put/write, read by read/open), else 0.
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class ProbeEvent:
    """One finished probe of a store."""

    store: str
    duration: float
    #: None when the probe ran; else why it failed as a whole (raised, timed out).
    error: str | None
    #: Names of the capabilities the probe found unhealthy.
    unhealthy: tuple[str, ...] = ()


class Instrument(Protocol):
    """What ``manager.instrument()`` takes: any object with some of these methods."""

    def on_operation(self, event: OperationEvent) -> None: ...
    def on_probe(self, event: ProbeEvent) -> None: ...
    def on_change(self, change: CapabilityChange) -> None: ...


class Instruments:
    """The registered instruments of one manager; ``bool()`` is False when there are none."""

    __slots__ = ("_change", "_operation", "_probe", "wants_operations")

    def __init__(self) -> None:
        self._operation: list[Any] = []
        self._probe: list[Any] = []
        self._change: list[Any] = []
        #: True when an instrument observes operations (a plain attribute: the hot path reads it).
        self.wants_operations = False

    def add(self, instrument: object) -> None:
        for name, hooks in self._lists():
            hook = getattr(instrument, name, None)
            if callable(hook):
                hooks.append(hook)
        self.wants_operations = bool(self._operation)

    def remove(self, instrument: object) -> None:
        for name, hooks in self._lists():
            hook = getattr(instrument, name, None)
            if hook in hooks:
                hooks.remove(hook)
        self.wants_operations = bool(self._operation)

    def _lists(self) -> tuple[tuple[str, list[Any]], ...]:
        return (
            ("on_operation", self._operation),
            ("on_probe", self._probe),
            ("on_change", self._change),
        )

    def operation(self, event: OperationEvent) -> None:
        self._emit(self._operation, event)

    def probe(self, event: ProbeEvent) -> None:
        self._emit(self._probe, event)

    def change(self, change: CapabilityChange) -> None:
        self._emit(self._change, change)

    def _emit(self, hooks: list[Any], event: object) -> None:
        for hook in list(hooks):
            try:
                hook(event)
            except Exception:
                log.exception("instrument hook %r failed; it is removed", hook)
                if hook in hooks:
                    hooks.remove(hook)
                if not hooks and hooks is self._operation:
                    self.wants_operations = False
