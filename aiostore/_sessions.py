"""Driver sessions: one shared per live event loop for DRIVER_REUSABLE drivers, one per use
otherwise.

Like httpcore's pool: cheap synchronous predicates (is there a shared session of this loop, not
retired, not broken?) decide reuse-or-create; closing I/O runs afterwards, shielded and bounded.

- A call from another event loop gets *that* loop's shared session: two loops using one store
  is normal, not a fault (no retiring, no DRIVER_REUSABLE flap, no warning).
- A shared session found broken is *retired*: it gets no new users, is closed once its last
  user leaves, and the next caller on its loop opens a fresh one.
- The sessions of a loop that has closed are dropped (nothing can run their close any more).
- Layers (fault injection in tests) wrap the session a caller sees; the raw session is what
  the pool opens and closes. Without layers the caller gets the raw session: nothing is checked
  on the hot path.
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

__all__ = ["SessionContext", "SessionPool", "close_quietly"]

log = logging.getLogger("aiostore.sessions")

#: Bound on closing one session (shielded from cancellation).
CLOSE_TIMEOUT: Final = 10.0

#: Wraps a session in layers (e.g. fault injection); ``None`` when there are none.
Wrapper = Callable[[DriverSession], DriverSession]

_get_ident: Final = threading.get_ident


@dataclass(eq=False, slots=True)
class Shared:
    """One loop's shared session and its users."""

    session: DriverSession
    #: What callers use: ``session`` wrapped in the pool's layers (``session`` itself without).
    view: DriverSession
    loop: asyncio.AbstractEventLoop
    thread: int
    #: The session's class defines ``is_broken``: ask it (the base class's is always False).
    may_break: bool = True
    users: int = 0
    retired: bool = False
    closed: bool = False


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
        self._wrap: Wrapper | None = None
        #: The shared session of each live loop, and the same slots by the thread running them
        #: (the hot path: ``threading.get_ident()`` is far cheaper than
        #: ``asyncio.get_running_loop()``, which makes a system call on Python 3.11).
        self._by_loop: dict[asyncio.AbstractEventLoop, Shared] = {}
        self._by_thread: dict[int, Shared] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: list[Shared] = []
        self._closed = False
        #: A broken shared session was retired since the last fresh one opened.
        self._broke = False
        # statistics
        self.opened = 0
        self.closed = 0
        self.retired = 0

    # -- layers ---------------------------------------------------------------------------------
    def set_wrapper(self, wrap: Wrapper | None) -> None:
        """Wrap every session callers see in ``wrap`` (None: no layers), effective at once."""
        self._wrap = wrap
        for slot in self._by_loop.values():
            slot.view = wrap(slot.session) if wrap is not None else slot.session

    def _view(self, session: DriverSession) -> DriverSession:
        return self._wrap(session) if self._wrap is not None else session

    # -- shared path ----------------------------------------------------------------------------
    def acquire_nowait(self) -> Shared | None:
        """The hot path: a user's reference on the running loop's usable shared session, or None
        when one must be opened (or replaced) first — :meth:`acquire_shared` does that.

        A thread runs at most one event loop at a time, so "this thread's slot, whose loop is
        running" is the running loop's slot (loops are not handed between threads while alive).
        """
        slot = self._by_thread.get(_get_ident())
        if (
            slot is not None
            and not slot.retired
            and slot.loop.is_running()
            and not (slot.may_break and slot.session.is_broken)
        ):
            slot.users += 1
            return slot
        return None

    async def acquire_shared(self) -> Shared:
        """Take a user's reference on the running loop's shared session, opening it once."""
        loop = asyncio.get_running_loop()
        while True:
            slot = self._by_loop.get(loop)
            if slot is not None:
                if not slot.retired and not slot.session.is_broken:
                    thread = threading.get_ident()
                    if slot.thread != thread:  # the loop now runs in another thread
                        if self._by_thread.get(slot.thread) is slot:
                            del self._by_thread[slot.thread]
                        slot.thread = thread
                    self._by_thread[thread] = slot
                    slot.users += 1
                    return slot
                self._retire_slot(slot, "broken")
            if self._closed:
                raise StoreError("the store manager is closed", store=self.store)
            self._drop_dead_loops()
            opening = self._opening.get(loop)
            if opening is not None:
                await asyncio.shield(opening)
                continue
            fut: asyncio.Future[None] = loop.create_future()
            self._opening[loop] = fut
            try:
                session = await self.driver.open_session()
            except BaseException as exc:
                del self._opening[loop]
                if isinstance(exc, Exception):
                    fut.set_exception(exc)  # every waiter fails the same way
                    fut.exception()  # mark retrieved: waiters re-raise it themselves
                else:
                    # The opener was cancelled: that is not the waiters' failure. They wake
                    # up and one of them opens the session instead.
                    fut.set_result(None)
                raise
            self.opened += 1
            del self._opening[loop]
            fut.set_result(None)
            if self._closed:
                # The manager closed while this session was opening: aclose() did not see it.
                self.closed += 1
                await close_quietly(session, self.store)
                raise StoreError("the store manager is closed", store=self.store)
            new = Shared(
                session,
                self._view(session),
                loop,
                _get_ident(),
                type(session).is_broken is not DriverSession.is_broken,
            )
            self._by_loop[loop] = new
            self._by_thread[new.thread] = new
            if self._broke:
                self._broke = False
                if self._on_fresh is not None:
                    self._on_fresh()
            # loop again to take the reference through the common path

    def _drop_dead_loops(self) -> None:
        for loop in [lp for lp in self._by_loop if lp.is_closed()]:
            slot = self._by_loop.pop(loop)
            if self._by_thread.get(slot.thread) is slot:
                del self._by_thread[slot.thread]
            if not slot.closed:
                slot.closed = True  # nothing can run its close on a closed loop
                self.closed += 1

    def release_nowait(self, slot: Shared, exc: BaseException | None = None) -> bool:
        """Drop a user's reference, retiring the session first when ``exc`` says it broke.

        True when the caller must now ``await`` :meth:`close_slot` (it was the last user of a
        retired session)."""
        if exc is not None and isinstance(exc, StoreError) and exc.session_broken:
            self._retire_slot(slot, str(exc))
        slot.users -= 1
        return slot.retired and slot.users == 0 and not slot.closed

    async def close_slot(self, slot: Shared) -> None:
        """Close a retired shared session whose last user left (see :meth:`release_nowait`)."""
        await self._close_slot(slot)

    def retire_current(self, reason: str, *, broken: bool = True) -> None:
        """Retire the running loop's shared session (no new users; closed after the last one).

        ``broken=False`` only refreshes it (e.g. after failing probes, when the session is not
        known to be at fault): DRIVER_REUSABLE is then not revoked in the meantime.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        slot = self._by_loop.get(loop)
        if slot is not None:
            self._retire_slot(slot, reason, broken=broken)

    def _retire_slot(self, slot: Shared, reason: str, *, broken: bool = True) -> None:
        if slot.retired:
            return
        slot.retired = True
        self.retired += 1
        if self._by_loop.get(slot.loop) is slot:
            del self._by_loop[slot.loop]
        if self._by_thread.get(slot.thread) is slot:
            del self._by_thread[slot.thread]
        if broken:
            log.warning("store %r: retiring shared driver session (%s)", self.store, reason)
            self._broke = True
            if self._on_retire is not None:
                self._on_retire(reason)
        else:
            log.info("store %r: refreshing shared driver session (%s)", self.store, reason)
        if slot.users == 0:
            self._schedule_close(slot)
        else:
            self._retired.append(slot)

    def _schedule_close(self, slot: Shared) -> None:
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

    def _start_close(self, slot: Shared) -> None:
        # In a task on the slot's own loop, tracked so that aclose() can wait for it: leaving
        # the manager leaks no task.
        task = slot.loop.create_task(self._close_slot(slot))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_slot(self, slot: Shared) -> None:
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
        """Close every shared session and every retired one still open: those of the running
        loop here; those of other live loops on their own loop; those of closed loops dropped."""
        self._closed = True
        slots = [*self._retired, *self._by_loop.values()]
        self._by_loop.clear()
        self._by_thread.clear()
        self._retired.clear()
        loop = asyncio.get_running_loop()
        for slot in slots:
            if slot.closed:
                continue
            if slot.loop is loop:
                await self._close_slot(slot)
            else:
                self._schedule_close(slot)
        closing = [t for t in self._closing if t.get_loop() is loop]
        if closing:
            await shielded(asyncio.wait(closing))

    def statistics(self) -> dict[str, int | bool]:
        users = sum(slot.users for slot in self._by_loop.values())
        return {
            "shared": self.shared,
            "opened": self.opened,
            "closed": self.closed,
            "retired": self.retired,
            "open": self.opened - self.closed,
            "users": users,
            "loops": len(self._by_loop),
        }


class SessionContext:
    """Async context manager yielding a ready session (shared or fresh), layers applied."""

    __slots__ = ("_fresh", "_pool", "_slot")

    def __init__(self, pool: SessionPool) -> None:
        self._pool = pool
        self._slot: Shared | None = None
        self._fresh: DriverSession | None = None

    async def __aenter__(self) -> DriverSession:
        pool = self._pool
        if pool.shared:
            slot = pool.acquire_nowait() or await pool.acquire_shared()
            self._slot = slot
            return slot.view
        self._fresh = await pool.open_fresh()
        return pool._view(self._fresh)

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
