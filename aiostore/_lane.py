"""A lane: short blocking calls of one event loop, drained back to back by as few threads as do.

Every :func:`~aiostore._cancel.run_blocking` call is a thread hop: the call is handed to a pool
thread (waking a sleeping one), and its result is handed back to the loop. On a small virtual
machine that hand-over costs ~70-80 µs of CPU — more than a file store's whole probe (six system
calls). A thousand file stores probed every second paid it a thousand times a second.

A lane queues the calls of one event loop instead; a thread that has just finished one call
takes the next queued one without going to sleep, so a burst of calls (every probe due within
the scheduler's tick) costs one thread wake-up, not one per call. When the queue is empty the
thread returns to the pool.

A call that hangs (a stalled mount) must not hold up the rest of the queue: a thread that has
been inside one call for longer than :data:`STUCK` no longer counts as draining the lane, and a
timer on the loop (every STUCK while calls wait) starts another thread. So does a call that has
waited longer than STUCK (slow calls, none of them hung, must not each wait for all those ahead
of it in turn). Threads stuck in hung calls are bounded as with ``run_blocking``: the pool is;
while a thread asked of the pool has not started, no other is asked for.

Cancellation: a caller cancelled while its call waits in the queue gets control back at once and
the call never runs (nor stays queued for long: behind threads all held up, callers timing out
again and again must not pile up); a caller cancelled while its call runs gets control back at
once and the thread finishes the call on its own (its result is dropped) — as with
``run_blocking`` without a fence, so the calls queued here must be ones that may run on after
their caller has gone.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from ._cancel import _executor

__all__ = ["STUCK", "WINDOW", "run_in_lane"]

T = TypeVar("T")

#: A thread inside one call for longer than this (seconds) is presumed stuck: another one starts.
STUCK: Final = 0.01
#: How long the first call queued waits for others before a thread starts on them (seconds).
WINDOW: Final = 0.001

_QUEUED: Final = 0
_RUNNING: Final = 1
_DROPPED: Final = 2


class _Job(Generic[T]):
    __slots__ = ("args", "fn", "future", "queued", "state")

    def __init__(self, fn: Callable[..., T], args: tuple[object, ...], future: asyncio.Future[T]):
        self.fn = fn
        self.args = args
        self.future = future
        self.state = _QUEUED
        #: When it was queued (``time.monotonic``).
        self.queued = time.monotonic()


#: ``_Runner.since`` of a thread asked for that has not started yet.
_PENDING: Final = -1.0


class _Runner:
    __slots__ = ("since",)

    def __init__(self) -> None:
        #: When the call it runs started (``time.monotonic``); 0.0 between calls; _PENDING
        #: until the pool starts it.
        self.since = _PENDING


class _Lane:
    """One event loop's queue of blocking calls and the threads draining it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: a lane in the fallback map (keyed by loop) holding its key would keep that loop
        # alive for ever; the loop holds its lane (see lane()).
        self._loop_ref = weakref.ref(loop)
        self._lock = threading.Lock()
        self._jobs: collections.deque[_Job[Any]] = collections.deque()
        self._runners: list[_Runner] = []
        #: Results the threads have handed back that the loop has not given out yet.
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        #: Queued calls whose callers were cancelled (still in ``_jobs``, skipped when popped).
        self._dropped = 0
        #: Whether ``_watch`` is scheduled. A flag, not the timer handle: the handle holds the
        #: loop, and the loop closing with the timer pending would stay in the lanes map.
        self._armed = False
        #: Threads started (statistics: how many hops the queued calls cost).
        self.started = 0

    async def run(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, args, future)
        with self._lock:
            self._jobs.append(job)
        if not self._armed:
            # The thread starts a moment later, with every call queued meanwhile (the probes
            # due in one scheduler tick are launched over many loop turns).
            loop.call_later(WINDOW, self._watch)
            self._armed = True
        try:
            return await future
        except asyncio.CancelledError:
            with self._lock:
                if job.state == _QUEUED:
                    job.state = _DROPPED  # never runs; the thread that pops it skips it
                    self._dropped += 1
                    jobs = self._jobs
                    if self._dropped * 2 > len(jobs):
                        # Threads all held up (hung calls, a full pool) pop nothing: callers
                        # timing out interval after interval must not pile up here.
                        live = [j for j in jobs if j.state == _QUEUED]
                        jobs.clear()
                        jobs.extend(live)
                        self._dropped = 0
            raise

    def _watch(self) -> None:
        """Loop timer while calls wait: start a thread when none drains the lane — none runs,
        or every one has been inside its call for longer than :data:`STUCK` — or when the
        oldest call has waited longer than that (slow calls: each one a little shorter than
        STUCK must not make the last of many wait for all the others in turn). Not while a
        thread asked for has not started (the pool is busy: asking again would pile up)."""
        self._armed = False
        with self._lock:
            jobs = self._jobs
            if not jobs:
                return
            now = time.monotonic()
            draining = pending = False
            for other in self._runners:
                if other.since == _PENDING:
                    pending = draining = True
                elif not other.since or now - other.since < STUCK:
                    draining = True
            runner = None
            if not pending and (not draining or now - jobs[0].queued > STUCK):
                runner = _Runner()
                self._runners.append(runner)
        try:
            if runner is not None:
                self.started += 1
                try:
                    _executor().submit(self._drain, runner)
                except BaseException:
                    with self._lock:
                        self._runners.remove(runner)
                    raise
        except Exception as exc:
            if not draining:  # no thread: the calls waiting for one get the error
                self._fail_waiting(exc)
                return
            # Another thread drains the lane: its calls wait for it.
        finally:  # even on KeyboardInterrupt: the calls waiting are not forgotten
            loop = self._loop_ref()
            if loop is not None and self._jobs and not self._armed:
                loop.call_later(STUCK, self._watch)
                self._armed = True

    def _fail_waiting(self, exc: Exception) -> None:
        with self._lock:
            waiting = [j for j in self._jobs if j.state == _QUEUED]
            self._jobs.clear()
            self._dropped = 0
            for job in waiting:
                job.state = _DROPPED
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(exc)

    def _drain(self, runner: _Runner) -> None:
        """A pool thread: run queued calls one after another until none is left."""
        lock, jobs = self._lock, self._jobs
        while True:
            with lock:
                job = None
                while jobs:
                    job = jobs.popleft()
                    if job.state == _QUEUED:
                        break
                    self._dropped -= 1
                    job = None
                if job is None:
                    runner.since = 0.0
                    if runner in self._runners:  # not if its start was given up (_watch)
                        self._runners.remove(runner)
                    return
                job.state = _RUNNING
                runner.since = time.monotonic()
            outcome: tuple[asyncio.Future[Any], Any, BaseException | None]
            try:
                result = job.fn(*job.args)
            except StopIteration as exc:  # a future refuses it (TypeError): as asyncio does
                error = RuntimeError("StopIteration cannot be raised into a Future")
                error.__cause__ = exc
                outcome = (job.future, None, error)
            except BaseException as exc:  # handed to the caller
                outcome = (job.future, None, exc)
            else:
                outcome = (job.future, result, None)
            with lock:
                runner.since = 0.0
                ring = not self._done
                self._done.append(outcome)
            if ring:  # one wake-up of the loop for every result handed back until it looks
                loop = self._loop_ref()
                try:
                    if loop is None:
                        raise RuntimeError("the loop is gone")
                    loop.call_soon_threadsafe(self._collect)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    with lock:
                        self._done.clear()

    def _collect(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        for future, result, exc in done:
            if future.done():
                continue  # the caller was cancelled meanwhile
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)


#: The loop's attribute holding its lane: the loop and its lane are then garbage together (a
#: map keyed by loop would keep, through its value, a loop closed with calls queued or results
#: not handed back — their futures hold it).
_ATTR: Final = "_aiostore_lane"
#: Lanes of loops that take no attributes (a loop without ``__dict__``).
_lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane] = weakref.WeakKeyDictionary()
_lanes_lock = threading.Lock()


def lane() -> _Lane:
    """The running loop's lane."""
    loop = asyncio.get_running_loop()
    found: _Lane | None = getattr(loop, _ATTR, None)
    if found is None:
        found = _lanes.get(loop)
        if found is None:
            with _lanes_lock:
                found = getattr(loop, _ATTR, None) or _lanes.get(loop)
                if found is None:
                    found = _Lane(loop)
                    try:
                        setattr(loop, _ATTR, found)
                    except AttributeError:
                        _lanes[loop] = found
    return found


async def run_in_lane(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` — a short blocking call that may run on after its caller has gone — in
    the running loop's lane (see the module's docstring)."""
    return await lane().run(fn, args)
