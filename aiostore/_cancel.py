"""The one concurrency model: blocking work in bounded worker threads, clean-ups that finish.

aiostore runs on asyncio and uses anyio's primitives (task groups, ``CapacityLimiter``,
``to_thread``) where they fit. Two helpers cover every driver's needs:

- :func:`run_blocking` runs a blocking call in a worker thread of one bounded pool. When the
  caller is cancelled (natively — ``task.cancel()``, ``asyncio.timeout`` — or by an anyio scope)
  it gets control back *at once*, even while the call hangs in a system call (a stalled NFS
  mount, a paused Ceph cluster). The abandoned thread finishes on its own; a :class:`Fence`
  passed along makes sure it can no longer commit anything afterwards: before its irreversible
  step (a rename, a multipart completion) the thread calls :meth:`Fence.commit`, which fails
  once the caller has gone. If the thread is already committing when the cancellation arrives,
  the caller waits for that step to end — the operation then happened, and the caller still sees
  its cancellation.
- :func:`shielded` runs a clean-up coroutine (abort an upload, remove a temporary file, give a
  session back) to its end under any cancellation: repeated ``task.cancel()``, timeouts, anyio
  scopes, task-group cancellation. anyio's shielded scopes do not hold back a *native* asyncio
  cancellation, so the clean-up runs in its own task that the caller waits for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

__all__ = ["Abandoned", "Fence", "run_blocking", "run_sync", "shielded"]

T = TypeVar("T")

#: Worker threads of :func:`run_blocking` (blocking calls in flight at once, process-wide).
MAX_THREADS: Final = 32

_RUNNING: Final = 0
_COMMITTING: Final = 1
_ABANDONED: Final = 2
_DONE: Final = 3


class Abandoned(Exception):
    """Raised by :meth:`Fence.commit` / :meth:`Fence.check` in a thread whose caller has gone."""


class Fence:
    """A one-way gate between a worker thread's irreversible step and its caller's cancellation.

    The thread calls :meth:`check` between steps (cheap) and wraps its commit in
    ``with fence.commit():``; the caller, on cancellation, calls :meth:`abandon`. Exactly one
    of the two wins: either the thread commits (and :meth:`abandon` returns False: the caller must
    wait for it), or the caller abandons (and the thread's :meth:`commit` raises
    :class:`Abandoned`, so it rolls back instead).
    """

    __slots__ = ("_lock", "_state")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _RUNNING

    @property
    def abandoned(self) -> bool:
        """True once the caller has gone."""
        return self._state == _ABANDONED

    def check(self) -> None:
        """Raise :class:`Abandoned` when the caller has gone (call it between blocking steps)."""
        if self._state == _ABANDONED:
            raise Abandoned("the caller was cancelled")

    def commit(self) -> _Commit:
        """``with fence.commit(): os.rename(...)``: the irreversible step, or ``Abandoned``."""
        return _Commit(self)

    def abandon(self) -> bool:
        """The caller gives up. True when the thread can no longer commit; False when its commit
        is already under way (or done)."""
        with self._lock:
            if self._state == _RUNNING:
                self._state = _ABANDONED
                return True
            return self._state == _ABANDONED


class _Commit:
    __slots__ = ("_fence",)

    def __init__(self, fence: Fence) -> None:
        self._fence = fence

    def __enter__(self) -> None:
        fence = self._fence
        with fence._lock:
            if fence._state == _ABANDONED:
                raise Abandoned("the caller was cancelled before the commit")
            fence._state = _COMMITTING

    def __exit__(self, *exc: object) -> None:
        self._fence._state = _DONE


async def run_blocking(
    fn: Callable[..., T],
    *args: object,
    fence: Fence | None = None,
    limiter: anyio.CapacityLimiter | None = None,
) -> T:
    """Run ``fn(*args)`` in a worker thread of aiostore's bounded pool (or, with ``limiter``,
    in anyio's pool under that limiter).

    On cancellation the caller gets control back at once, unless ``fence`` says the thread is
    committing: then it waits for the thread first. Either way the cancellation is re-raised.
    """
    if limiter is not None:
        task = asyncio.ensure_future(
            anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=limiter)
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if fence is not None and not fence.abandon():
                await _drain(task)  # the commit is under way: it must not outlive its caller
            else:
                task.cancel()  # the thread runs on by itself; nothing of it can commit any more
                task.add_done_callback(_retrieve)
            raise
    work = _executor().submit(fn, *args)
    try:
        return await asyncio.wrap_future(work)
    except asyncio.CancelledError:
        if fence is not None and not fence.abandon():
            # The commit is under way: it must not outlive its caller.
            await _drain(asyncio.wrap_future(work))
        raise


class _Pool:
    """aiostore's worker threads: at most ``size``, started as needed, reused when idle.

    Unlike ``concurrent.futures.ThreadPoolExecutor`` (whose threads the interpreter joins at
    exit), these are daemon threads: a thread abandoned in a hung system call (a stalled mount,
    librados waiting for a stopped cluster) must not hold up the exit of a program whose every
    caller has long gone. Such a thread can no longer commit anything (its :class:`Fence`), and
    a caller waits for a thread that is committing, so nothing that was promised is cut short.
    """

    def __init__(self, size: int, prefix: str) -> None:
        self._size = size
        self._prefix = prefix
        self._queue: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]
        ] = queue.SimpleQueue()
        #: Threads waiting for work (released by a thread that finished a call).
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0

    def submit(self, fn: Callable[..., T], /, *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        if self._idle.acquire(blocking=False):
            return future  # an idle thread takes it
        with self._lock:
            if self._threads >= self._size:
                return future  # the first thread to finish takes it
            self._threads += 1
            name = f"{self._prefix}_{self._threads - 1}"
        try:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        except BaseException:
            with self._lock:
                self._threads -= 1  # not started: the count stays true
                others = self._threads
            if not others:
                # Nobody would ever run it: it must not run later either (the caller is told
                # it failed). With other threads, the first to finish takes it.
                future.cancel()
                raise
        return future

    def _work(self) -> None:
        get = self._queue.get
        while True:
            future, fn, args = get()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # handed to the caller
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args  # nothing of a finished call outlives it here
            self._idle.release()


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _executor() -> _Pool:
    """aiostore's worker threads: one bounded pool per process, apart from asyncio's default
    executor (threads abandoned in a hung system call must not starve name resolution)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = _Pool(MAX_THREADS, "aiostore")
    return _pool


async def run_sync(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` in a worker thread and, on cancellation, wait for it to finish.

    For short local calls whose effect must not land after the caller was told it did not happen
    (the CLI writing a local file). Work that may hang belongs in :func:`run_blocking`.
    """
    task = asyncio.ensure_future(anyio.to_thread.run_sync(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await _drain(task)
        raise


async def shielded(aw: Awaitable[T]) -> T:
    """Await ``aw`` to completion even when cancelled (anyio or native, once or repeatedly);
    then re-raise the cancellation."""
    task = asyncio.ensure_future(aw)
    try:
        with anyio.CancelScope(shield=True):
            result = await asyncio.shield(task)
        return result
    except asyncio.CancelledError:
        await _drain(task)
        raise


async def _drain(task: asyncio.Future[Any]) -> None:
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            continue  # still waiting: the work must not outlive its caller
    _retrieve(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the cancellation is what the caller sees
