"""``python -m benchmarks [--quick] [--only SCENARIO[,…]] [--out DIR]``: aiostore against its peers.

Every scenario runs every installed contender on the same data against the same server in the
same run, interleaved, and reports medians (min–max) with ratios to aiostore. Results go to
``DIR/latest.md`` (and ``DIR/latest.png`` when matplotlib is installed) — ``DIR/quick.md`` and
``DIR/quick.png`` for a ``--quick`` run, which never overwrites the full run's results; see
``docs/performance.md`` for the method and what limits each scenario.

Exit status: 0 when the run completed, whatever optional peer was missing or failing (they are
skipped with a note); 1 on a harness error, or when aiostore or a baseline that is a dependency
of aiostore (raw aiofiles, aiobotocore, aiohttp, anyio, plain Python) failed — the run could not
measure what it exists to measure. A contender whose driver module does not exist yet is
skipped, not failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import _harness as h

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _groups() -> list[type[h.Group]]:
    from .bench_azure import AzureGroup
    from .bench_gcs import GCSGroup
    from .peers_file import FileGroup
    from .peers_http import HttpGroup
    from .peers_memory import MemoryGroup
    from .peers_s3 import S3Group

    return [FileGroup, S3Group, HttpGroup, MemoryGroup, AzureGroup, GCSGroup]


# -- targets ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """aiostore's ``metric`` on ``scenario/op`` against ``against`` (a ratio bound), or against
    an absolute ``bound`` when ``against`` is None. ``stat``: which statistic of aiostore's runs
    is judged (the peak RSS target is judged on the worst run)."""

    scenario: str
    op: str
    metric: h.Metric
    bound: float
    against: str | None = None
    source: str = "issue #9"
    stat: str = "median"

    def describe(self) -> str:
        sign = "≥" if self.metric.higher_is_better else "≤"
        what = f"{self.scenario} {self.op} {self.metric.name}"
        if self.against is None:
            worst = " (worst run)" if self.stat == "max" else ""
            return f"{what}{worst} {sign} {self.bound:g} {self.metric.unit}"
        return f"{what} {sign} {self.bound:g}× {self.against}"


def targets() -> list[Target]:
    t: list[Target] = []
    for op in ("put", "get"):
        t.append(Target("file-large", op, h.THROUGHPUT, 0.8, "plain blocking Python"))
    t.append(Target("file-large", "put", h.THROUGHPUT, 1.8, "plain blocking Python", "goal"))
    three = "ref: 3-thread overlap (md5 ‖ sha256 ‖ write)"
    t.append(Target("file-large", "put", h.THROUGHPUT, 1.6, "plain blocking Python", "issue #16"))
    t.append(Target("file-large", "put", h.THROUGHPUT, 0.86, three, "issue #16"))
    t.append(Target("file-large", "put", h.CPU_OBJ, 1.2, "plain blocking Python", "issue #16"))
    for op in ("put", "get"):
        t.append(Target("file-small", op, h.OPS, 1.0, "raw aiofiles"))
    for op in ("put", "get"):
        t.append(Target("s3-large", op, h.THROUGHPUT, 0.95, "raw aiobotocore"))
        t.append(Target("s3-small", op, h.OPS, 0.95, "raw aiobotocore"))
        t.append(Target("s3-small", op, h.CPU_OP, 1.1, "raw aiobotocore", "goal"))
        t.append(Target("s3-small", op, h.CPU_OP, 1.5, "obstore", "issue #16"))
    t.append(Target("s3-large", "put", h.THROUGHPUT, 1.0, "raw aiobotocore", "issue #16"))
    t.append(Target("s3-large", "get", h.CPU_OBJ, 1.1, "raw aiobotocore", "goal"))
    t.append(Target("http-large", "get", h.THROUGHPUT, 0.9, "raw aiohttp"))
    t.append(Target("http-large", "get", h.THROUGHPUT, 0.95, "raw aiohttp", "goal"))
    t.append(Target("http-small", "get", h.OPS, 0.9, "raw aiohttp"))
    t.append(Target("http-small", "get", h.CPU_OP, 1.2, "raw aiohttp", "goal"))
    t.append(Target("http-small", "get", h.CPU_OP, 1.1, "raw aiohttp", "issue #16"))
    for sc, ops in (("file-large", "put get"), ("s3-large", "put get"), ("http-large", "get")):
        for op in ops.split():
            t.append(Target(sc, op, h.RSS, 64, stat="max"))
    t.append(Target("memory", "check-routine", h.LATENCY, 1.0, source="goal"))
    t.append(Target("memory", "read", h.LATENCY, 1.1, "memory driver session (direct)", "goal"))
    t.append(Target("memory", "check-routine", h.LATENCY, 0.25, source="issue #16"))
    t.append(Target("memory", "read", h.LATENCY, 1.5, source="issue #16"))
    return t


def judge(target: Target, results: dict[str, h.ScenarioResult]) -> dict[str, Any] | None:
    res = results.get(target.scenario)
    if res is None:
        return None
    mine = res.summary(target.op, "aiostore", target.metric)
    row: dict[str, Any] = {"target": target, "aiostore": mine, "other": None, "value": None}
    if mine is None:
        row["verdict"] = "not measured (aiostore skipped or failed)"
        return row
    value = mine[target.stat]
    if target.against is None:
        row["value"] = value
        ok = value >= target.bound if target.metric.higher_is_better else value <= target.bound
    else:
        other = res.summary(target.op, target.against, target.metric)
        row["other"] = other
        if other is None or not other["median"]:
            row["verdict"] = f"not measured ({target.against} missing)"
            return row
        row["value"] = value / other["median"]
        ok = (
            row["value"] >= target.bound
            if target.metric.higher_is_better
            else row["value"] <= target.bound
        )
    row["verdict"] = "met" if ok else "**missed**"
    return row


def targets_table(results: dict[str, h.ScenarioResult]) -> list[str]:
    lines = [
        "| target | source | aiostore | reference | ratio / value | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for target in targets():
        row = judge(target, results)
        if row is None:
            continue
        m = target.metric
        mine = row["aiostore"]
        mine_s = f"{h.fmt(mine[target.stat], m.fmt)} {m.unit}" if mine else "—"
        other = row["other"]
        other_s = f"{h.fmt(other['median'], m.fmt)} {m.unit}" if other else "—"
        if row["value"] is None:
            val = "—"
        elif target.against is None:
            val = f"{h.fmt(row['value'], m.fmt)} {m.unit}"
        else:
            val = h.fmt_ratio(row["value"])
        lines.append(
            f"| {target.describe()} | {target.source} | {mine_s} | {other_s} | {val} |"
            f" {row['verdict']} |"
        )
    return lines


# -- the run ---------------------------------------------------------------------------------


def _selected(only: Sequence[str] | None, group: h.Group, scenario: h.Scenario) -> bool:
    if not only:
        return True
    return any(name in (scenario.name, group.name, "all") for name in only)


def run(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    only = [n.strip() for arg in (args.only or []) for n in arg.split(",") if n.strip()]
    rounds = args.rounds or (3 if args.quick else 5)
    if rounds < 1:
        raise SystemExit("--rounds must be ≥ 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="aiostore-bench-", dir=args.tmp))
    log_dir = tmp / "logs"
    log_dir.mkdir()
    results: list[h.ScenarioResult] = []
    harness_errors: list[str] = []
    group_notes: list[str] = []
    known: set[str] = {"all"}
    echo(f"aiostore benchmarks ({'quick' if args.quick else 'full'}, {rounds} rounds) in {tmp}")
    try:
        for group_cls in _groups():
            group = group_cls(args.quick, tmp, log_dir)
            known.add(group.name)
            known.update(s.name for s in group.scenarios)
            chosen = [s for s in group.scenarios if _selected(only, group, s)]
            if not chosen:
                continue
            echo(f"[{group.name}] setting up")
            try:
                with group.env() as env:
                    for scenario in chosen:
                        res = h.run_scenario(scenario, env, group.server, rounds, log_dir, echo)
                        results.append(res)
                        echo(f"  {scenario.name}: {res.seconds:.1f}s")
                        for line in h.scenario_table(res) + h.scenario_notes(res):
                            echo("    " + line)
            except h.Skip as exc:
                group_notes.append(f"{group.name} scenarios skipped: {exc}")
                echo(f"[{group.name}] skipped: {exc}")
            except h.HarnessError as exc:
                harness_errors.append(f"{group.name}: {exc}")
                echo(f"[{group.name}] HARNESS ERROR: {exc}")
            group_notes.extend(getattr(group, "notes", []))
        suites = _run_suites(args, only, known, log_dir, echo)
        unknown = [n for n in only if n not in known]
        if unknown:
            harness_errors.append(f"unknown scenario(s): {', '.join(unknown)}")
    finally:
        if args.keep_tmp:
            echo(f"scratch dir kept: {tmp}")
        else:
            h.rmtree(tmp)
    elapsed = time.monotonic() - started
    failed = [
        f"{r.scenario.name}: {o.spec.label}: {o.error}"
        for r in results
        for o in r.outcomes
        if o.error and o.spec.role in ("aiostore", "baseline")
    ]
    md = render(args, rounds, results, suites, elapsed, harness_errors, failed, group_notes, tmp)
    # A quick (CI smoke) run never overwrites the full run's recorded results.
    name = "quick" if args.quick else "latest"
    (out / f"{name}.md").write_text(md)
    note = h.write_png(results, out / f"{name}.png")
    echo("")
    echo("\n".join(targets_table({r.scenario.name: r for r in results})))
    echo(f"\nwrote {out / name}.md" + (f" ({note})" if note else f" and {out / name}.png"))
    echo(f"total {elapsed:.0f}s")
    for line in harness_errors + failed:
        echo(f"FAILED: {line}")
    return 1 if harness_errors or failed else 0


def _run_suites(
    args: argparse.Namespace,
    only: list[str],
    known: set[str],
    log_dir: Path,
    echo: Callable[[str], None],
) -> list[h.SuiteResult]:
    """The driver owners' ``benchmarks/bench_*.py`` suites: run in full runs (or with
    ``--suites``); in quick runs only imported and checked, to keep CI under two minutes."""
    names = h.available_suites()
    known.update(["suites", *names])
    chosen = [n for n in names if not only or any(x in (n, "suites", "all") for x in only)]
    if args.suites is False or not chosen:
        return []
    check_only = args.quick and not args.suites
    out = []
    for name in chosen:
        echo(f"[suite] {name}" + (" (import and interface check only)" if check_only else ""))
        res = h.run_suite(name, args.quick, 300 if args.quick else 3600, log_dir, check_only)
        out.append(res)
        if res.error:
            echo(f"  {name}: error — {res.error}")
        else:
            echo(f"  {name}: {len(res.rows)} rows in {res.seconds:.1f}s")
            for line in h.suite_table(res) if res.rows else []:
                echo("    " + line)
    return out


def render(
    args: argparse.Namespace,
    rounds: int,
    results: list[h.ScenarioResult],
    suites: list[h.SuiteResult],
    elapsed: float,
    harness_errors: list[str],
    failed: list[str],
    group_notes: list[str],
    tmp: Path,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    mode = "quick" if args.quick else "full"
    lines = [
        "# aiostore against its peers — latest run",
        "",
        f"`python -m benchmarks {argv}`".replace(" `", "`") + f" — {mode} mode, {rounds} rounds "
        f"per contender, {now}, {elapsed:.0f} s in all.",
        "",
        "Each cell is the **median** of the rounds with (min–max); `× aiostore` is the contender's"
        " median divided by aiostore's (↑ higher is better, ↓ lower is better). Contenders run"
        " interleaved, each in a fresh process of its own; servers run in processes of their own."
        " Method and analysis: [docs/performance.md](../../docs/performance.md).",
        "",
    ]
    if args.quick:
        lines += [
            "> **Quick mode** (CI smoke run): small objects and few rounds — the ratios are noisy"
            " and the large-object numbers are not representative. Run without `--quick` for"
            " the numbers quoted in the docs.",
            "",
        ]
    lines += ["## Machine", ""]
    lines += [f"- **{k}**: {v}" for k, v in h.machine(tmp.parent).items()]
    lines += ["", "## Targets", ""]
    lines += targets_table({r.scenario.name: r for r in results})
    if harness_errors or failed:
        lines += ["", "**Run problems:**", ""] + [f"- {x}" for x in harness_errors + failed]
    for res in results:
        sc = res.scenario
        lines += ["", f"## {sc.name} — {sc.title}", "", sc.what, ""]
        lines += h.scenario_table(res)
        notes = h.scenario_notes(res)
        if notes:
            lines += ["", *notes]
    if suites:
        lines += [
            "",
            "## The driver owners' suites",
            "",
            "`benchmarks/bench_*.py`, each run as its own `run(quick)` in a subprocess: aiostore"
            " against the raw code doing the same work, in each suite's own method. `ratio` is as"
            " each suite defines it (see its docstring).",
        ]
        for res in suites:
            lines += ["", f"### {res.name} — {res.summary}", ""]
            if res.error:
                lines.append(f"**error** — {res.error}")
            elif res.checked_only:
                lines.append("Quick mode: imported and interface-checked only (`--suites` runs it)")
            else:
                lines += [*h.suite_table(res), "", f"({res.seconds:.0f} s)"]
    if group_notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in group_notes]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description="aiostore against its peers, as ratios."
    )
    p.add_argument("--quick", action="store_true", help="small sizes, 3 rounds (CI: < 2 min)")
    p.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help="run only these scenarios or groups (comma-separated, repeatable): file, file-large,"
        " file-small, s3, s3-large, s3-small, http, http-large, http-small, memory, suites,"
        " bench_core, bench_file, …",
    )
    p.add_argument(
        "--out", default=str(DEFAULT_OUT), help="output directory (default: %(default)s)"
    )
    p.add_argument(
        "--suites",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the driver owners' benchmarks/bench_*.py suites too (default: in full runs;"
        " quick runs only import-check them)",
    )
    p.add_argument("--rounds", type=int, help="rounds per contender (default: 5, quick: 3)")
    p.add_argument("--tmp", help="parent of the scratch directory (default: the system's temp)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the scratch dir and worker logs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--worker"]:
        h.worker_main()
        return 0
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("HARNESS ERROR (see the traceback above)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
