"""The benchmark harness: contenders in worker processes, interleaved rounds, medians, output.

Method (see ``/work/shared/PERFORMANCE.md`` and ``docs/performance.md``):

* every contender of a scenario runs in a **fresh worker process of its own**, started once per
  scenario and kept for all of its rounds: imports and connection set-up are not timed, and its
  peak RSS (``VmHWM``) is its own — the HWM is reset (``/proc/self/clear_refs``) before each
  measured operation, so the growth is "peak during the operation minus RSS before it";
* rounds are **interleaved** (A B C, then C B A, …): every contender sees the same server, the
  same data and the same drift of kernel state, and the order alternates each round;
* one worker runs at a time: the others wait on their stdin, using no CPU;
* we report the **median** of the rounds plus min–max; client CPU is the worker's process CPU
  time (all its threads, Rust runtimes included) ÷ operations; servers run in processes of their
  own and their CPU is read from ``/proc/PID/stat``.

Workers speak JSON lines: the parent sends the contender spec, then ``{"op", "round"}`` commands;
the worker answers each with ``{"wall", "cpu", "units", "rss"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib
import importlib.metadata
import inspect
import json
import math
import os
import platform
import queue
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

KiB: Final = 1024
MiB: Final = 1024 * 1024
GiB: Final = 1024 * MiB
ROOT: Final = Path(__file__).resolve().parent.parent
#: Seconds a worker may take to import its library, connect and prepare.
SETUP_TIMEOUT: Final = 120.0
LIBRARIES: Final = (
    "aiostore",
    "aiohttp",
    "aiofiles",
    "anyio",
    "aiobotocore",
    "botocore",
    "obstore",
    "opendal",
    "s3fs",
    "moto",
    "matplotlib",
)


class HarnessError(Exception):
    """A fault of the harness itself (as opposed to a contender failing): exit non-zero."""


class Skip(Exception):
    """Raised by a contender's ``setup`` when it cannot run here (the reason is shown)."""


# -- the data every contender gets ---------------------------------------------------------------


def block(size: int = MiB, seed: int = 9) -> bytes:
    """Deterministic incompressible bytes: the same in every process."""
    return random.Random(seed).randbytes(size)


def small_payload(base: bytes, i: int, size: int = 4 * KiB) -> bytes:
    """Object ``i`` of the small-object scenarios: a distinct ``size``-byte slice of ``base``."""
    off = (i * 4099) % (len(base) - size)
    return base[off : off + size]


def chunks(base: bytes, total: int) -> Iterator[bytes]:
    """``total`` bytes as whole ``len(base)`` chunks (``total`` a multiple of it)."""
    for _ in range(total // len(base)):
        yield base


async def achunks(base: bytes, total: int) -> Any:
    """The same as :func:`chunks`, as an async generator (a streaming put source)."""
    for _ in range(total // len(base)):
        yield base


async def run_limited(count: int, fn: Callable[[int], Awaitable[Any]], limit: int) -> None:
    """``fn(0) … fn(count - 1)`` with at most ``limit`` in flight (the same runner for all)."""
    it = iter(range(count))

    async def lane() -> None:
        for i in it:
            await fn(i)

    await asyncio.gather(*(lane() for _ in range(min(limit, count))))


# -- contenders (run inside workers) -----------------------------------------------------------


class Contender:
    """One library doing a scenario's operations. Lives in a worker process of its own.

    Operations are methods ``op_<name>(round) -> units`` (bytes moved for large-object scenarios,
    operations done otherwise), sync or async. ``requires`` lists modules that must import; when
    one is missing the contender is skipped with a note instead of failing the run.
    """

    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: dict[str, Any]) -> None:
        self.p = params
        self.env: dict[str, Any] = params.get("env", {})
        self.slug: str = params["slug"]

    def n(self, rnd: int) -> int:
        """Objects a small-object operation handles: ``count``, or just enough to open every
        connection in the warm-up round (``rnd == -1``)."""
        count = int(self.p.get("count", 0))
        return count if rnd >= 0 else min(count, int(self.p.get("concurrency", 64)))

    async def setup(self) -> None:
        """Open clients, connect, warm caches: nothing here is timed."""

    async def teardown(self) -> None:
        """Close everything (errors here are reported, never fatal)."""


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (0 where there is no /proc: no RSS figures)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _load(target: str) -> type[Contender]:
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Contender), target
    return cls


def worker_main() -> None:
    """Entry point of a worker (``python -m benchmarks --worker``)."""
    # Keep stdout for the protocol only: anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    spec = json.loads(sys.stdin.readline())
    with asyncio.Runner() as runner:
        try:
            cls = _load(spec["target"])
            for mod in cls.requires:
                importlib.import_module(mod)
            contender = cls(spec["params"])
            runner.run(contender.setup())
        except (ImportError, Skip) as exc:
            send({"skip": f"{type(exc).__name__}: {exc}"})
            return
        except Exception as exc:
            send({"error": _short_error(exc), "trace": traceback.format_exc()})
            return
        send({"ready": True, "pid": os.getpid()})
        resettable = _reset_hwm()
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("quit"):
                break
            try:
                send(
                    _measure(
                        runner, contender, cmd["op"], cmd["round"], resettable, cmd.get("repeat", 1)
                    )
                )
            except Exception as exc:
                send({"error": _short_error(exc), "trace": traceback.format_exc()})
        try:
            runner.run(contender.teardown())
        except Exception as exc:
            print(f"teardown of {spec['target']} failed: {exc!r}", file=sys.stderr)


def _measure(
    runner: asyncio.Runner,
    contender: Contender,
    op: str,
    rnd: int,
    resettable: bool,
    repeat: int = 1,
) -> dict[str, Any]:
    op = op.replace("-", "_")
    fn = getattr(contender, f"op_{op}", None)
    if fn is None:
        return {"absent": True}  # this contender does not do this operation
    gc.collect()
    hwm0 = _status_kib("VmHWM")
    if resettable:
        _reset_hwm()  # VmHWM := VmRSS now
    rss0 = _status_kib("VmRSS")
    if inspect.iscoroutinefunction(fn):

        async def repeated() -> int:
            return sum([await fn(rnd) for _ in range(repeat)])

        c0, t0 = time.process_time(), time.perf_counter()
        units = runner.run(repeated())
        t1, c1 = time.perf_counter(), time.process_time()
    else:
        c0, t0 = time.process_time(), time.perf_counter()
        units = sum([fn(rnd) for _ in range(repeat)])
        t1, c1 = time.perf_counter(), time.process_time()
    hwm = _status_kib("VmHWM")
    after = getattr(contender, f"after_{op}", None)
    if after is not None:  # untimed clean-up
        res = after(rnd)
        if inspect.isawaitable(res):
            runner.run(_awaited(res))
    # Without a resettable HWM, growth is only visible above the previous peak.
    growth = hwm - rss0 if resettable else max(0, hwm - hwm0)
    return {
        "wall": t1 - t0,
        "cpu": c1 - c0,
        "units": int(units),
        "rss": growth * KiB,
        "repeat": repeat,
    }


async def _awaited(aw: Awaitable[Any]) -> Any:
    return await aw


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


# -- the parent's side of a worker ------------------------------------------------------------


class Worker:
    """A worker process running one contender; commands go one at a time."""

    def __init__(self, target: str, params: dict[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=env,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._send({"target": target, "params": params})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next answer; a dead, silent or garbled worker becomes ``{"error": ...}``."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return {"error": f"no answer within {timeout:.0f}s (worker killed)"}
        if line is None:
            self.proc.wait()
            return {"error": f"worker exited with status {self.proc.returncode}: {self.tail()}"}
        try:
            msg = json.loads(line)
        except ValueError:
            return {"error": f"garbled answer {line[:200]!r}"}
        assert isinstance(msg, dict)
        return msg

    def call(self, op: str, rnd: int, timeout: float, repeat: int = 1) -> dict[str, Any]:
        """Run ``op`` (``repeat`` times back to back, measured as one) and return the answer."""
        if self.proc.poll() is not None:
            return {"error": f"worker is gone (status {self.proc.returncode}): {self.tail()}"}
        try:
            self._send({"op": op, "round": rnd, "repeat": repeat})
        except (BrokenPipeError, OSError) as exc:
            return {"error": f"worker is gone: {exc}"}
        return self.receive(timeout)

    def tail(self, lines: int = 6) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"quit": True})
                self.proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self._log.close()


# -- servers in processes of their own --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server we started (moto, the static HTTP server): its pid, its CPU time, its end."""

    def __init__(self, argv: Sequence[str], url: str, log_path: Path, ready_timeout: float = 60):
        self.url = url
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log_path = log_path
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise HarnessError(f"{argv[2] if len(argv) > 2 else argv[0]} exited at start-up")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers: good enough
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise HarnessError(f"server at {url} did not answer in {ready_timeout}s")
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server process (all its threads) so far."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # After the ")": state is field 3, utime 14, stime 15 (1-based in proc(5)).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# -- scenarios ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ContenderSpec:
    """A contender of a scenario. ``role``: "aiostore", "baseline" (a required dependency: its
    failure fails the run), "peer" (optional: skipped when missing or failing), "reference"."""

    label: str
    target: str
    role: str = "peer"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")


@dataclasses.dataclass(frozen=True)
class Metric:
    """``value(run)`` for one round; tables show ``stat`` of the rounds (the median, or the worst
    round for peak RSS) and a ratio to aiostore's when aiostore's is at least ``floor``."""

    name: str
    unit: str
    higher_is_better: bool
    value: Callable[[dict[str, Any]], float | None]
    fmt: str = "{:.3g}"
    stat: str = "median"
    floor: float = 0.0

    def ratio(self, s: dict[str, float] | None, base: dict[str, float] | None) -> float | None:
        if s is None or base is None or not base[self.stat] or base[self.stat] < self.floor:
            return None
        return s[self.stat] / base[self.stat]


def _per_obj(m: dict[str, Any], key: str, scale: float) -> float | None:
    v = m.get(key)
    return None if v is None else v / m["objects"] * scale


THROUGHPUT: Final = Metric("throughput", "MB/s", True, lambda m: m["units"] / m["wall"] / 1e6)
OPS: Final = Metric("rate", "ops/s", True, lambda m: m["units"] / m["wall"])
LATENCY: Final = Metric("time", "µs/op", False, lambda m: m["wall"] / m["units"] * 1e6)
CPU_OBJ: Final = Metric("client CPU", "s/object", False, lambda m: _per_obj(m, "cpu", 1))
CPU_OP: Final = Metric("client CPU", "ms/op", False, lambda m: _per_obj(m, "cpu", 1e3))
SRV_OBJ: Final = Metric("server CPU", "s/object", False, lambda m: _per_obj(m, "server_cpu", 1))
SRV_OP: Final = Metric("server CPU", "ms/op", False, lambda m: _per_obj(m, "server_cpu", 1e3))
RSS: Final = Metric("peak RSS growth", "MiB", False, lambda m: m["rss"] / MiB, "{:.1f}", "max", 1.0)


@dataclasses.dataclass
class Scenario:
    """One scenario: the same operations done by every contender on the same data and server.

    ``kind``: "large" (one object per operation: MB/s, CPU s/object, peak RSS growth), "small"
    (``count`` objects per operation: ops/s, CPU ms/op) or "micro" (µs/op, ops/s).
    """

    name: str
    title: str
    what: str
    ops: tuple[str, ...]
    kind: str
    contenders: tuple[ContenderSpec, ...]
    params: dict[str, Any]
    group: str = ""
    warmup: bool = False
    timeout: float = 300.0
    #: Contender methods are ``op_<op><method_suffix>`` (one class can serve two scenarios).
    method_suffix: str = ""
    #: Operations run several times back to back per measurement (fast large gets: a single
    #: one lasts tens of milliseconds, too short to time on a busy machine). Per object metrics
    #: divide by it.
    repeat: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Called in the parent after every measured operation (cleanup, sync): (env, spec, op, round).
    after: Callable[[dict[str, Any], ContenderSpec, str, int], None] | None = None

    def metrics(self, with_server: bool) -> list[Metric]:
        if self.kind == "large":
            return [THROUGHPUT, CPU_OBJ, RSS] + ([SRV_OBJ] if with_server else [])
        if self.kind == "small":
            return [OPS, CPU_OP] + ([SRV_OP] if with_server else [])
        return [LATENCY, OPS]


class Group:
    """Scenarios sharing an environment (a temp dir, a server); ``env()`` sets it up."""

    name: str = ""
    scenarios: list[Scenario]

    def __init__(self, quick: bool, tmp: Path, log_dir: Path) -> None:
        self.quick = quick
        self.tmp = tmp
        self.log_dir = log_dir
        self.server: ServerProcess | None = None

    @contextlib.contextmanager
    def env(self) -> Iterator[dict[str, Any]]:
        yield {}


# -- running ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """Everything measured for one (scenario, contender)."""

    spec: ContenderSpec
    runs: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ScenarioResult:
    scenario: Scenario
    outcomes: list[Outcome]
    with_server: bool
    seconds: float = 0.0

    def outcome(self, label: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.spec.label == label), None)

    def summary(self, op: str, label: str, metric: Metric) -> dict[str, float] | None:
        o = self.outcome(label)
        if o is None or not o.runs.get(op):
            return None
        values = [v for m in o.runs[op] if (v := metric.value(m)) is not None]
        if not values:
            return None
        return {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }

    def rows(self) -> list[dict[str, Any]]:
        """The flat rows (the same shape as the bench_* modules' ``run()``)."""
        out = []
        for op in self.scenario.ops:
            for metric in self.scenario.metrics(self.with_server):
                base = self.summary(op, "aiostore", metric)
                for o in self.outcomes:
                    s = self.summary(op, o.spec.label, metric)
                    if s is None:
                        continue
                    out.append(
                        {
                            "scenario": f"{self.scenario.name}/{op}",
                            "contender": o.spec.label,
                            "metric": f"{metric.name} ({metric.unit})",
                            "value": s[metric.stat],
                            "min": s["min"],
                            "max": s["max"],
                            "n": s["n"],
                            "ratio": metric.ratio(s, base),
                        }
                    )
        return out


def run_scenario(
    scenario: Scenario,
    env: dict[str, Any],
    server: ServerProcess | None,
    rounds: int,
    log_dir: Path,
    echo: Callable[[str], None] = print,
) -> ScenarioResult:
    """Start one worker per contender, run ``rounds`` interleaved rounds, collect everything."""
    started = time.monotonic()
    outcomes = [Outcome(spec) for spec in scenario.contenders]
    workers: dict[str, Worker] = {}
    try:
        for o in outcomes:
            params = {**scenario.params, "env": env, "slug": o.spec.slug}
            log = log_dir / f"{scenario.name}.{o.spec.slug}.log"
            workers[o.spec.label] = Worker(o.spec.target, params, log)
        for o in outcomes:
            w = workers[o.spec.label]
            msg = w.receive(timeout=min(scenario.timeout, SETUP_TIMEOUT))
            if "skip" in msg:
                o.skipped = msg["skip"]
            elif "error" in msg:
                o.error = f"set-up failed: {msg['error']}"
                _log_trace(w, msg)
            if o.skipped or o.error:
                w.close()
                del workers[o.spec.label]
        active = [o for o in outcomes if o.spec.label in workers]
        echo(
            f"  {scenario.name}: "
            + ", ".join(o.spec.label for o in active)
            + "".join(f"; {o.spec.label} skipped" for o in outcomes if o.skipped)
            + "".join(f"; {o.spec.label} FAILED" for o in outcomes if o.error)
        )
        schedule = ([-1] if scenario.warmup else []) + list(range(rounds))
        for rnd in schedule:
            # Alternate the order every round: kernel state and server state drift.
            order = active if rnd % 2 == 0 else active[::-1]
            for op in scenario.ops:
                for o in order:
                    if o.error or o.spec.label not in workers:
                        continue
                    w = workers[o.spec.label]
                    cpu0 = server.cpu_seconds() if server else None
                    repeat = scenario.repeat.get(op, 1)
                    method = op + scenario.method_suffix
                    msg = w.call(method, rnd, scenario.timeout * repeat, repeat)
                    cpu1 = server.cpu_seconds() if server else None
                    if scenario.after is not None:
                        scenario.after(env, o.spec, op, rnd)
                    if "error" in msg:
                        o.error = f"{op} (round {rnd}) failed: {msg['error']}"
                        _log_trace(w, msg)
                        w.close()
                        del workers[o.spec.label]
                        continue
                    if rnd < 0 or msg.get("absent"):
                        continue  # warm-up, or an operation this contender does not do
                    large = scenario.kind == "large"
                    msg["objects"] = msg.get("repeat", 1) if large else msg["units"]
                    if cpu0 is not None and cpu1 is not None:
                        msg["server_cpu"] = cpu1 - cpu0
                    o.runs.setdefault(op, []).append(msg)
    finally:
        for w in workers.values():
            w.close()
    return ScenarioResult(scenario, outcomes, server is not None, time.monotonic() - started)


def _log_trace(w: Worker, msg: dict[str, Any]) -> None:
    if msg.get("trace"):
        with open(w.log_path, "a") as f:
            f.write(msg["trace"])


# -- the machine ---------------------------------------------------------------------------


def machine(tmp: Path | None = None) -> dict[str, str]:
    """CPU, memory, kernel, Python, library versions, file system of the scratch dir, commit."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / MiB:.1f} GiB"
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    versions = []
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib} {importlib.metadata.version(lib)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{lib} (not installed)")
    info = {
        "CPU": f"{os.cpu_count()} CPUs ({usable} usable), {model}",
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": ", ".join(versions),
    }
    if tmp is not None:
        info["scratch dir"] = f"{tmp} ({_fs_type(tmp)})"
    commit = _git("rev-parse", "--short", "HEAD")
    if commit:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        info["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    return info


def _fs_type(path: Path) -> str:
    best, fstype = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fstype = parts[1], f"{parts[2]} on {parts[0]}"
    return fstype


def _git(*args: str) -> str:
    try:
        res = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


# -- output ----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = "{:.3g}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return spec.format(value)


def fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def scenario_table(res: ScenarioResult) -> list[str]:
    """A Markdown table: one row per (operation, contender), median (min–max) and × aiostore."""
    sc = res.scenario
    metrics = sc.metrics(res.with_server)
    head = ["op", "contender"]
    for m in metrics:
        worst = ", worst round" if m.stat == "max" else ""
        head += [f"{m.name} ({m.unit}{worst}) {'↑' if m.higher_is_better else '↓'}", "× aiostore"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in sc.ops:
        for o in res.outcomes:
            if not o.runs.get(op):
                continue
            cells = [op, f"**{o.spec.label}**" if o.spec.role == "aiostore" else o.spec.label]
            for m in metrics:
                s = res.summary(op, o.spec.label, m)
                base = res.summary(op, "aiostore", m)
                if s is None:
                    cells += ["—", "—"]
                    continue
                cells.append(
                    f"{fmt(s[m.stat], m.fmt)} ({fmt(s['min'], m.fmt)}–{fmt(s['max'], m.fmt)})"
                )
                cells.append(fmt_ratio(m.ratio(s, base)))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def scenario_notes(res: ScenarioResult) -> list[str]:
    notes = []
    for o in res.outcomes:
        if o.skipped:
            notes.append(f"- {o.spec.label}: skipped — {o.skipped}")
        if o.error:
            notes.append(f"- {o.spec.label}: **error** — {o.error}")
        notes.extend(f"- {o.spec.label}: {n}" for n in o.notes)
    return notes


def write_png(results: Sequence[ScenarioResult], path: Path) -> str | None:
    """Bar charts (median with min–max whiskers) of each scenario's main metrics, aiostore
    highlighted. Returns a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    panels: list[tuple[ScenarioResult, str, Metric]] = []
    for res in results:
        metrics = res.scenario.metrics(res.with_server)
        shown = metrics[:1] if res.scenario.kind != "small" else metrics[:2]
        if res.scenario.kind == "large":
            shown = [metrics[0], RSS]
        panels += [(res, op, m) for op in res.scenario.ops for m in shown]
    panels = [p for p in panels if any(o.runs.get(p[1]) for o in p[0].outcomes)]
    if not panels:
        return "nothing measured: no chart"
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (res, op, m) in zip(axes.flat, panels, strict=False):
        labels, med, lo, hi, colors = [], [], [], [], []
        for o in res.outcomes:
            s = res.summary(op, o.spec.label, m)
            if s is None:
                continue
            labels.append(o.spec.label)
            med.append(s[m.stat])
            lo.append(s[m.stat] - s["min"])
            hi.append(s["max"] - s[m.stat])
            colors.append(
                {"aiostore": "#d1495b", "reference": "#a0a0a0"}.get(o.spec.role, "#66a182")
            )
        y = range(len(labels))
        ax.barh(y, med, xerr=[lo, hi], color=colors, capsize=3)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        arrow = "higher is better" if m.higher_is_better else "lower is better"
        worst = ", worst round" if m.stat == "max" else ""
        ax.set_title(f"{res.scenario.name} {op}: {m.name} ({m.unit}{worst}), {arrow}", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- the driver owners' suites (benchmarks/bench_*.py) ----------------------------------------

SUITES: Final = ("bench_core", "bench_probe", "bench_file", "bench_s3", "bench_http")

_SUITE_CODE: Final = """
import json, os, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
import benchmarks.{name} as suite
if {check_only}:
    import inspect
    params = list(inspect.signature(suite.run).parameters)
    assert params[:1] == ["quick"], f"run() takes {{params}}, not (quick)"
    rows = []
else:
    rows = suite.run({quick})
out.write(json.dumps(rows, default=str))
out.flush()
"""


@dataclasses.dataclass
class SuiteResult:
    """What one ``benchmarks/bench_*.py`` module's ``run(quick)`` returned (or why not)."""

    name: str
    summary: str
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    checked_only: bool = False


def available_suites() -> list[str]:
    here = Path(__file__).resolve().parent
    return [name for name in SUITES if (here / f"{name}.py").exists()]


def run_suite(
    name: str, quick: bool, timeout: float, log_dir: Path, check_only: bool = False
) -> SuiteResult:
    """Run ``benchmarks/<name>.py``'s ``run(quick)`` in a subprocess of its own (it may start
    servers and subprocesses of its own); ``check_only``: import it and check ``run``'s
    signature, nothing more (CI's quick run, so the interface cannot rot silently)."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    summary = _first_line(path)
    res = SuiteResult(name, summary, checked_only=check_only)
    code = _SUITE_CODE.format(name=name, quick=quick, check_only=check_only)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    started = time.monotonic()
    log_path = log_dir / f"suite.{name}.log"
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            res.error = f"did not finish within {timeout:.0f}s"
            res.seconds = time.monotonic() - started
            return res
    res.seconds = time.monotonic() - started
    tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-4:])
    if proc.returncode != 0:
        res.error = f"exited with status {proc.returncode}: {tail}"[:600]
        return res
    try:
        rows = json.loads(proc.stdout)
        assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    except (ValueError, AssertionError):
        res.error = f"run() did not return a list of dicts: {proc.stdout[:200]!r}"
        return res
    res.rows = rows
    return res


def _first_line(path: Path) -> str:
    try:
        import ast

        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    except (OSError, SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def suite_table(res: SuiteResult) -> list[str]:
    keys = ["scenario", "contender", "metric", "value", "ratio"]
    seen = {k for r in res.rows for k in r} - set(keys)
    extra = [k for k in ("min", "max", "n") if k in seen] + sorted(seen - {"min", "max", "n"})
    head = keys + extra
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in res.rows:
        cells = []
        for k in head:
            v = r.get(k)
            number = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(fmt(v) if number else "—" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def target_verdicts(
    rows: list[dict[str, Any]],
    targets: Iterable[tuple[str | None, Metric, float, bool]],
    *,
    contender: str,
) -> list[str]:
    """One line per (target, matching row): met or missed. A target is (scenario prefix or None
    for any scenario, metric, ratio bound, True for "at least" / False for "at most")."""
    lines = []
    for scenario, metric, target, at_least in targets:
        name = f"{metric.name} ({metric.unit})"
        for row in rows:
            if (
                row["contender"] != contender
                or row["metric"] != name
                or (scenario is not None and not row["scenario"].startswith(scenario + "/"))
                or row["ratio"] is None
            ):
                continue
            ratio = row["ratio"]
            ok = ratio >= target if at_least else ratio <= target
            sign = "≥" if at_least else "≤"
            lines.append(
                f"{'ok  ' if ok else 'MISS'} {row['scenario']}: {name} {contender} {ratio:.2f}× raw"
                f" (target {sign} {target}×)"
            )
    return lines


def rows_table(
    rows: list[dict[str, Any]], *, widths: tuple[int, int, int], ratio_title: str = "ratio"
) -> str:
    """The rows of a ``run()`` as a fixed-width text table (scenario, contender, metric widths)."""
    ws, wc, wm = widths
    head = (
        f"{'scenario':{ws}s} {'contender':{wc}s} {'metric':{wm}s} {'median':>10s} {'min–max':>21s}"
    )
    lines = [head + f" {ratio_title:>6s}"]
    for r in rows:
        span = f"{r['min']:.4g}–{r['max']:.4g}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"{r['scenario']:{ws}s} {r['contender']:{wc}s} {r['metric']:{wm}s} {r['value']:>10.4g}"
            f" {span:>21s} {ratio:>6s}"
        )
    return "\n".join(lines)
