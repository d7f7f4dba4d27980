"""HTTP driver benchmark: aiostore's ``http`` store against raw ``aiohttp.ClientSession``.

Both read from one aiohttp static server running in a process of its own
(``benchmarks/_static_server.py``: Range, HEAD, sendfile), so the server never competes with the
client's GIL. Each contender runs in a worker process of its own (``benchmarks/_harness.py``);
rounds are interleaved, the order alternating each round; values are medians of 5 rounds
(``--quick``: 3). The contenders are the ``aiostore`` and ``raw aiohttp`` ones of
``benchmarks/peers_http.py`` (whose run also includes obstore and opendal):

- ``large-get``: stream one 64 MiB object (``--quick``: 16 MiB): ``store.open`` iteration against
  ``resp.content.iter_any()``;
- ``small-get``: 2,000 objects of 4 KiB (``--quick``: 300), 64 in flight: ``store.read`` against
  ``session.get`` + ``resp.read()``.

``run(quick)`` returns rows ``{"scenario", "contender", "metric", "value", "ratio"}`` (plus
``min``, ``max``, ``n``): ``ratio`` is the contender's median over raw aiohttp's (raw's own rows
are 1.0). Targets (issue #6, PERFORMANCE.md): throughput ≥ 0.9× raw; client CPU per operation
≤ 1.2× raw. ``python -m benchmarks.bench_http [--quick]`` prints a table and the targets.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from ._harness import (
    CPU_OBJ,
    CPU_OP,
    OPS,
    THROUGHPUT,
    Metric,
    MiB,
    Scenario,
    rmtree,
    rows_table,
    run_scenario,
    target_verdicts,
)
from .peers_http import CONTENDERS, HttpGroup

AIOSTORE: Final = "aiostore"
RAW: Final = "raw aiohttp"
#: (scenario prefix or None for all, metric, target on aiostore's ratio to raw, True when the
#: ratio must be at least the target)
TARGETS: Final[tuple[tuple[str | None, Metric, float, bool], ...]] = (
    (None, THROUGHPUT, 0.9, True),
    (None, OPS, 0.9, True),
    (None, CPU_OBJ, 1.2, False),
    (None, CPU_OP, 1.2, False),
)


def scenarios(quick: bool) -> list[Scenario]:
    contenders = tuple(c for c in CONTENDERS if c.label in (AIOSTORE, RAW))
    size = (16 if quick else 64) * MiB
    count = 300 if quick else 2000
    return [
        Scenario(
            name="large-get",
            title=f"{size // MiB} MiB streaming get",
            what=f"stream one {size // MiB} MiB object",
            ops=("get",),
            kind="large",
            contenders=contenders,
            params={"size": size, "count": 0, "concurrency": 64},
            warmup=True,
        ),
        Scenario(
            name="small-get",
            title=f"4 KiB × {count:,} gets, 64 in flight",
            what=f"{count:,} objects of 4 KiB, 64 in flight",
            ops=("get",),
            kind="small",
            contenders=contenders,
            params={"size": 0, "count": count, "concurrency": 64},
            warmup=True,
            method_suffix="_small",
        ),
    ]


def run(quick: bool, echo: Any = None) -> list[dict[str, Any]]:
    """Measure both scenarios; rows as described in the module docstring."""
    rounds = 3 if quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="aiostore-bench-http-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    wanted = scenarios(quick)
    group = HttpGroup(quick, tmp, log_dir)
    # The data the static server holds (HttpGroup.env writes it and starts the server).
    group.large_size = wanted[0].params["size"]
    group.small_count = wanted[1].params["count"]
    rows: list[dict[str, Any]] = []
    try:
        with group.env() as env:
            for scenario in wanted:
                res = run_scenario(
                    scenario, env, None, rounds, log_dir, echo=echo or (lambda s: None)
                )
                errors = [f"{o.spec.label}: {o.error}" for o in res.outcomes if o.error]
                if errors:
                    raise RuntimeError(f"{scenario.name} failed: {'; '.join(errors)}")
                for metric in scenario.metrics(with_server=False):
                    base = res.summary("get", RAW, metric)
                    for label in (AIOSTORE, RAW):
                        s = res.summary("get", label, metric)
                        if s is None or base is None:
                            continue
                        rows.append(
                            {
                                "scenario": scenario.name,
                                "contender": label,
                                "metric": f"{metric.name} ({metric.unit})",
                                "value": s["median"],
                                "ratio": s["median"] / base["median"] if base["median"] else None,
                                "min": s["min"],
                                "max": s["max"],
                                "n": s["n"],
                            }
                        )
    finally:
        rmtree(tmp)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="16 MiB, 300 gets, 3 rounds")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    rows = run(args.quick, echo=lambda s: print(s, file=sys.stderr))
    print(rows_table(rows, widths=(10, 12, 24), ratio_title="× raw"))
    print()
    print("\n".join(target_verdicts(rows, TARGETS, contender=AIOSTORE)))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
