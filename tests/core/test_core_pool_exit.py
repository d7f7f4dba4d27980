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
