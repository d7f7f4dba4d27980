"""The public driver SDK (issue 14, item 9): its helpers, and the rule that built-in drivers use
nothing else of the core."""

from __future__ import annotations

import ast
import asyncio
import errno
import threading
import time
from pathlib import Path

import pytest

import aiostore
from aiostore.errors import BackendUnavailable, NotFound, StorageFull, StoreError
from aiostore.sdk import (
    Abandoned,
    ErrorMap,
    Fence,
    RetryPolicy,
    decode_metadata,
    encode_metadata,
    os_error_map,
    rechunk,
    run_blocking,
    shielded,
)

DRIVERS = Path(aiostore.__file__).parent / "drivers"
#: What a driver may import from aiostore (besides its own package).
ALLOWED = {"aiostore.sdk", "aiostore.errors", "aiostore.drivers.base"}


def _aiostore_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = "aiostore.drivers" + ("." + path.parent.name if path.parent != DRIVERS else "")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("aiostore")}


@pytest.mark.parametrize(
    "path",
    sorted(p for p in DRIVERS.rglob("*.py") if p.name != "__init__.py" or p.parent != DRIVERS),
    ids=lambda p: str(p.relative_to(DRIVERS)),
)
def test_built_in_drivers_use_only_the_public_sdk(path: Path) -> None:
    if path.name == "base.py" and path.parent == DRIVERS:
        pytest.skip("the interface itself")
    own = "aiostore.drivers." + (path.parent.name if path.parent != DRIVERS else path.stem)
    bad = {m for m in _aiostore_imports(path) if m not in ALLOWED and not m.startswith(own)}
    assert not bad, f"{path.name} imports core internals: {sorted(bad)}"


# -- run_blocking and the fence ------------------------------------------------------------------


async def test_a_cancelled_blocking_call_returns_at_once_and_cannot_commit() -> None:
    release = threading.Event()
    committed: list[str] = []
    outcome: list[str] = []
    fence = Fence()

    def work() -> None:
        release.wait(10)  # a system call that hangs
        try:
            with fence.commit():
                committed.append("yes")
        except Abandoned:
            outcome.append("abandoned")

    task = asyncio.create_task(run_blocking(work, fence=fence))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    release.set()
    for _ in range(100):
        if outcome:
            break
        await asyncio.sleep(0.01)
    assert outcome == ["abandoned"] and committed == []


async def test_a_commit_under_way_is_waited_for() -> None:
    in_commit = threading.Event()
    finish = threading.Event()
    fence = Fence()

    def work() -> str:
        with fence.commit():
            in_commit.set()
            finish.wait(10)
        return "done"

    task = asyncio.create_task(run_blocking(work, fence=fence))
    await asyncio.to_thread(in_commit.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done(), "the caller waits while the commit runs"
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not fence.abandon()


@pytest.mark.parametrize("cancels", [1, 2, 3])
async def test_shielded_cleanup_finishes_under_repeated_cancellation(cancels: int) -> None:
    done: list[str] = []

    async def cleanup() -> None:
        await asyncio.sleep(0.1)
        done.append("cleaned")

    async def op() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await shielded(cleanup())

    task = asyncio.create_task(op())
    await asyncio.sleep(0.01)
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["cleaned"]


# -- ErrorMap ------------------------------------------------------------------------------------


class VendorError(Exception):
    pass


class VendorMissing(VendorError):
    pass


def test_error_map_picks_the_most_specific_entry_and_chains() -> None:
    table = ErrorMap(
        {
            VendorError: lambda exc, ctx: BackendUnavailable(f"{ctx.operation}: {exc}"),
            VendorMissing: lambda exc, ctx: NotFound("gone"),
        }
    )
    with pytest.raises(NotFound) as info, table.mapping(key="k", operation="stat"):
        raise VendorMissing("404")
    assert info.value.key == "k" and isinstance(info.value.__cause__, VendorMissing)
    with pytest.raises(BackendUnavailable, match="stat: 500"), table.mapping(operation="stat"):
        raise VendorError("500")
    with pytest.raises(KeyError), table.mapping():
        raise KeyError("not in the table: unchanged")
    err = StoreError("already ours")
    assert table.translate(err) is err


def test_os_error_map_knows_writes_from_reads() -> None:
    full = os_error_map.translate(OSError(errno.ENOSPC, "full"), operation="put")
    assert isinstance(full, StorageFull)
    denied = os_error_map.translate(OSError(errno.EACCES, "no"), operation="read")
    assert isinstance(denied, BackendUnavailable)


# -- RetryPolicy ---------------------------------------------------------------------------------


async def test_one_budget_bounds_every_request_of_an_operation() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("reset")

    policy = RetryPolicy(max_attempts=4, retryable=lambda e: True, base_delay=0.001)
    budget = policy.attempts()
    with pytest.raises(ConnectionResetError):
        await policy.call(flaky, budget=budget)
    assert calls == 4 and budget.left == 0
    with pytest.raises(BackendUnavailable, match="no attempt left"):  # a resume: no request
        await policy.call(flaky, budget=budget)
    assert calls == 4


async def test_a_failure_that_is_not_retryable_is_raised_at_once() -> None:
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("no")

    policy = RetryPolicy(max_attempts=5, retryable=lambda e: isinstance(e, OSError))
    with pytest.raises(ValueError):
        await policy.call(bad)
    assert calls == 1


async def test_a_retry_that_succeeds_returns_its_result() -> None:
    outcomes = [OSError("a"), OSError("b"), "ok"]

    async def sometimes() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(max_attempts=3, retryable=lambda e: True, base_delay=0.001)
    assert await policy.call(sometimes) == "ok"


# -- streams and metadata ------------------------------------------------------------------------


async def test_rechunk_yields_exact_parts() -> None:
    async def source() -> object:
        for piece in (b"abc", b"defgh", b"", b"ij", b"klmnop"):
            yield piece

    parts = [p async for p in rechunk(source(), 4)]  # type: ignore[arg-type]
    assert parts == [b"abcd", b"efgh", b"ijkl", b"mnop"]
    with pytest.raises(ValueError):
        [p async for p in rechunk(source(), 0)]  # type: ignore[arg-type]


def test_metadata_codec_round_trips_and_refuses_bad_text() -> None:
    meta = {"a": "ü", "b": ["x", {"c": "d"}]}
    encoded = encode_metadata(meta)
    assert encoded.isascii()
    assert decode_metadata(encoded) == meta
    assert decode_metadata(None) is None and decode_metadata("not base64!") is None
    with pytest.raises(aiostore.InvalidMetadata):
        encode_metadata({"a": "\ud800"})
