"""``wait_for_capability``: wait for a store's current capabilities to change, or fail loudly."""

from __future__ import annotations

import time
from typing import Final

import anyio

from .._store import Store
from ..capabilities.flags import Capability

__all__ = ["CapabilityWaitTimeout", "wait_for_capability"]

#: How often a waiter re-asks the prober for an early probe while it waits.
_NUDGE_EVERY: Final = 0.1


class CapabilityWaitTimeout(AssertionError, TimeoutError):
    """``wait_for_capability`` gave up. Both an ``AssertionError`` (pytest reports it as a plain
    test failure) and a ``TimeoutError``; its message holds the store's health report."""


def _holds(store: Store, capability: Capability) -> bool:
    return capability & store.capabilities == capability


async def wait_for_capability(
    store: Store,
    capability: Capability,
    *,
    present: bool = True,
    timeout: float = 5.0,
) -> None:
    """Wait until ``store`` currently holds ``capability`` (or, with ``present=False``, no longer
    holds all of it).

    Returns at once when that is already so. While waiting it keeps asking the store's prober for
    early probes, so a store with a long probe interval still moves. Health changes come from the
    manager's prober and from failed operations: the store's manager must be running.

    Args:
        store: the store to watch.
        capability: one capability (composites such as ``RW_RANDOM`` mean all of their bits).
        present: wait for it to be held (True) or to be lost (False).
        timeout: seconds to wait at most.

    Raises:
        CapabilityWaitTimeout: after ``timeout`` seconds; the message prints ``store.health``.
    """
    if _holds(store, capability) == present:
        return
    started = time.monotonic()
    subscription = store.changes()
    try:
        with anyio.move_on_after(timeout):
            while _holds(store, capability) != present:
                store.request_probe()
                with anyio.move_on_after(_NUDGE_EVERY):
                    await subscription.__anext__()
            return
    finally:
        subscription.close()
    waited = time.monotonic() - started
    wanted = "to be held" if present else "to be lost"
    now = "|".join(store.capabilities.names) or "NONE"
    if present and capability & store.configured_capabilities != capability:
        hint = " (the store is not configured with it: it can never be held)"
    elif not store.health.probing:
        hint = " (the store's manager is not probing: is it running?)"
    else:
        hint = ""
    raise CapabilityWaitTimeout(
        f"store {store.name!r}: waited {waited:.2f}s for {_name(capability)} {wanted};"
        f" current capabilities are {now}{hint}\n{store.health}"
    )


def _name(capability: Capability) -> str:
    return capability.name or "|".join(capability.names) or str(int(capability))
