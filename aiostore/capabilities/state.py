"""Per-store capability state: three layers in one immutable snapshot, and change subscriptions."""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

from .flags import Capability

__all__ = ["CapabilityChange", "CapabilitySnapshot", "CapabilityState", "ChangeHub", "Subscription"]

#: How many undelivered changes one subscriber may hold before the oldest are dropped.
DEFAULT_BUFFER = 256


@dataclass(frozen=True, slots=True)
class CapabilitySnapshot:
    """The three layers of one store at one instant. Immutable; swapped whole."""

    native: Capability
    configured: Capability
    current: Capability
    version: int = 0
    #: What an operator turned off (``store.unset_capabilities``), whatever probing says.
    unset: Capability = Capability.NONE
    #: The operator's reason for :attr:`unset`.
    unset_reason: str = ""
    #: WRITE_ACCESS is revoked only for lack of space: ``delete`` still passes (it makes room).
    full_only: bool = False
    #: ``int(current)``: the check routine's fast path tests plain ints (IntFlag ``&`` is slow).
    bits: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", int(self.current))


@dataclass(frozen=True, slots=True)
class CapabilityChange:
    """One change of a store's current capabilities, as delivered by ``changes()``."""

    store: str
    old: Capability
    new: Capability
    reason: str
    at: float = field(default_factory=time.time)

    @property
    def revoked(self) -> Capability:
        """Bits held before and not after."""
        return Capability(int(self.old) & ~int(self.new))

    @property
    def restored(self) -> Capability:
        """Bits held after and not before."""
        return Capability(int(self.new) & ~int(self.old))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (used by the REST events stream)."""
        return {
            "store": self.store,
            "old": int(self.old),
            "new": int(self.new),
            "old_names": self.old.names,
            "new_names": self.new.names,
            "revoked": self.revoked.names,
            "restored": self.restored.names,
            "reason": self.reason,
            "at": self.at,
        }


class Subscription:
    """An async iterator of :class:`CapabilityChange`, with a bounded buffer.

    A subscriber that does not keep up loses the *oldest* undelivered changes (counted in
    :attr:`dropped`); the producer never waits. A subscription nobody references any more is
    forgotten by its hub (the hub holds it weakly), so abandoning one leaks nothing.
    """

    def __init__(self, hub: ChangeHub, maxlen: int = DEFAULT_BUFFER) -> None:
        self._hub = hub
        self._buffer: collections.deque[CapabilityChange] = collections.deque(maxlen=maxlen)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        #: Changes lost because the buffer was full.
        self.dropped = 0

    def _push(self, change: CapabilityChange) -> None:
        if self._closed:
            return
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(change)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.get_loop().call_soon_threadsafe(_set_if_pending, waiter)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> CapabilityChange:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()

    def get_nowait(self) -> CapabilityChange | None:
        """The next buffered change, or None."""
        return self._buffer.popleft() if self._buffer else None

    def pending(self) -> int:
        """How many changes wait in the buffer."""
        return len(self._buffer)

    def close(self) -> None:
        """Stop this subscription; a pending ``__anext__`` ends the iteration."""
        self._closed = True
        self._hub._discard(self)
        self._wake()

    async def aclose(self) -> None:
        """Async alias of :meth:`close` (for ``contextlib.aclosing``)."""
        self.close()


def _set_if_pending(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ChangeHub:
    """Fans changes out to any number of subscriptions, weakly held."""

    def __init__(self) -> None:
        self._subs: weakref.WeakSet[Subscription] = weakref.WeakSet()

    def subscribe(self, maxlen: int = DEFAULT_BUFFER) -> Subscription:
        sub = Subscription(self, maxlen)
        self._subs.add(sub)
        return sub

    def publish(self, change: CapabilityChange) -> None:
        for sub in list(self._subs):
            sub._push(change)

    def _discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.close()

    def __len__(self) -> int:
        return len(self._subs)


def _members(caps: Capability) -> list[Capability]:
    """``caps`` split into its read part, write part and DRIVER_REUSABLE, each revoked the
    contract's way (RW_RANDOM → READ_RANDOM and WRITE_RANDOM: both bases kept; RW_ACCESS →
    READ_ACCESS and WRITE_ACCESS: both gone)."""
    value = int(caps)
    parts = (value & 0b111, value & 0b111000, value & 0b1000000)
    return [Capability(p) for p in parts if p]


class CapabilityState:
    """The layers of one store. ``current`` is derived: configured minus what health revoked.

    Readers take :attr:`snapshot` (one attribute read: never a half update). Writers go through
    :meth:`set_revoked`, which recomputes ``current`` and publishes one change when it differs.
    """

    def __init__(
        self,
        store: str,
        native: Capability,
        configured: Capability,
        hubs: Iterable[ChangeHub] = (),
    ) -> None:
        native = native.normalized()
        configured = Capability(int(configured) & int(native)).normalized()
        self.store = store
        self.snapshot = CapabilitySnapshot(native, configured, configured, 0)
        self.hub = ChangeHub()
        self._hubs: tuple[ChangeHub, ...] = (self.hub, *hubs)
        self._revoked: tuple[Capability, ...] = ()
        self._full: frozenset[Capability] = frozenset()
        self._unset: dict[Capability, str] = {}

    @property
    def current(self) -> Capability:
        return self.snapshot.current

    def derive(self, revoked: Iterable[Capability]) -> Capability:
        """``configured`` with every capability in ``revoked`` revoked."""
        current = self.snapshot.configured
        for cap in revoked:
            current = current.revoke(cap)
        return current

    def set_revoked(
        self,
        revoked: Iterable[Capability],
        reason: str,
        full: Iterable[Capability] = (),
    ) -> CapabilityChange | None:
        """Recompute ``current`` from the set health revoked (``full``: those of them revoked
        for lack of space only); publish and return the change, if any."""
        self._revoked = tuple(revoked)
        self._full = frozenset(full)
        return self._update(reason)

    def unset(self, capabilities: Capability, reason: str) -> CapabilityChange | None:
        """An operator turns ``capabilities`` off until :meth:`set` (probing never restores)."""
        for cap in _members(capabilities):
            self._unset[cap] = reason
        return self._update(f"unset by operator: {reason}" if reason else "unset by operator")

    def set(self, capabilities: Capability) -> CapabilityChange | None:
        """Lift the operator's unset of ``capabilities`` (never above configured, and what
        health revoked stays revoked until probing restores it)."""
        lifted = [cap for cap in self._unset if int(cap) & int(capabilities)]
        for cap in lifted:
            del self._unset[cap]
        return self._update("set by operator")

    def _update(self, reason: str) -> CapabilityChange | None:
        old = self.snapshot
        configured = old.configured
        new_current = self.derive((*self._revoked, *self._unset))
        unset = Capability.NONE
        for cap in self._unset:
            unset |= Capability(int(configured) & ~int(configured.revoke(cap)))
        write_takers = [
            cap for cap in self._revoked if Capability.WRITE_ACCESS not in configured.revoke(cap)
        ]
        full_only = (
            bool(write_takers)
            and all(cap in self._full for cap in write_takers)
            and Capability.WRITE_ACCESS not in unset
        )
        unset_reason = "; ".join(dict.fromkeys(r for r in self._unset.values() if r))
        if (
            new_current == old.current
            and unset == old.unset
            and full_only == old.full_only
            and unset_reason == old.unset_reason
        ):
            return None
        self.snapshot = CapabilitySnapshot(
            old.native,
            configured,
            new_current,
            old.version + 1,
            unset,
            unset_reason,
            full_only,
        )
        if new_current == old.current:
            return None
        change = CapabilityChange(self.store, old.current, new_current, reason)
        for hub in self._hubs:
            hub.publish(change)
        return change

    def unset_reasons(self) -> dict[Capability, str]:
        """The operator's unset capabilities and their reasons."""
        return dict(self._unset)

    def changes(self, maxlen: int = DEFAULT_BUFFER) -> Subscription:
        """Subscribe to this store's changes."""
        return self.hub.subscribe(maxlen)
