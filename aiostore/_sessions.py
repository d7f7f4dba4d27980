"""Driver sessions: one shared per event loop for DRIVER_REUSABLE drivers, one per use otherwise.

Like httpcore's pool: cheap synchronous predicates (is the shared session on this loop, not
retired, not broken?) decide reuse-or-create; closing I/O runs afterwards, shielded and bounded.
A shared session found broken is *retired*: it gets no new users, is closed once its last user
leaves, and the next caller opens a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import anyio

from ._cancel import shielded
from .drivers.base import Driver, DriverSession
from .errors import StoreError

__all__ = ["SessionPool"]

log = logging.getLogger("aiostore.sessions")

#: Bound on closing one session (shielded from cancellation).
CLOSE_TIMEOUT: Final = 10.0


@dataclass(eq=False, slots=True)
class _Shared:
    session: DriverSession
    loop: asyncio.AbstractEventLoop
    users: int = 0
    retired: bool = False
    closed: bool = False
    #: ``loop`` when it is an asyncio BaseEventLoop, which records the thread it is running in.
    base_loop: asyncio.BaseEventLoop | None = None

    def __post_init__(self) -> None:
        if isinstance(self.loop, asyncio.BaseEventLoop):
            self.base_loop = self.loop


async def close_quietly(session: DriverSession, store: str) -> None:
    """Close a session: shielded from cancellation, bounded in time, never raising."""
    await shielded(_close_bounded(session, store))


async def _close_bounded(session: DriverSession, store: str) -> None:
    with anyio.move_on_after(CLOSE_TIMEOUT):
        try:
            await session.aclose()
        except Exception:
            log.warning("store %r: closing a driver session failed", store, exc_info=True)


class SessionPool:
    """Hands out sessions of one store's driver. Used through :meth:`session`."""

    def __init__(
        self,
        store: str,
        driver: Driver[object],
        shared: bool,
        on_retire: Callable[[str], None] | None = None,
        on_fresh: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.driver = driver
        self.shared = shared
        self._on_retire = on_retire
        self._on_fresh = on_fresh
        self._current: _Shared | None = None
        self._opening: asyncio.Future[_Shared | None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: list[_Shared] = []
        self._closed = False
        # statistics
        self.opened = 0
        self.closed = 0
        self.retired = 0

    # -- shared path ----------------------------------------------------------------------------
    def _usable(self, slot: _Shared | None, loop: asyncio.AbstractEventLoop) -> bool:
        return (
            slot is not None
            and not slot.retired
            and slot.loop is loop
            and not loop.is_closed()
            and not slot.session.is_broken
        )

    def acquire_nowait(self) -> _Shared | None:
        """The fast path: a user's reference on the usable shared session of the running loop,
        or None when one must be opened (or replaced) first — :meth:`acquire_shared` does that."""
        slot = self._current
        if slot is None or slot.retired:
            return None
        # Is slot.loop the running loop? A thread runs at most one loop at a time, so "it runs in
        # this thread" is exact — and far cheaper than asyncio.get_running_loop(), which makes a
        # getpid() system call on Python 3.11, on the hot path of every operation. (The running
        # loop is never closed.)
        base = slot.base_loop
        if (
            base._thread_id == threading.get_ident()  # type: ignore[attr-defined]
            if base is not None
            else slot.loop is asyncio.get_running_loop()
        ) and not slot.session.is_broken:
            slot.users += 1
            return slot
        return None

    async def acquire_shared(self) -> _Shared:
        """Take a user's reference on the shared session of the running loop, opening it once."""
        loop = asyncio.get_running_loop()
        while True:
            slot = self._current
            if self._usable(slot, loop):
                assert slot is not None
                slot.users += 1
                return slot
            if self._closed:
                raise StoreError("the store manager is closed", store=self.store)
            if slot is not None:
                # Found broken, or bound to another (maybe closed) loop: retire it.
                reason = "bound to another event loop" if slot.loop is not loop else "broken"
                self._retire_slot(slot, reason)
            opening = self._opening
            if opening is not None and opening.get_loop() is loop:
                await asyncio.shield(opening)
                continue
            fut: asyncio.Future[_Shared | None] = loop.create_future()
            self._opening = fut
            try:
                session = await self.driver.open_session()
            except BaseException as exc:
                self._opening = None
                if not fut.done():
                    if isinstance(exc, Exception):
                        fut.set_exception(exc)
                        fut.exception()  # mark retrieved: waiters re-raise it themselves
                    else:
                        # The opener was cancelled: that is not the waiters' failure. They wake
                        # up and one of them opens the session instead.
                        fut.set_result(None)
                raise
            self.opened += 1
            if self._closed:
                # The manager closed while this session was opening: aclose() did not see it.
                self._opening = None
                fut.set_result(None)
                self.closed += 1
                await close_quietly(session, self.store)
                raise StoreError("the store manager is closed", store=self.store)
            new = _Shared(session, loop)
            self._current = new
            self._opening = None
            fut.set_result(new)
            if self._on_fresh is not None and self.opened > 1:
                self._on_fresh()
            # loop again to take the reference through the common path

    def release_nowait(self, slot: _Shared, exc: BaseException | None = None) -> bool:
        """Drop a user's reference, retiring the session first when ``exc`` says it broke.

        True when the caller must now ``await`` :meth:`close_slot` (it was the last user of a
        retired session)."""
        if isinstance(exc, StoreError) and exc.session_broken:
            self._retire_slot(slot, str(exc))
        slot.users -= 1
        return slot.retired and slot.users == 0 and not slot.closed

    async def close_slot(self, slot: _Shared) -> None:
        """Close a retired shared session whose last user left (see :meth:`release_nowait`)."""
        await self._close_slot(slot)

    def retire_current(self, reason: str, *, broken: bool = True) -> None:
        """Retire the current shared session (no new users; closed after the last one).

        ``broken=False`` only refreshes it (e.g. after failing probes, when the session is not
        known to be at fault): DRIVER_REUSABLE is then not revoked in the meantime.
        """
        slot = self._current
        if slot is not None:
            self._retire_slot(slot, reason, broken=broken)

    def _retire_slot(self, slot: _Shared, reason: str, *, broken: bool = True) -> None:
        if slot.retired:
            return
        slot.retired = True
        self.retired += 1
        if self._current is slot:
            self._current = None
        log.warning("store %r: retiring shared driver session (%s)", self.store, reason)
        if broken and self._on_retire is not None:
            self._on_retire(reason)
        if slot.users == 0:
            self._schedule_close(slot)
        else:
            self._retired.append(slot)

    def _schedule_close(self, slot: _Shared) -> None:
        if slot.loop.is_closed():
            slot.closed = True  # cannot run its close on a dead loop; nothing left to release
            self.closed += 1
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is slot.loop:
            self._start_close(slot)
        elif slot.loop.is_running():
            # Retired from another thread's loop: the session belongs to its own loop, which
            # is alive — close it there.
            slot.loop.call_soon_threadsafe(self._start_close, slot)
        else:
            slot.closed = True  # its loop is stopped: nothing can run its close
            self.closed += 1

    def _start_close(self, slot: _Shared) -> None:
        # In a task on the slot's own loop, tracked so that aclose() can wait for it: leaving
        # the manager leaks no task.
        task = slot.loop.create_task(self._close_slot(slot))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_slot(self, slot: _Shared) -> None:
        if slot.closed:
            return
        slot.closed = True
        if slot in self._retired:
            self._retired.remove(slot)
        self.closed += 1
        await close_quietly(slot.session, self.store)

    # -- per-use path ---------------------------------------------------------------------------
    async def open_fresh(self) -> DriverSession:
        if self._closed:
            raise StoreError("the store manager is closed", store=self.store)
        session = await self.driver.open_session()
        self.opened += 1
        return session

    async def close_fresh(self, session: DriverSession) -> None:
        self.closed += 1
        await close_quietly(session, self.store)

    def session(self) -> SessionContext:
        """``async with pool.session() as s:`` — the contract's ``manager.session(name)``."""
        return SessionContext(self)

    # -- lifecycle ------------------------------------------------------------------------------
    def reopen(self) -> None:
        self._closed = False

    async def aclose(self) -> None:
        """Close the shared session and every retired one still open."""
        self._closed = True
        slots = [*self._retired]
        if self._current is not None:
            slots.append(self._current)
            self._current = None
        self._retired.clear()
        loop = asyncio.get_running_loop()
        for slot in slots:
            if slot.closed:
                continue
            if slot.loop is loop:
                await self._close_slot(slot)
            else:
                slot.closed = True
                self.closed += 1
        closing = [t for t in self._closing if t.get_loop() is loop]
        if closing:
            await shielded(asyncio.wait(closing))

    def statistics(self) -> dict[str, int | bool]:
        cur = self._current
        return {
            "shared": self.shared,
            "opened": self.opened,
            "closed": self.closed,
            "retired": self.retired,
            "open": self.opened - self.closed,
            "users": cur.users if cur is not None else 0,
        }


class SessionContext:
    """Async context manager yielding a ready session (shared or fresh)."""

    __slots__ = ("_fresh", "_pool", "_slot")

    def __init__(self, pool: SessionPool) -> None:
        self._pool = pool
        self._slot: _Shared | None = None
        self._fresh: DriverSession | None = None

    async def __aenter__(self) -> DriverSession:
        pool = self._pool
        if pool.shared:
            slot = pool.acquire_nowait() or await pool.acquire_shared()
            self._slot = slot
            return slot.session
        self._fresh = await pool.open_fresh()
        return self._fresh

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pool = self._pool
        if self._slot is not None:
            slot, self._slot = self._slot, None
            if pool.release_nowait(slot, exc):
                await pool.close_slot(slot)
        elif self._fresh is not None:
            fresh, self._fresh = self._fresh, None
            await pool.close_fresh(fresh)
