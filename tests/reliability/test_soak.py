"""The torture soak: every fault class at once, on real file systems and servers; one table.

Stores under load, each with workers that own their keys (so the order of writes to a key is
known) and one fault injector:

- ``mem``: the memory driver (cancellations only);
- ``full``: a file store on a small tmpfs that is shrunk to its usage (ENOSPC) and grown back;
- ``ro``: a file store on a bind mount that is remounted read-only (EROFS) and read-write again;
- ``s3``: moto's S3 server behind a fault proxy (resets, 503s, black holes, latency) that is also
  stopped and restarted on the same port;
- ``web``: the ``http`` driver reading, through a second fault proxy, from aiostore's own REST
  object service (restarted on the same port too); its objects are written with a file store
  (``svc``) on the service's root;
- writer processes SIGKILLed in the middle of large puts (``crash_child``) on a file root.

Every operation's outcome goes into a ledger. A read must return, whole, the last acknowledged
version of the key or a later one whose put failed or was cancelled (S3 may complete a request the
client gave up on); an older version means an acknowledged write was lost, bytes of no version mean
a torn read. After every fault heals, the workers of that store read all their keys back and compare
the md5 the put returned; at the end every key is read back once more, and leaked descriptors,
tasks, temporary files and multipart uploads are counted.

The default run is small (~1,000 operations, a few faults of each class, two SIGKILLs); ``--soak``
(``nox -s soak``) runs the full size. ``AIOSTORE_SOAK_OPS``, ``AIOSTORE_SOAK_FAULTS``,
``AIOSTORE_SOAK_KILLS`` and ``AIOSTORE_SOAK_DEADLINE`` override the sizes. Needs root (tmpfs and
bind mounts); every mount is undone in ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import hashlib
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from moto.s3.models import FakeKey, FakeMultipart
from moto.server import ThreadedMotoServer

import aiostore
import aiostore.web
from aiostore import Capability, NotFound, Store, StoreError, StoreManager
from aiostore.testing import CapabilityWaitTimeout, S3Server, wait_for_capability
from tests.support.faultproxy import FaultProxy

from .model import payload, version_of
from .test_cancellation import _fds, _slow_source
from .test_crash import REPO, _check

MiB = 1 << 20
#: Probing fast enough that a fault is seen, and a heal restored, within a fraction of a second.
PROBE = {"interval": 0.25, "timeout": 10.0, "failures_to_revoke": 1, "successes_to_restore": 1}
#: Keys per worker.
KEYS = 6
#: An operation slower than this is counted as hung (and the soak fails).
HUNG = 90.0
#: Seconds to wait for a store to heal, or for a worker to read its keys back.
HEAL_TIMEOUT = 120.0
FULL_TMPFS = "64m"
#: Fault classes, their share of the fault target, and the table's label.
CLASSES: dict[str, tuple[float, str]] = {
    "ENOSPC": (0.10, "ENOSPC (tmpfs shrunk to its usage)"),
    "EROFS": (0.10, "EROFS (bind mount remounted ro)"),
    "reset": (0.15, "connection resets (proxy)"),
    "503": (0.15, "503 SlowDown (proxy)"),
    "black hole": (0.04, "black holes (proxy)"),
    "latency": (0.15, "latency 50-300 ms (proxy)"),
    "server down/up": (0.04, "server down/up (same port)"),
    "cancellation": (0.27, "cancellations (1x, 2x, timeout, group)"),
}
NETWORK = ("reset", "503", "black hole", "latency", "server down/up")
PROXY_MODE = {"reset": "reset", "503": "503", "black hole": "blackhole", "latency": "latency"}
CHECKS = (
    ("lost", "acknowledged writes lost"),
    ("torn", "acknowledged writes torn (or reads of no version)"),
    ("fds", "leaked file descriptors"),
    ("tasks", "leaked asyncio tasks"),
    ("temp files", "leaked temporary files"),
    ("uploads", "leaked multipart uploads"),
    ("unexpected", "errors outside aiostore's StoreError"),
    ("hung", f"operations hung > {HUNG:.0f} s"),
    ("unverified", "read-backs that never succeeded"),
)


# -- size ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    label: str
    ops: int
    kills: int
    targets: dict[str, int]
    deadline: float

    @classmethod
    def from_config(cls, config: pytest.Config) -> Size:
        full = bool(config.getoption("--soak"))
        env = os.environ.get
        faults = int(env("AIOSTORE_SOAK_FAULTS", "1100" if full else "40"))
        return cls(
            label="full" if full else "short",
            ops=int(env("AIOSTORE_SOAK_OPS", "100000" if full else "1000")),
            kills=int(env("AIOSTORE_SOAK_KILLS", "24" if full else "2")),
            targets={c: max(2, math.ceil(share * faults)) for c, (share, _) in CLASSES.items()},
            deadline=float(env("AIOSTORE_SOAK_DEADLINE", "840" if full else "150")),
        )


# -- the ledger ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Op:
    """One put (``size``) or delete (``size is None``) of a key, in the order they were issued."""

    version: int
    size: int | None
    state: str = "pending"  # "acked", "failed", or "pending" (cancelled / killed in flight)
    md5: str | None = None


@dataclass
class Rig:
    size: Size
    ledger: dict[str, list[Op]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    heals: dict[str, Heal] = field(default_factory=dict)
    version: int = 0

    def violation(self, check: str, text: str) -> None:
        self.checks[check] += 1
        if len(self.examples) < 30:
            self.examples.append(f"{check}: {text}")

    def start(self, lk: str, size: int | None) -> Op:
        self.version += 1
        op = Op(self.version, size)
        self.ledger.setdefault(lk, []).append(op)
        return op

    def _window(self, lk: str) -> tuple[list[Op], int]:
        ops = self.ledger.get(lk, [])
        last = max((i for i, o in enumerate(ops) if o.state == "acked"), default=-1)
        return ops, last

    def judge(self, lk: str, data: bytes | None, *, readback: bool = False) -> None:
        """``data`` (None: the key is absent) read whole from ``lk`` ("store:key")."""
        ops, last = self._window(lk)
        allowed = ops[max(last, 0) :]
        if data is None:
            if last >= 0 and all(o.size is not None for o in allowed):
                self.violation("lost", f"{lk}: absent, acknowledged v{ops[last].version} lost")
            return
        key = lk.split(":", 1)[1]
        version = version_of(data)
        index = next((i for i, o in enumerate(ops) if o.version == version), None)
        if index is None or ops[index].size is None:
            self.violation("torn", f"{lk}: {len(data)} bytes of no version ({data[:16]!r})")
            return
        op = ops[index]
        if index < last:
            self.violation("lost", f"{lk}: v{op.version} read after v{ops[last].version} acked")
            return
        if data != payload(key, op.version, op.size or 0):
            self.violation("torn", f"{lk}: v{op.version} torn ({len(data)} of {op.size} bytes)")
            return
        if op.state == "acked" and hashlib.md5(data).hexdigest() != op.md5:
            self.violation("torn", f"{lk}: v{op.version} md5 differs from the put's checksum")
            return
        if readback and op.state == "acked":
            self.counts["read back"] += 1

    def judge_range(self, lk: str, data: bytes, offset: int, length: int) -> None:
        ops, last = self._window(lk)
        key = lk.split(":", 1)[1]

        def matches(o: Op) -> bool:
            if o.size is None:
                return False
            return payload(key, o.version, o.size)[offset : offset + length] == data

        if any(matches(o) for o in ops[max(last, 0) :]):
            return
        if any(matches(o) for o in ops[: max(last, 0)]):
            self.violation("lost", f"{lk}: range {offset}+{length} of a superseded version")
        else:
            self.violation("torn", f"{lk}: range {offset}+{length} matches no version")

    def judge_size(self, lk: str, size: int) -> None:
        ops, last = self._window(lk)
        if not any(o.size == size for o in ops[max(last, 0) :]):
            self.violation("torn", f"{lk}: stat size {size} is no current version's")


def _await_chain(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: one line per frame of its await chain."""
    out = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            out.append(repr(coro)[:300])
            break
        code = frame.f_code
        out.append(
            f"{code.co_filename.split('site-packages/')[-1]}:{frame.f_lineno} {code.co_name}"
        )
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return out


async def watched(rig: Rig, label: str, coro: Awaitable[Any]) -> Any:
    """Await ``coro`` in a task; past ``HUNG`` seconds record where it hangs, cancel it and raise
    TimeoutError."""
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait([task], timeout=HUNG)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        chain = _await_chain(task.get_coro())
        rig.violation("hung", f"{label}: over {HUNG:.0f} s, at {chain[-3:]}")
        rig.hangs.append(f"{label}:\n  " + "\n  ".join(chain))
        task.cancel()
        await asyncio.wait([task], timeout=HUNG)
        raise TimeoutError(label)
    return task.result()


class Heal:
    """After a fault heals: the store's workers read back their keys; the injector waits."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.gen = 0
        self.done = 0
        self.event = asyncio.Event()
        self.event.set()

    def bump(self) -> asyncio.Event:
        self.gen += 1
        self.done = 0
        self.event = asyncio.Event()
        if self.workers == 0:
            self.event.set()
        return self.event

    def confirm(self, gen: int) -> None:
        if gen == self.gen:
            self.done += 1
            if self.done >= self.workers:
                self.event.set()


async def heal(rig: Rig, store: Store) -> None:
    """Wait until ``store`` holds its configured capabilities again, then for the read-back."""
    try:
        await wait_for_capability(store, store.configured_capabilities, timeout=HEAL_TIMEOUT)
    except CapabilityWaitTimeout as exc:
        rig.notes.append(f"{store.name} did not heal: {exc}")
        return
    event = rig.heals[store.name].bump()
    try:
        await asyncio.wait_for(event.wait(), HEAL_TIMEOUT)
    except TimeoutError:
        rig.notes.append(f"{store.name}: read-back after a heal took over {HEAL_TIMEOUT} s")


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# -- workers ------------------------------------------------------------------------------------
class Worker:
    """Puts, reads (whole and ranged), stats, deletes and lists on keys of its own."""

    def __init__(
        self,
        rig: Rig,
        name: str,
        reader: Store,
        writer: Store,
        index: int,
        sizes: tuple[int, int],
        *,
        big: float = 0.0,
    ) -> None:
        self.rig = rig
        self.name = name
        self.reader = reader
        self.writer = writer
        self.keys = [f"w{index}/k{j}" for j in range(KEYS)]
        self.sizes = sizes
        self.big = big
        self.rng = random.Random(f"{name}-{index}")
        self.seen = 0

    def lk(self, key: str) -> str:
        return f"{self.name}:{key}"

    async def run(self) -> None:
        heal_ = self.rig.heals[self.name]
        while not self.rig.stop.is_set():
            if heal_.gen != self.seen:
                gen = heal_.gen
                await self.read_back()
                self.seen = gen
                heal_.confirm(gen)
            ok = await self.step(self.rng.choice(self.keys))
            await asyncio.sleep(0 if ok else 0.02)
        heal_.confirm(heal_.gen)

    async def step(self, key: str) -> bool:
        r = self.rng.random()
        if r < 0.40:
            what, coro = "put", self.put(key)
        elif r < 0.65:
            what, coro = "read", self.read_whole(key)
        elif r < 0.75:
            what, coro = "read range", self.read_range(key)
        elif r < 0.85:
            what, coro = "stat", self.stat(key)
        elif r < 0.93:
            what, coro = "delete", self.delete(key)
        elif self.name != "web":
            what, coro = "list", self.list()
        else:
            what, coro = "exists", self.reader.exists(key)
        try:
            await watched(self.rig, f"{self.lk(key)} {what}", coro)
        except StoreError:
            self.rig.counts["refused"] += 1
            return False
        except TimeoutError:
            return False
        except Exception as exc:  # counted: the contract maps every error to a StoreError
            self.rig.violation("unexpected", f"{self.lk(key)}: {exc!r}")
            return False
        finally:
            self.rig.counts["ops"] += 1
        return True

    async def read_whole(self, key: str) -> None:
        self.rig.judge(self.lk(key), await self.read(key))

    async def list(self) -> None:
        [info async for info in self.reader.list(self.keys[0].split("/")[0] + "/")]

    async def read(self, key: str) -> bytes | None:
        try:
            return await self.reader.read(key)
        except NotFound:
            return None

    async def read_range(self, key: str) -> None:
        offset, length = self.rng.randrange(0, 4096), self.rng.randrange(1, 8192)
        try:
            data = await self.reader.read(key, offset=offset, length=length)
        except NotFound:
            self.rig.judge(self.lk(key), None)
            return
        if data:
            self.rig.judge_range(self.lk(key), data, offset, length)

    async def stat(self, key: str) -> None:
        try:
            info = await self.reader.stat(key)
        except NotFound:
            self.rig.judge(self.lk(key), None)
            return
        self.rig.judge_size(self.lk(key), info.size)

    async def put(self, key: str) -> None:
        size = self.rng.randint(*self.sizes)
        if self.rng.random() < self.big:
            size = 6 * MiB  # past the S3 multipart threshold
        op = self.rig.start(self.lk(key), size)
        data = payload(key, op.version, size)
        source: Any = data if self.rng.random() < 0.6 else _slow_source(data, 65536)
        try:
            stored = await self.writer.put(key, source, overwrite=True)
        except BaseException:
            op.state = "failed"
            raise
        op.state, op.md5 = "acked", stored.checksum
        self.rig.counts["acked"] += 1
        try:  # read back at once; a fault that starts now defers it to the heal's read-back
            self.rig.judge(self.lk(key), await self.read(key), readback=True)
        except StoreError:
            self.rig.counts["refused"] += 1
        finally:
            self.rig.counts["ops"] += 1

    async def delete(self, key: str) -> None:
        op = self.rig.start(self.lk(key), None)
        try:
            await self.writer.delete(key)
        except NotFound:
            pass
        except BaseException:
            op.state = "failed"
            raise
        op.state = "acked"

    async def read_back(self) -> None:
        for key in self.keys:
            await read_back(self.rig, self.reader, self.lk(key), key)


async def read_back(rig: Rig, store: Store, lk: str, key: str) -> None:
    """Read ``key`` whole (retrying transient errors) and judge it against the ledger."""
    for _ in range(60):
        try:
            data: bytes | None = await watched(rig, f"{lk} read back", store.read(key))
        except NotFound:
            data = None
        except (StoreError, TimeoutError):
            await asyncio.sleep(0.25)
            continue
        finally:
            rig.counts["ops"] += 1
        rig.judge(lk, data, readback=True)
        return
    rig.violation("unverified", f"{lk}: no read succeeded")


# -- disk faults --------------------------------------------------------------------------------
def _mount(*args: str, check: bool = True) -> bool:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"mount {' '.join(args)}: {done.stderr.strip()}")
    return done.returncode == 0


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    _mount(*args, str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


async def _probe_put(rig: Rig, store: Store, name: str, key: str, size: int) -> None:
    """The injector's own put while its fault is on (a real write meeting the real error)."""
    op = rig.start(f"{name}:{key}", size)
    try:
        stored = await store.put(key, payload(key, op.version, size), overwrite=True)
    except StoreError:
        op.state = "failed"
        rig.counts["refused"] += 1
    else:
        op.state, op.md5 = "acked", stored.checksum
    finally:
        rig.counts["ops"] += 1


async def enospc_injector(rig: Rig, store: Store, mount: Path) -> None:
    rng = random.Random("enospc")
    try:
        while rig.faults["ENOSPC"] < rig.size.targets["ENOSPC"] and not rig.stop.is_set():
            for _ in range(50):  # writers race the remount: shrink to the usage of the moment
                st = os.statvfs(mount)
                used = (st.f_blocks - st.f_bfree) * st.f_frsize
                if await asyncio.to_thread(
                    _mount, "-o", f"remount,size={used + 8192}", str(mount), check=False
                ):
                    break
                await asyncio.sleep(0.01)
            else:
                rig.notes.append("ENOSPC: the tmpfs could not be shrunk to its usage")
                continue
            rig.faults["ENOSPC"] += 1
            await _probe_put(rig, store, "full", "inj/enospc", rng.randint(64, 256) * 1024)
            await asyncio.sleep(rng.uniform(0.05, 0.3))  # let the workers meet it too
            await asyncio.to_thread(_mount, "-o", f"remount,size={FULL_TMPFS}", str(mount))
            await heal(rig, store)
    finally:
        _mount("-o", f"remount,size={FULL_TMPFS}", str(mount), check=False)


async def erofs_injector(rig: Rig, store: Store, mount: Path) -> None:
    rng = random.Random("erofs")
    try:
        while rig.faults["EROFS"] < rig.size.targets["EROFS"] and not rig.stop.is_set():
            for _ in range(200):  # EBUSY while a writer holds a file open for writing
                if await asyncio.to_thread(
                    _mount, "-o", "remount,ro,bind", str(mount), check=False
                ):
                    break
                await asyncio.sleep(0.005)
            else:
                rig.notes.append("EROFS: the bind mount stayed busy")
                continue
            rig.faults["EROFS"] += 1
            await _probe_put(rig, store, "ro", "inj/erofs", rng.randint(1, 64) * 1024)
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            await asyncio.to_thread(_mount, "-o", "remount,rw,bind", str(mount))
            await heal(rig, store)
    finally:
        _mount("-o", "remount,rw,bind", str(mount), check=False)


# -- servers and network faults -----------------------------------------------------------------
class Moto:
    """moto's S3 server in this process, restartable on the same port (its data survives)."""

    def __init__(self) -> None:
        self.port = 0
        self.server: ThreadedMotoServer | None = None

    def start(self) -> None:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self.port = int(server.get_host_and_port()[1])
        self.server = server

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    @staticmethod
    def objects() -> set[int]:
        return {id(m) for m in (*FakeKey.instances_tracked, *FakeMultipart.instances_tracked)}

    @staticmethod
    def dispose(keep: set[int]) -> None:
        """Close the temporary files of the objects and parts moto made since ``keep``: moto
        keeps every one it ever made (also replaced and deleted ones) with its file open."""
        for model in (*FakeKey.instances_tracked, *FakeMultipart.instances_tracked):
            if id(model) not in keep:
                model.dispose()


class Service:
    """aiostore's REST object service on a file root, restartable on the same port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        config = {"probe": PROBE, "stores": {"svc": {"driver": "file", "root": str(self.root)}}}
        app = aiostore.web.create_app(config, dashboard=False)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self.runner = runner

    async def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()


async def network_injector(
    rig: Rig,
    store: Store,
    proxy: FaultProxy,
    quotas: dict[str, int],
    stop_server: Callable[[], Awaitable[None]],
    start_server: Callable[[], Awaitable[None]],
) -> None:
    rng = random.Random(f"net-{store.name}")
    done: Counter[str] = Counter()
    down = False
    try:
        while not rig.stop.is_set():
            todo = [c for c, q in quotas.items() if done[c] < q]
            if not todo:
                return
            kind = rng.choice(todo)
            if kind == "server down/up":
                await stop_server()
                down = True
                with contextlib.suppress(CapabilityWaitTimeout):
                    await wait_for_capability(
                        store, Capability.READ_ACCESS, present=False, timeout=30
                    )
                await start_server()
                down = False
                hit = 1
            else:
                mode = PROXY_MODE[kind]
                before = proxy.counts[mode]
                n = {"reset": rng.randint(1, 4), "503": rng.randint(1, 6)}.get(kind, 1)
                if kind == "latency":
                    n = rng.randint(3, 10)
                proxy.set_mode(mode, seconds=rng.uniform(0.05, 0.3), requests=n)  # type: ignore[arg-type]
                if not await _until(lambda: proxy.mode.kind == "pass", HEAL_TIMEOUT):
                    rig.notes.append(f"{store.name}: {kind} was not consumed by any request")
                proxy.pass_through()
                hit = proxy.counts[mode] - before
            done[kind] += hit
            rig.faults[kind] += hit
            await heal(rig, store)
    finally:
        proxy.pass_through()
        if down:
            await start_server()


# -- cancellations ------------------------------------------------------------------------------
PATTERNS = ("once", "twice", "twice later", "timeout", "task group", "read")


class _Boom(Exception):
    pass


async def _boom(delay: float) -> None:
    await asyncio.sleep(delay)
    raise _Boom


async def cancel_injector(rig: Rig, stores: dict[str, Store]) -> None:
    rng = random.Random("cancel")
    names = ["mem", "full", "ro", "s3", "s3", "web"]
    i = 0
    while rig.faults["cancellation"] < rig.size.targets["cancellation"]:
        if rig.stop.is_set():
            return
        i += 1
        name, pattern = rng.choice(names), PATTERNS[i % len(PATTERNS)]
        delay = rng.uniform(0, 0.3 if name == "s3" else 0.02)
        if name == "web" or pattern == "read":
            coro = _cancel_read(stores[name], delay, rng)
        else:
            coro = _cancel_put(rig, stores[name], name, pattern, delay, rng, i)
        try:
            landed = await watched(rig, f"{name}: cancelled {pattern}", coro)
        except TimeoutError:
            continue
        rig.faults["cancellation"] += landed
        rig.counts["ops"] += 1


async def _cancel_put(
    rig: Rig, store: Store, name: str, pattern: str, delay: float, rng: random.Random, i: int
) -> bool:
    key = f"cx/{i % 4}"
    size = 6 * MiB if name == "s3" and rng.random() < 0.5 else rng.randint(300, 2048) * 1024
    op = rig.start(f"{name}:{key}", size)
    data = payload(key, op.version, size)
    put_task: asyncio.Task[Any] | None = None

    def put() -> Any:
        return store.put(key, _slow_source(data, 65536), overwrite=True)

    async def timed() -> Any:
        async with asyncio.timeout(delay):
            return await put()

    async def grouped() -> None:
        nonlocal put_task
        async with asyncio.TaskGroup() as tg:
            put_task = tg.create_task(put())
            tg.create_task(_boom(delay))

    if pattern == "timeout":
        outer = asyncio.create_task(timed())
        await asyncio.wait([outer])
        landed = not outer.cancelled() and isinstance(outer.exception(), TimeoutError)
        result_task = outer
    elif pattern == "task group":
        outer = asyncio.create_task(grouped())
        await asyncio.wait([outer])
        assert put_task is not None
        result_task = put_task
        landed = put_task.cancelled()
    else:
        task = asyncio.create_task(put())
        await asyncio.sleep(delay)
        task.cancel()
        if pattern != "once":
            await asyncio.sleep(0 if pattern == "twice" else rng.uniform(0, 0.05))
            task.cancel()
        await asyncio.wait([task])
        landed = task.cancelled()
        result_task = task
    if landed:
        op.state = "pending"  # may have committed before the cancel landed, never later
    elif result_task.cancelled() or result_task.exception() is not None:
        op.state = "failed"
        exc = None if result_task.cancelled() else result_task.exception()
        if exc is not None and not isinstance(exc, StoreError | ExceptionGroup):
            rig.violation("unexpected", f"{name}:{key}: {exc!r}")
    else:
        op.state, op.md5 = "acked", result_task.result().checksum
    await read_back(rig, store, f"{name}:{key}", key)
    return landed


async def _cancel_read(store: Store, delay: float, rng: random.Random) -> bool:
    key = "probe" if store.name == "web" else f"cx/{rng.randrange(4)}"

    async def consume() -> None:
        async with store.open(key) as reader:
            async for _ in reader:
                await asyncio.sleep(0)

    task = asyncio.create_task(consume())
    await asyncio.sleep(delay / 10)
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # NotFound or a fault: retrieved, not a cancellation
    return task.cancelled()


# -- SIGKILLed writers --------------------------------------------------------------------------
async def kill_injector(rig: Rig, root: Path, stable: dict[str, str]) -> None:
    """Start ``crash_child`` writers and SIGKILL each in the middle of its puts; replay its
    random sequence to know which put was acknowledged and which was in flight."""
    rng = random.Random("kill")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    seed = 0
    while rig.counts["kills"] < rig.size.kills and not rig.stop.is_set():
        seed += 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.crash_child",
            str(root),
            str(seed),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), HEAL_TIMEOUT)
            if line.strip() != b"ready":
                rig.notes.append(f"crash child {seed} did not start: {line!r}")
            await asyncio.sleep(rng.uniform(0.02, 0.6))
            proc.send_signal(signal.SIGKILL)
            out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != -signal.SIGKILL:
            rig.notes.append(f"crash child {seed} ended by itself ({proc.returncode})")
            continue
        rig.counts["kills"] += 1
        acked = out.count(b"acked ")
        rig.counts["ops"] += acked
        rig.counts["acked"] += acked
        child = random.Random(seed)  # crash_child's own sequence of keys and sizes
        version = seed * 1_000_000
        for n in range(acked + 1):
            version += 1
            key = f"obj/{child.randrange(3)}"
            size = child.choice([1, 4, 8]) * MiB
            state = "acked" if n < acked else "pending"
            md5 = hashlib.md5(payload(key, version, size)).hexdigest() if n < acked else None
            rig.ledger.setdefault(f"crash:{key}", []).append(Op(version, size, state, md5))
        await check_crash_root(rig, root, stable)


async def check_crash_root(rig: Rig, root: Path, stable: dict[str, str]) -> None:
    try:
        await _check(root, stable)  # torn or stray objects, metadata of another version
    except AssertionError as exc:
        rig.violation("torn", f"crash root: {exc}")
    config = {"probe": {"enabled": False}, "stores": {"c": {"driver": "file", "root": str(root)}}}
    async with StoreManager(config) as manager:
        for k in range(3):
            await read_back(rig, manager["c"], f"crash:obj/{k}", f"obj/{k}")


# -- leaks --------------------------------------------------------------------------------------
def _fd_targets() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
    return found


def temp_files(*roots: Path) -> list[str]:
    """The driver's temporary files left under ``roots`` (names with ``.aiostore-tmp``)."""
    found = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if ".aiostore-tmp" in f]
            if ".aiostore-tmp" in os.path.basename(dirpath):
                found += [os.path.join(dirpath, f) for f in files]
    return sorted(set(found))


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Faults make the library and servers log on purpose; keep 100,000 lines out of pytest's
    log capture."""
    names = ("aiostore", "aiohttp", "werkzeug", "botocore", "aiobotocore", "moto", "asyncio")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


# -- the run ------------------------------------------------------------------------------------
async def run_soak(size: Size, tmp: Path) -> tuple[Rig, float]:
    rig = Rig(size)
    fds_before = _fds()
    targets_before = _fd_targets()
    tasks_before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    started = time.monotonic()
    moto = Moto()
    moto_objects = moto.objects()
    bucket = f"soak-{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as mounts, quiet_logs():
        full = mounts.enter_context(
            mounted(tmp / "full", "-t", "tmpfs", "-o", f"size={FULL_TMPFS}", "tmpfs")
        )
        big = mounts.enter_context(mounted(tmp / "big", "-t", "tmpfs", "-o", "size=512m", "tmpfs"))
        (big / "ro-src").mkdir()
        ro = mounts.enter_context(mounted(tmp / "ro", "--bind", str(big / "ro-src")))
        service = Service(big / "svc")
        crash_root = big / "crash"
        roots = (full / "root", ro / "root", big / "svc", crash_root)
        stable = await seed_crash_root(crash_root)
        await asyncio.to_thread(moto.start)
        try:
            await service.start()
            try:
                async with (
                    FaultProxy("127.0.0.1", moto.port) as s3_proxy,
                    FaultProxy("127.0.0.1", service.port) as web_proxy,
                ):
                    await load(
                        rig, moto, service, s3_proxy, web_proxy, bucket, full, ro, big, stable
                    )
                    await check_crash_root(rig, crash_root, stable)
                    rig.checks["uploads"] += await asyncio.to_thread(_uploads, moto.port, bucket)
                # A running store reclaims dead writers' files: the count is of what stays.
                sweep = {
                    "probe": PROBE,
                    "stores": {"c": {"driver": "file", "root": str(crash_root)}},
                }
                async with StoreManager(sweep) as manager:
                    await manager.probe()
            finally:
                await service.stop()
        finally:
            await asyncio.to_thread(moto.stop)
            moto.dispose(moto_objects)
        left = temp_files(*roots)
        rig.checks["temp files"] += len(left)
        rig.examples += [f"temp file: {p}" for p in left[:5]]
    elapsed = time.monotonic() - started
    gc.collect()
    await asyncio.sleep(0.1)
    rig.checks["fds"] += max(0, _fds() - fds_before)
    if _fds() > fds_before:
        rig.examples += [f"fd: {t}" for t in sorted(_fd_targets() - targets_before)[:5]]
    others = [
        t for t in asyncio.all_tasks() if t is not asyncio.current_task() and t not in tasks_before
    ]
    rig.checks["tasks"] += len(others)
    rig.examples += [f"task: {t!r}" for t in others[:5]]
    return rig, elapsed


async def seed_crash_root(root: Path) -> dict[str, str]:
    stable = {}
    config = {"probe": {"enabled": False}, "stores": {"f": {"driver": "file", "root": str(root)}}}
    async with StoreManager(config) as manager:
        for i in range(3):
            data = os.urandom(MiB + i)
            await manager["f"].put(f"stable/{i}", data)
            stable[f"stable/{i}"] = hashlib.sha256(data).hexdigest()
    return stable


def _uploads(port: int, bucket: str) -> int:
    """Multipart uploads left in ``bucket``; then the bucket is emptied and removed, so that
    moto (in this process) closes the temporary files that hold its objects."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        for upload in uploads:
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=bucket)
        return len(uploads)
    finally:
        client.close()


async def load(
    rig: Rig,
    moto: Moto,
    service: Service,
    s3_proxy: FaultProxy,
    web_proxy: FaultProxy,
    bucket: str,
    full: Path,
    ro: Path,
    big: Path,
    stable: dict[str, str],
) -> None:
    s3 = S3Server("127.0.0.1", moto.port).store_config(
        bucket=bucket,
        endpoint_url=s3_proxy.url,
        part_size=5 * MiB,
        multipart_threshold=5 * MiB,
        connect_timeout=2.0,
        read_timeout=2.0,
    )
    seed = {
        "probe": {"enabled": False},
        "stores": {"svc": {"driver": "file", "root": str(big / "svc")}},
    }
    async with StoreManager(seed) as m:  # the object the http store's probe asks a byte of
        await m["svc"].put("probe", os.urandom(256 * 1024), overwrite=True)
    config = {
        "probe": PROBE,
        "stores": {
            "mem": {"driver": "memory"},
            "full": {"driver": "file", "root": str(full / "root")},
            "ro": {"driver": "file", "root": str(ro / "root")},
            "s3": s3,
            "svc": {"driver": "file", "root": str(big / "svc"), "probe": {"enabled": False}},
            "web": {
                "driver": "http",
                "base_url": f"{web_proxy.url}/stores/svc/objects/",
                "probe_path": "probe",
                "connect_timeout": 2.0,
                "read_timeout": 2.0,
            },
        },
    }

    async def moto_stop() -> None:
        await asyncio.to_thread(moto.stop)

    async def moto_start() -> None:
        await asyncio.to_thread(moto.start)

    async with StoreManager(config) as manager:
        st = {name: manager[name] for name in manager.names}
        plan = {  # store: (workers, sizes, share of 6 MiB puts)
            "mem": (2, (16, 8192), 0.0),
            "full": (2, (1024, 128 * 1024), 0.0),
            "ro": (2, (16, 16 * 1024), 0.0),
            "s3": (3, (16, 64 * 1024), 0.01),
            "web": (2, (16, 256 * 1024), 0.0),
        }
        workers = []
        for name, (n, sizes, big_share) in plan.items():
            rig.heals[name] = Heal(n)
            writer = st["svc"] if name == "web" else st[name]
            workers += [
                Worker(rig, name, st[name], writer, i, sizes, big=big_share) for i in range(n)
            ]
        half = {c: math.ceil(rig.size.targets[c] / 2) for c in NETWORK}
        injectors = [
            enospc_injector(rig, st["full"], full),
            erofs_injector(rig, st["ro"], ro),
            network_injector(rig, st["s3"], s3_proxy, half, moto_stop, moto_start),
            network_injector(rig, st["web"], web_proxy, half, service.stop, service.start),
            cancel_injector(rig, st),
            kill_injector(rig, big / "crash", stable),
        ]
        worker_tasks = [asyncio.create_task(w.run(), name=f"soak-{w.name}") for w in workers]
        injector_tasks = [asyncio.create_task(c) for c in injectors]
        try:
            deadline = time.monotonic() + rig.size.deadline
            while time.monotonic() < deadline:
                if rig.counts["ops"] >= rig.size.ops and all(t.done() for t in injector_tasks):
                    break
                await asyncio.sleep(0.1)
            else:
                rig.notes.append(f"deadline of {rig.size.deadline:.0f} s reached")
        finally:
            rig.stop.set()
            done, pending = await asyncio.wait(injector_tasks + worker_tasks, timeout=HEAL_TIMEOUT)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    rig.notes.append(f"{t.get_name()} failed: {t.exception()!r}")
        for store in st.values():
            if store.name != "svc":
                await heal_quietly(rig, store)
        by_store: dict[str, Store] = {n: st[n] for n in plan}
        for lk in list(rig.ledger):
            name, key = lk.split(":", 1)
            if name in by_store:
                await read_back(rig, by_store[name], lk, key)


async def heal_quietly(rig: Rig, store: Store) -> None:
    try:
        await wait_for_capability(store, store.configured_capabilities, timeout=HEAL_TIMEOUT)
    except CapabilityWaitTimeout as exc:
        rig.notes.append(f"{store.name} did not heal at the end: {exc}")


def table(rig: Rig, elapsed: float) -> str:
    size = rig.size
    rows: list[tuple[str, str]] = [
        ("operations done", f"{rig.counts['ops']:,} (target {size.ops:,})"),
        ("  puts acknowledged", f"{rig.counts['acked']:,}"),
        ("  acknowledged puts read back (md5)", f"{rig.counts['read back']:,}"),
        ("  refused or failed under faults", f"{rig.counts['refused']:,}"),
    ]
    total = 0
    for cls, (_, label) in CLASSES.items():
        total += rig.faults[cls]
        rows.append((f"fault: {label}", f"{rig.faults[cls]:,} (target {size.targets[cls]:,})"))
    rows.append(("faults injected, total", f"{total:,}"))
    rows.append(
        ("SIGKILLed writers (kill -9 mid-put)", f"{rig.counts['kills']} (target {size.kills})")
    )
    for check, label in CHECKS:
        rows.append((f"check: {label}", f"{rig.checks[check]}"))
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"aiostore soak ({size.label}), {now}, {elapsed:.0f} s"]
    rule = f"+-{'-' * width}-+-{'-' * vwidth}-+"
    lines.append(rule)
    for label, value in rows:
        lines.append(f"| {label:<{width}} | {value:>{vwidth}} |")
        if label.startswith(("  refused", "faults injected", "SIGKILL")):
            lines.append(rule)
    lines.append(rule)
    lines += [f"  {e}" for e in rig.examples[:20]]
    lines += [f"  note: {n}" for n in rig.notes[:20]]
    return "\n".join(lines)


def shortfalls(rig: Rig) -> list[str]:
    size = rig.size
    problems = [f"{label}: {rig.checks[c]}" for c, label in CHECKS if rig.checks[c]]
    if rig.counts["ops"] < size.ops:
        problems.append(f"only {rig.counts['ops']} operations")
    problems += [
        f"only {rig.faults[c]} {c} faults" for c in CLASSES if rig.faults[c] < size.targets[c]
    ]
    if rig.counts["kills"] < size.kills:
        problems.append(f"only {rig.counts['kills']} SIGKILLs")
    return problems + rig.notes


def _write(text: str, *paths: Path | str | None) -> None:
    for path in paths:
        if path:
            Path(path).write_text(text + "\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: tmpfs and bind mounts")
@pytest.mark.skipif(shutil.which("mount") is None, reason="needs mount(8)")
async def test_soak(request: pytest.FixtureRequest, tmp_path: Path, capsys: Any) -> None:
    """Every fault class against every writable driver; the table goes to the terminal and to
    ``soak-table.txt`` in the test's directory. Short by default, full with ``--soak``."""
    size = Size.from_config(request.config)
    rig, elapsed = await run_soak(size, tmp_path)
    text = table(rig, elapsed)
    _write(text, tmp_path / "soak-table.txt", os.environ.get("AIOSTORE_SOAK_TABLE"))
    if rig.hangs:
        _write("\n".join(rig.hangs), tmp_path / "soak-hangs.txt")
    with capsys.disabled():
        print("\n" + text, flush=True)
    assert shortfalls(rig) == []
