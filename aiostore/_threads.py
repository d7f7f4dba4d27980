"""Worker threads that never outlive their caller.

``anyio.to_thread.run_sync`` shields the wait for its thread from *anyio* cancellation, but a
native asyncio cancellation (``asyncio.timeout``, ``task.cancel()``) is delivered at once while
the thread goes on running: a put cancelled that way could still commit seconds later, after the
caller was told it did not happen. :func:`run_sync` closes that gap: on cancellation it first sets
``abandon`` (so the thread can give up before an irreversible step, such as a rename), then waits
for the thread to finish, and only then re-raises the cancellation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

__all__ = ["run_sync"]

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
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                continue  # still waiting: the thread must not outlive us
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise
