"""Cancellation that waits: worker threads and clean-ups that never outlive their caller.

``anyio.to_thread.run_sync`` shields the wait for its thread from *anyio* cancellation, but a
native asyncio cancellation (``asyncio.timeout``, ``task.cancel()``) is delivered at once while
the thread goes on running: a put cancelled that way could still commit seconds later, after the
caller was told it did not happen. :func:`run_sync` closes that gap: on cancellation it first sets
``abandon`` (so the thread can give up before an irreversible step, such as a rename), then waits
for the thread to finish, and only then re-raises the cancellation. :func:`shielded` does the
same for clean-up coroutines (closing a reader, releasing a session): anyio's shielded scopes do
not hold back a native asyncio cancellation, so a clean-up could otherwise stop half-way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

__all__ = ["run_sync", "shielded"]

T = TypeVar("T")


async def run_sync(
    fn: Callable[..., T], *args: object, abandon: threading.Event | None = None
) -> T:
    """Run ``fn(*args)`` in a worker thread; on cancellation, wait for it before re-raising."""
    task = asyncio.ensure_future(anyio.to_thread.run_sync(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if abandon is not None:
            abandon.set()
        await _drain(task)
        raise


async def shielded(aw: Awaitable[T]) -> T:
    """Await ``aw`` to completion even when cancelled (anyio or native); then re-raise."""
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
    if not task.cancelled():
        task.exception()  # retrieved: the cancellation is what the caller sees
