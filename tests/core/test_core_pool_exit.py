"""A thread abandoned in a hung call does not hold up the program's exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

PROGRAM = textwrap.dedent(
    """
    import asyncio, threading, time
    from aiostore.sdk import Fence, run_blocking

    hung = threading.Event()

    async def main():
        fence = Fence()
        task = asyncio.ensure_future(run_blocking(hung.wait, 120.0, fence=fence))
        await asyncio.sleep(0.2)
        task.cancel()  # the caller gives up; the thread stays in its (hung) call
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert fence.abandoned
        # The pool keeps working for others meanwhile.
        assert await run_blocking(pow, 2, 10) == 1024

    asyncio.run(main())
    print("main returned", flush=True)
    """
)


def test_an_abandoned_hung_thread_does_not_hold_up_exit() -> None:
    """Before: the interpreter joined the pool's threads at exit — two minutes here, and for
    ever on a hung mount."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the program did not exit: {exc.stdout!r} {exc.stderr!r}")
    assert done.returncode == 0, done.stderr
    assert "main returned" in done.stdout
    assert time.monotonic() - start < 20


def test_a_thread_that_cannot_start_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool counts a thread before starting it: one that fails to start is given back (or
    after 32 such failures queued work would never run), and work whose submit failed never
    runs later (its caller was told it failed)."""
    import threading

    from aiostore._cancel import _Pool

    pool = _Pool(2, "test-pool")
    start = threading.Thread.start
    ran: list[int] = []

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    for i in range(3):
        with pytest.raises(RuntimeError):
            pool.submit(ran.append, i)
    monkeypatch.setattr(threading.Thread, "start", start)
    assert pool.submit(pow, 2, 5).result(timeout=5) == 32
    assert pool.submit(pow, 2, 6).result(timeout=5) == 64
    assert ran == []
    assert pool._threads <= 2
