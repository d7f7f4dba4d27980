"""A process-wide guard that serialises create-only puts of one object name.

Used only against a server that ignores ``ifGenerationMatch=0`` (as emulators do): a create-only
put then looks for the object and writes it while holding the name's guard, so two puts of this
process never both create it. Works across threads and event loops: waiters park on a future of
their own loop and are woken thread-safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

__all__ = ["NameGuard"]


class NameGuard:
    """``async with guard.hold(name):`` — one holder per name in this process at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, list[asyncio.Future[None]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        while True:
            with self._lock:
                waiters = self._held.get(name)
                if waiters is None:
                    self._held[name] = []
                    break
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                waiters.append(waiter)
            try:
                await waiter
            finally:
                with self._lock, contextlib.suppress(ValueError):
                    waiters.remove(waiter)
        try:
            yield
        finally:
            with self._lock:
                # A copy: woken waiters remove themselves from the list while we go through it.
                woken = list(self._held.pop(name))
            for waiter in woken:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    def held(self) -> int:
        """Names held right now (for tests and statistics)."""
        return len(self._held)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
