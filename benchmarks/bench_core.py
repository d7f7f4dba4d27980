"""Core benchmark: what the Store facade and the check routine cost on top of a driver call.

Scenarios (contenders in the same process and the same run, rounds interleaved, the order
alternating each round, medians of ≥ 5 rounds):

- ``read-4k``: ``await store.read(key)`` of a 4 KiB object through the Store facade on the memory
  driver (key validation, range check, the check routine, the shared session, fault switches,
  error mapping) against calling the driver session directly, held open, in the same loop:
  ``async with manager.session(name) as s: await s.read(key, 0, None)``. The facade's overhead is
  ``time per facade read / time per direct read - 1``; target ≤ 25 %.
  A third contender, ``passthrough``, is the floor of any facade: one ``async def`` that only
  awaits the same session call.
- ``check``: one run of the check routine (``check(store, snapshot, "read", key, offset=0,
  length=None)``, the allowed path every operation takes) against one dict lookup, in µs per call;
  target ≤ 1 µs. ``check-args`` is the same call on a store that lacks READ_RANDOM (so the
  argument rules are evaluated, not skipped).

Times are the process's **CPU time** per operation (``time.thread_time``): the loops are
single-threaded and CPU-bound, and CPU time does not count the time other processes on a busy
machine take from us (wall time is also recorded, as ``wall_ops_per_s``).

``run(quick)`` returns rows ``{"scenario", "contender", "metric", "value", "ratio"}``: for
``ops_per_s`` and ``us_per_call`` rows ``ratio`` is the contender's value over the baseline's
(the baseline's own row has 1.0); for the ``facade_overhead_pct`` and ``check_us`` target rows it
is the value over the target (≤ 1 meets it). ``python -m benchmarks.bench_core [--quick]`` prints
a table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiostore import Capability, StoreManager
from aiostore.capabilities.check import check

OBJECT_SIZE = 4096
KEY = "bench/object-4k"
OVERHEAD_TARGET_PCT = 25.0
CHECK_TARGET_US = 1.0

Timed = Callable[[int], Awaitable[tuple[float, float]]]


def _rounds(quick: bool) -> tuple[int, int]:
    """(rounds, operations per round)."""
    return (5, 20_000) if quick else (9, 100_000)


async def _measure_reads(quick: bool) -> dict[str, list[float]]:
    """CPU seconds per read, one sample per round, for every contender (and ``wall:`` twins)."""
    rounds, n = _rounds(quick)
    config = {"probe": {"enabled": False}, "stores": {"mem": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        store = manager["mem"]
        await store.put(KEY, bytes(range(256)) * (OBJECT_SIZE // 256))

        async with manager.session("mem") as session:

            async def passthrough_read(key: str) -> bytes:
                return await session.read(key, 0, None)

            def timed(call: Callable[[], Awaitable[Any]]) -> Timed:
                async def loop(count: int) -> tuple[float, float]:
                    wall, cpu = time.perf_counter(), time.thread_time()
                    for _ in range(count):
                        await call()
                    return time.thread_time() - cpu, time.perf_counter() - wall

                return loop

            contenders: dict[str, Timed] = {
                "aiostore": timed(lambda: store.read(KEY)),
                "driver-session": timed(lambda: session.read(KEY, 0, None)),
                "passthrough": timed(lambda: passthrough_read(KEY)),
            }
            samples: dict[str, list[float]] = {}
            for name, fn in contenders.items():  # warm-up (caches, specialisation)
                await fn(n // 10)
                samples[name] = []
                samples["wall:" + name] = []
            order = list(contenders)
            for _ in range(rounds):
                for name in order:
                    gc.collect()
                    cpu, wall = await contenders[name](n)
                    samples[name].append(cpu / n)
                    samples["wall:" + name].append(wall / n)
                order.reverse()
    return samples


def _measure_check(quick: bool) -> dict[str, list[float]]:
    """Seconds per call of the check routine and of a dict lookup, one sample per round."""
    rounds, n = _rounds(quick)
    manager = StoreManager(
        {
            "probe": {"enabled": False},
            "stores": {"mem": {"driver": "memory"}, "seq": {"driver": "memory"}},
        }
    )
    store = manager["mem"]
    snapshot = store._state.snapshot
    reasons = store._health.reason_for
    # a store that lacks READ_RANDOM: whole reads pass, after evaluating the argument rules
    sequential = manager["seq"]._state
    sequential.set_revoked([Capability.READ_RANDOM], "benchmark")
    seq_snapshot = sequential.snapshot
    table = {KEY: snapshot}

    def run_check(count: int) -> float:
        started = time.thread_time()
        for _ in range(count):
            check("mem", snapshot, "read", KEY, reasons, offset=0, length=None)
        return time.thread_time() - started

    def run_check_args(count: int) -> float:
        started = time.thread_time()
        for _ in range(count):
            check("seq", seq_snapshot, "read", KEY, reasons, offset=0, length=None)
        return time.thread_time() - started

    def run_dict(count: int) -> float:
        started = time.thread_time()
        for _ in range(count):
            table[KEY]  # the lookup is what is measured
        return time.thread_time() - started

    contenders = {"aiostore": run_check, "check-args": run_check_args, "dict-lookup": run_dict}
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn(n // 10)
    order = list(contenders)
    for _ in range(rounds):
        for name in order:
            gc.collect()
            samples[name].append(contenders[name](n) / n)
        order.reverse()
    return samples


def measure(quick: bool) -> dict[str, dict[str, list[float]]]:
    return {"read-4k": asyncio.run(_measure_reads(quick)), "check": _measure_check(quick)}


def summarize(samples: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    reads = samples["read-4k"]
    t_facade = statistics.median(reads["aiostore"])
    t_direct = statistics.median(reads["driver-session"])
    for name in ("aiostore", "driver-session", "passthrough"):
        t = statistics.median(reads[name])
        wall = statistics.median(reads["wall:" + name])
        rows.append(
            {
                "scenario": "read-4k",
                "contender": name,
                "metric": "ops_per_s",
                "value": round(1 / t),
                "ratio": round(t_direct / t, 3),
            }
        )
        rows.append(
            {
                "scenario": "read-4k",
                "contender": name,
                "metric": "wall_ops_per_s",
                "value": round(1 / wall),
                "ratio": round(statistics.median(reads["wall:driver-session"]) / wall, 3),
            }
        )
    overhead = (t_facade / t_direct - 1) * 100
    rows.append(
        {
            "scenario": "read-4k",
            "contender": "aiostore",
            "metric": "facade_overhead_pct",
            "value": round(overhead, 1),
            "ratio": round(overhead / OVERHEAD_TARGET_PCT, 2),
        }
    )
    rows.append(
        {
            "scenario": "read-4k",
            "contender": "aiostore",
            "metric": "facade_extra_us_per_op",
            "value": round((t_facade - t_direct) * 1e6, 3),
            "ratio": None,
        }
    )
    checks = samples["check"]
    t_check = statistics.median(checks["aiostore"])
    t_args = statistics.median(checks["check-args"])
    t_dict = statistics.median(checks["dict-lookup"])
    for name, t in (("aiostore", t_check), ("check-args", t_args), ("dict-lookup", t_dict)):
        rows.append(
            {
                "scenario": "check",
                "contender": name,
                "metric": "us_per_call",
                "value": round(t * 1e6, 4),
                "ratio": round(t / t_dict, 2),
            }
        )
    rows.append(
        {
            "scenario": "check",
            "contender": "aiostore",
            "metric": "check_us",
            "value": round(max(t_check, t_args) * 1e6, 4),
            "ratio": round(max(t_check, t_args) * 1e6 / CHECK_TARGET_US, 2),
        }
    )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure every scenario; rows as described in the module docstring."""
    return summarize(measure(quick))


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'scenario':9s} {'contender':15s} {'metric':23s} {'value':>12s} {'ratio':>7s}"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"{r['scenario']:9s} {r['contender']:15s} {r['metric']:23s} {r['value']:>12,}"
            f" {ratio:>7s}"
        )
    by = {(r["scenario"], r["metric"]): r for r in rows}
    overhead = by[("read-4k", "facade_overhead_pct")]["value"]
    check_us = by[("check", "check_us")]["value"]
    lines.append("")
    lines.append(
        f"target: facade overhead ≤ {OVERHEAD_TARGET_PCT:g} %: {overhead:.1f} % "
        f"({'met' if overhead <= OVERHEAD_TARGET_PCT else 'NOT met'})"
    )
    lines.append(
        f"target: check routine ≤ {CHECK_TARGET_US:g} µs: {check_us:.3f} µs "
        f"({'met' if check_us <= CHECK_TARGET_US else 'NOT met'})"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations per round")
    args = parser.parse_args()
    print(_table(run(args.quick)))


if __name__ == "__main__":
    main()
