"""The fault injector behind the ``faults`` fixture: switches on :attr:`Store.faults`, undoable.

Every fault sets one switch of the store's :class:`~aiostore.FaultPlan` (the facade consults it
before any driver I/O and adjusts probe verdicts), asks the prober for an early probe, and
returns a :class:`FaultHandle`. Handles stack per switch: undoing one restores whatever the
handles still active on that switch ask for, or the value found before the first of them, so
nested and out-of-order undos end where they started.
"""

from __future__ import annotations

import errno as errno_
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

from .._faults import FaultPlan
from .._manager import StoreManager
from .._store import Store

__all__ = ["FaultHandle", "FaultInjector", "StoreRef"]

#: A store, or the name of a store the injector can resolve.
StoreRef: TypeAlias = Store | str


class FaultHandle:
    """One injected fault: :meth:`undo` it (idempotent), or use it as a context manager.

    Example::

        with faults.read_only(store):
            ...  # writes fail here
        # and work again here (once the store's health recovers)
    """

    __slots__ = ("_injector", "_switch", "_value", "active", "description", "store")

    def __init__(
        self, injector: FaultInjector, store: Store, switch: str, value: Any, description: str
    ) -> None:
        self._injector = injector
        self._switch = switch
        self._value = value
        #: The store the fault acts on.
        self.store = store
        #: What the fault does, in words.
        self.description = description
        #: False once undone.
        self.active = True

    def undo(self) -> None:
        """Turn this fault off. Idempotent. The store's capabilities come back through its
        probes (see :func:`~aiostore.testing.wait_for_capability`)."""
        if self.active:
            self.active = False
            self._injector._remove(self)

    def __enter__(self) -> FaultHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"<FaultHandle store={self.store.name!r} {self.description} ({state})>"


@dataclass(slots=True)
class _Switch:
    plan: FaultPlan
    name: str
    baseline: Any
    handles: list[FaultHandle] = field(default_factory=list)


class FaultInjector:
    """Injects faults into stores, mid-test; :meth:`undo_all` turns every one off.

    Stores are given as :class:`~aiostore.Store` objects, or by name when the injector has a
    ``resolve`` function (the ``faults`` fixture resolves names against the test's manager and
    store fixtures). Outside pytest::

        injector = FaultInjector(manager)
        with injector.fail_writes(manager["local"]):
            ...
    """

    def __init__(self, resolve: StoreManager | Callable[[str], Store] | None = None) -> None:
        if isinstance(resolve, StoreManager):
            manager = resolve
            self._resolve: Callable[[str], Store] | None = manager.__getitem__
        else:
            self._resolve = resolve
        self._switches: dict[tuple[int, str], _Switch] = {}
        self._handles: list[FaultHandle] = []

    # -- the faults -----------------------------------------------------------------------------
    def read_only(self, store: StoreRef) -> FaultHandle:
        """Writes (put, write, delete) fail with ``StorageWriteDenied`` (EROFS), which revokes
        WRITE_ACCESS at once; probes report WRITE_ACCESS unhealthy."""
        return self._apply(store, "read_only", True, "read-only (EROFS)")

    def fail_writes(self, store: StoreRef, errno: int = errno_.ENOSPC) -> FaultHandle:
        """Writes fail with ``errno`` (default ENOSPC → ``StorageFull``), mapped as a real
        OSError would be; probes report WRITE_ACCESS unhealthy."""
        if isinstance(errno, bool) or not isinstance(errno, int) or errno <= 0:
            raise ValueError(f"errno must be a positive int, not {errno!r}")
        name = errno_.errorcode.get(errno, str(errno))
        return self._apply(store, "write_errno", errno, f"writes fail with {name}")

    def drop_ranges(self, store: StoreRef) -> FaultHandle:
        """Range reads (offset > 0 or a length) fail as from a server that ignores Range, which
        revokes READ_RANDOM at once; probes report READ_RANDOM unhealthy."""
        return self._apply(store, "drop_random", True, "ranges dropped")

    def latency(self, store: StoreRef, seconds: float) -> FaultHandle:
        """Every operation and probe first sleeps ``seconds``."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(f"seconds must be a finite number ≥ 0, not {seconds!r}")
        return self._apply(store, "latency", float(seconds), f"{seconds:g}s latency")

    def fail_probes(self, store: StoreRef, message: str = "injected probe failure") -> FaultHandle:
        """Probes raise ``RuntimeError(message)``: every probed capability counts a failure."""
        if not isinstance(message, str) or not message:
            raise ValueError("message must be a non-empty str")
        return self._apply(store, "probe_error", message, f"probes fail ({message})")

    def hang_probes(self, store: StoreRef) -> FaultHandle:
        """Probes never answer: each one fails after the store's probe ``timeout``."""
        return self._apply(store, "probe_hang", True, "probes hang")

    def break_session(self, store: StoreRef) -> FaultHandle:
        """The next operation fails with a session-level error: a shared session is retired
        (DRIVER_REUSABLE revoked until a fresh one opens). Fires once; undo disarms it if it has
        not fired yet."""
        return self._apply(store, "session_broken", True, "session breaks once")

    # -- bookkeeping ----------------------------------------------------------------------------
    @property
    def handles(self) -> tuple[FaultHandle, ...]:
        """Every fault still active, oldest first."""
        return tuple(self._handles)

    def undo_all(self) -> None:
        """Undo every active fault, newest first. The ``faults`` fixture calls it at teardown."""
        while self._handles:
            self._handles[-1].undo()

    def _store(self, store: StoreRef) -> Store:
        if isinstance(store, Store):
            return store
        if isinstance(store, str):
            if self._resolve is None:
                raise TypeError(
                    f"cannot resolve the store name {store!r}: pass a Store, or give the injector"
                    " a manager"
                )
            return self._resolve(store)
        raise TypeError(f"expected a Store or a store name, not {type(store).__name__}")

    def _apply(self, ref: StoreRef, switch: str, value: Any, description: str) -> FaultHandle:
        store = self._store(ref)
        plan = store.faults
        slot = self._switches.get((id(plan), switch))
        if slot is None:
            slot = _Switch(plan, switch, getattr(plan, switch))
            self._switches[(id(plan), switch)] = slot
        handle = FaultHandle(self, store, switch, value, description)
        slot.handles.append(handle)
        self._handles.append(handle)
        setattr(plan, switch, value)
        store.request_probe()
        return handle

    def _remove(self, handle: FaultHandle) -> None:
        plan = handle.store.faults
        key = (id(plan), handle._switch)
        slot = self._switches[key]
        slot.handles.remove(handle)
        self._handles.remove(handle)
        if slot.handles:
            setattr(plan, slot.name, slot.handles[-1]._value)
        else:
            setattr(plan, slot.name, slot.baseline)
            del self._switches[key]
        handle.store.request_probe()
