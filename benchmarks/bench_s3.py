"""S3 driver benchmark: aiostore's ``s3`` store against raw aiobotocore doing the same calls.

Both talk to one moto server running in a process of its own (``python -m moto.server``), so the
server never shares the client's GIL. Each contender runs in a worker process of its own
(``benchmarks/_harness.py``); rounds are interleaved, the order alternating each round; values
are medians of 5 rounds (``--quick``: 3). The contenders are the ``aiostore`` (its default
transport), ``aiostore, botocore transport`` and ``raw aiobotocore`` ones of
``benchmarks/peers_s3.py`` (whose run also includes s3fs, obstore and opendal):

- ``s3-large``: put a 256 MiB stream (``--quick``: 32 MiB) of 1 MiB chunks as 8 MiB parts,
  4 in flight (aiostore also computes md5 + sha256 of it), then stream it back in 1 MiB chunks:
  MB/s, client CPU per object, peak RSS growth;
- ``s3-small``: 2,000 (``--quick``: 200) objects of 4 KiB, 64 in flight: put (aiostore:
  create-only, hashed; raw: the same PUT, ``If-None-Match`` and metadata token included) and get
  (``store.read`` against ``get_object`` + ``read``): ops/s and client CPU per operation
  (process CPU time ÷ operations). moto caps every client at a few hundred ops/s, so CPU per op
  is where clients differ;
- ``s3-session``: the same small put and get, 200 (``--quick``: 100) objects, aiostore with its
  shared session against aiostore with ``reusable = false`` (a new aiobotocore client for every
  operation): what DRIVER_REUSABLE saves.

``run(quick)`` returns rows ``{"scenario", "contender", "metric", "value", "ratio"}`` (plus
``min``, ``max``, ``n``): ``ratio`` is the median over raw aiobotocore's (in ``s3-session``: over
shared-session aiostore's). Targets (issue #5): large-object throughput ≥ 0.95× raw, small-object
ops/s ≥ 0.9× raw; goal (PERFORMANCE.md): client CPU per op ≤ 1.1× raw.
``python -m benchmarks.bench_s3 [--quick]`` prints a table and the verdicts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Final

from ._harness import (
    CPU_OP,
    OPS,
    THROUGHPUT,
    ContenderSpec,
    Metric,
    MiB,
    Scenario,
    rmtree,
    rows_table,
    run_scenario,
    target_verdicts,
)
from .peers_s3 import BUCKET, CONTENDERS, Aiobotocore, Aiostore, S3Group

AIOSTORE: Final = "aiostore"
RAW: Final = "raw aiobotocore"
FRESH: Final = "aiostore, reusable=false"
#: aiostore with ``transport = "botocore"`` (the default is the lean transport).
BOTOCORE: Final = "aiostore, botocore transport"
#: (scenario, metric, target on aiostore's ratio to raw, True when the ratio must be at least it)
TARGETS: Final[tuple[tuple[str | None, Metric, float, bool], ...]] = (
    ("s3-large", THROUGHPUT, 0.95, True),
    ("s3-small", OPS, 0.9, True),
    ("s3-small", CPU_OP, 1.1, False),
)


class RawSameCalls(Aiobotocore):
    """Raw aiobotocore sending the small PUT aiostore's driver sends for a create-only put:
    ``If-None-Match: *`` and the ``x-amz-meta-aiostore-put`` token (the large put differs by one
    HEAD, that header and a conditional completion: nothing against 32 parts)."""

    async def put_one(self, key: str, data: bytes) -> None:
        await self.c.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=data,
            IfNoneMatch="*",
            Metadata={"aiostore-put": uuid.uuid4().hex},
        )


class AiostoreFreshClient(Aiostore):
    """The ``aiostore`` contender with ``reusable = false``: every operation opens (and closes)
    a session, i.e. a new aiobotocore client and connection pool."""

    async def setup(self) -> None:
        from aiostore import StoreManager

        await super().setup()
        shared = self.manager
        options = dataclasses.asdict(self.store.driver.options)
        config = {"driver": "s3", "reusable": False, **options}
        self.manager = StoreManager({"probe": {"interval": 3600}, "stores": {"s": config}})
        await self.manager.__aenter__()
        self.store = self.manager["s"]
        await shared.__aexit__(None, None, None)
        await self.store.read(self.get_key(0))


def scenarios(quick: bool) -> list[Scenario]:
    ours = next(c for c in CONTENDERS if c.label == AIOSTORE)
    pair = (
        ours,
        next(c for c in CONTENDERS if c.label == BOTOCORE),
        next(c for c in CONTENDERS if c.label == RAW),
    )
    botocore = next(c for c in CONTENDERS if c.label == BOTOCORE)
    same_calls = (
        ours,
        botocore,
        ContenderSpec(RAW, "benchmarks.bench_s3:RawSameCalls", "baseline"),
    )
    sessions = (ours, ContenderSpec(FRESH, "benchmarks.bench_s3:AiostoreFreshClient", "reference"))
    size = (32 if quick else 256) * MiB
    count = 200 if quick else 2000
    few = 100 if quick else 200
    small = {"size": 0, "count": count, "concurrency": 64}
    return [
        Scenario(
            name="s3-large",
            title=f"{size // MiB} MiB multipart put and streaming get",
            what=f"{size // MiB} MiB in 1 MiB chunks, 8 MiB parts, 4 in flight",
            ops=("put", "get"),
            kind="large",
            contenders=pair,
            params={"size": size, "count": 0, "concurrency": 64},
            timeout=300 if quick else 900,
        ),
        Scenario(
            name="s3-small",
            title=f"4 KiB × {count:,} puts and gets, 64 in flight",
            what=f"{count:,} objects of 4 KiB, 64 in flight",
            ops=("put", "get"),
            kind="small",
            contenders=same_calls,
            params=small,
            warmup=True,
            method_suffix="_small",
            timeout=300 if quick else 900,
        ),
        Scenario(
            name="s3-session",
            title=f"4 KiB × {few:,}: shared client against a new client per operation",
            what=f"{few:,} objects of 4 KiB, 64 in flight",
            ops=("put", "get"),
            kind="small",
            contenders=sessions,
            params={**small, "count": few},
            warmup=True,
            method_suffix="_small",
            timeout=300 if quick else 900,
        ),
    ]


def run(quick: bool, echo: Any = None) -> list[dict[str, Any]]:
    """Measure the three scenarios; rows as described in the module docstring."""
    rounds = 3 if quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="aiostore-bench-s3-"))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    wanted = scenarios(quick)
    group = S3Group(quick, tmp, log_dir)
    # The data the server holds before the run (S3Group.env uploads it).
    group.large_size = wanted[0].params["size"]
    group.small_count = wanted[1].params["count"]
    rows: list[dict[str, Any]] = []
    try:
        with group.env() as env:
            for scenario in wanted:
                # Objects written by a round are deleted after it (untimed).
                scenario.after = group._after
                res = run_scenario(
                    scenario, env, group.server, rounds, log_dir, echo=echo or (lambda s: None)
                )
                errors = [f"{o.spec.label}: {o.error}" for o in res.outcomes if o.error]
                if errors:
                    raise RuntimeError(f"{scenario.name} failed: {'; '.join(errors)}")
                base_label = scenario.contenders[0].label if scenario.name == "s3-session" else RAW
                for op in scenario.ops:
                    for metric in scenario.metrics(with_server=False):
                        base = res.summary(op, base_label, metric)
                        for spec in scenario.contenders:
                            s = res.summary(op, spec.label, metric)
                            if s is None:
                                continue
                            ratio = (
                                s["median"] / base["median"] if base and base["median"] else None
                            )
                            rows.append(
                                {
                                    "scenario": f"{scenario.name}/{op}",
                                    "contender": spec.label,
                                    "metric": f"{metric.name} ({metric.unit})",
                                    "value": s["median"],
                                    "ratio": ratio,
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
    parser.add_argument("--quick", action="store_true", help="32 MiB, 200 objects, 3 rounds")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    rows = run(args.quick, echo=lambda s: print(s, file=sys.stderr))
    print(rows_table(rows, widths=(14, 26, 26)))
    print()
    print("ratio: over raw aiobotocore (s3-session: over aiostore with its shared client)")
    print("\n".join(target_verdicts(rows, TARGETS, contender=AIOSTORE)))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
