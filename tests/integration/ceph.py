"""A throw-away single-node Ceph cluster with a RADOS Gateway on loopback, for integration tests.

No systemd, no cephadm: one monitor, one manager, one OSD on ``memstore`` and ``radosgw`` (beast
frontend) run as children of this process (``-f``, so we own their pids) under a temp dir, on
127.0.0.1 ports that were free a moment before. Authentication is off (``auth * required = none``),
which only works with the messenger in ``crc`` mode — with the default ``secure``/``crc`` mix
radosgw hangs on start-up. Pools have one replica (``mon allow pool size one``).

By hand::

    python -m tests.integration.ceph    # install if needed, start, print the endpoint, wait for ^C

Everything here is synchronous (``subprocess``): the session fixture runs it once on the main
thread, async tests call :meth:`CephCluster.ceph` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.net import free_port

__all__ = [
    "BINARIES",
    "PACKAGES",
    "CephCluster",
    "CephError",
    "RGWEndpoint",
    "ensure_installed",
    "missing_binaries",
    "running_cluster",
    "start_cluster",
]

#: Debian packages that hold every binary below (ceph-base comes in as a dependency), and the
#: librados/librbd bindings the ``rbd`` driver uses (built for Debian's CPython 3.11).
PACKAGES = (
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "radosgw",
    "ceph-common",
    "python3-rados",
    "python3-rbd",
)
#: The bindings' extension modules, checked like the binaries.
BINDINGS = ("rados", "rbd")
BINDINGS_DIR = Path("/usr/lib/python3/dist-packages")
#: The pool the ``rbd`` driver's tests use.
RBD_POOL = "rbd"
BINARIES = (
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "radosgw",
    "ceph",
    "radosgw-admin",
    "monmaptool",
    "ceph-authtool",
)

#: RGW pools, created up front in one go: radosgw would otherwise create them one at a time, on
#: start-up and on the first bucket / object / multipart upload (seconds each).
RGW_POOLS = (
    ".rgw.root",
    "default.rgw.control",
    "default.rgw.meta",
    "default.rgw.log",
    "default.rgw.buckets.index",
    "default.rgw.buckets.data",
    "default.rgw.buckets.non-ec",
)

#: A bucket of the helper's own: pause() checks through it that the gateway stalls.
SENTINEL_BUCKET = "aiostore-ceph-sentinel"

Log = Callable[[str], None]


class CephError(RuntimeError):
    """The cluster could not be installed, started or driven; the message says why."""


@dataclass(frozen=True, slots=True)
class RGWEndpoint:
    """Where the gateway listens and the S3 user's credentials."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    #: The same user's Swift subuser (auth v1 at ``endpoint_url + "/auth/1.0"``).
    swift_user: str = "test:swift"
    swift_key: str = field(default="aiostore-test-swift-key-0123456789", repr=False)


def _stderr_log(msg: str) -> None:
    print(f"[ceph] {msg}", file=sys.stderr, flush=True)


def missing_binaries() -> list[str]:
    """The Ceph binaries not on PATH (and the Python bindings not installed)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    for name in BINDINGS:
        if not any(BINDINGS_DIR.glob(f"{name}.cpython-*.so")):
            missing.append(f"python3-{name}")
    return missing


def _run(
    cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, what: str = ""
) -> str:
    """Run a command to completion; raise CephError with its output when it fails."""
    try:
        proc = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = _decode(exc.stdout) + _decode(exc.stderr)
        raise CephError(
            f"{what or cmd[0]}: `{' '.join(cmd)}` did not finish within {timeout:.0f} s\n"
            f"{_tail(out)}"
        ) from exc
    except OSError as exc:
        raise CephError(f"{what or cmd[0]}: cannot run `{' '.join(cmd)}`: {exc}") from exc
    if proc.returncode != 0:
        raise CephError(
            f"{what or cmd[0]}: `{' '.join(cmd)}` exited with {proc.returncode}\n"
            f"{_tail(proc.stdout + proc.stderr)}"
        )
    return proc.stdout


def _decode(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b if isinstance(b, str) else b.decode("utf-8", "replace")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def ensure_installed(log: Log = _stderr_log, *, timeout: float = 900.0) -> float | None:
    """Install Debian's Ceph packages with apt-get when a binary is missing.

    Returns the seconds spent installing, or None when everything was already there. Raises
    CephError (never skips) when it cannot: not root, no apt-get, apt-get failed.
    """
    missing = missing_binaries()
    if not missing:
        return None
    packages = " ".join(PACKAGES)
    if os.geteuid() != 0:
        raise CephError(
            f"Ceph is not installed (missing: {', '.join(missing)}) and installing it needs root. "
            f"Run as root, or install first: apt-get install --no-install-recommends {packages}"
        )
    if shutil.which("apt-get") is None:
        raise CephError(
            f"Ceph is not installed (missing: {', '.join(missing)}) and there is no apt-get here "
            f"to install it (Debian packages: {packages})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=120"]
    started = time.monotonic()
    log(f"installing {packages} (missing: {', '.join(missing)})")
    _run(["apt-get", *lock, "update", "-qq"], timeout=timeout, env=env, what="apt-get update")
    _run(
        ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        timeout=timeout,
        env=env,
        what="apt-get install",
    )
    still = missing_binaries()
    if still:
        raise CephError(f"apt-get installed {packages} but these are still missing: {still}")
    took = time.monotonic() - started
    log(f"installed in {took:.1f} s")
    return took


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG = 1: the daemon gets SIGKILL when the thread that forked it dies, so a
    # test run killed with SIGKILL leaves no daemon behind. Only used from the main thread.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class CephCluster:
    """One mon, one mgr, one memstore OSD and radosgw under ``root`` (a new temp dir by default).

    ``start()`` returns the :class:`RGWEndpoint`; ``stop()`` ends every daemon by pid (SIGTERM,
    then SIGKILL after a grace period) and removes the temp dir. Both are idempotent and ``stop``
    is safe after a failed or partial ``start``. Also a context manager.
    """

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        memstore_bytes: int = 4 << 30,
        access_key: str = "AIOSTORETESTACCESS01",
        secret_key: str = "aiostore-test-secret-key-0123456789abcdef",
        keep: bool = False,
        log: Log = _stderr_log,
    ) -> None:
        self._root_arg = Path(root) if root is not None else None
        self.memstore_bytes = memstore_bytes
        self.access_key = access_key
        self.secret_key = secret_key
        self.keep = keep
        self.log = log
        self.root: Path | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.endpoint: RGWEndpoint | None = None
        self.timings: dict[str, float] = {}
        self.mon_ports: tuple[int, int] = (0, 0)
        self.rgw_port = 0
        self._owns_root = False

    # -- paths ----------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        assert self.root is not None, "the cluster is not started"
        return self.root / "ceph.conf"

    @property
    def log_dir(self) -> Path:
        assert self.root is not None, "the cluster is not started"
        return self.root / "log"

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> CephCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 240.0) -> RGWEndpoint:
        """Bring the cluster up and return the gateway endpoint; raise CephError (with the
        daemons' log tails) when that does not happen within ``timeout`` seconds."""
        if self.endpoint is not None:
            return self.endpoint
        missing = missing_binaries()
        if missing:
            raise CephError(f"Ceph binaries missing: {missing} (call ensure_installed() first)")
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        atexit.register(self.stop)  # a forgotten stop() still ends the daemons
        try:
            self._prepare()
            self._start_mon(deadline)
            self.timings["mon"] = time.monotonic() - t0
            self._spawn("mgr.x", ["ceph-mgr", "-i", "x"])
            self._start_osd(deadline)
            self.timings["osd"] = time.monotonic() - t0
            self._create_pools()
            self.timings["pools"] = time.monotonic() - t0
            self._spawn("client.rgw.a", ["radosgw", "-n", "client.rgw.a"])
            self._wait_http(deadline)
            self.timings["rgw"] = time.monotonic() - t0
            self.radosgw_admin(
                "user",
                "create",
                "--uid=test",
                "--display-name=test",
                f"--access-key={self.access_key}",
                f"--secret={self.secret_key}",
            )
            self.endpoint = RGWEndpoint(
                endpoint_url=f"http://127.0.0.1:{self.rgw_port}",
                access_key=self.access_key,
                secret_key=self.secret_key,
            )
            self.radosgw_admin(
                "subuser",
                "create",
                "--uid=test",
                f"--subuser={self.endpoint.swift_user}",
                "--access=full",
                "--key-type=swift",
                f"--secret-key={self.endpoint.swift_key}",
            )
            self.timings["user"] = time.monotonic() - t0
            self._warm_up(deadline)
            self.timings["warm"] = time.monotonic() - t0
            self.wait_active_clean(max(1.0, deadline - time.monotonic()))
            self.timings["ready"] = time.monotonic() - t0
        except BaseException as exc:
            tails = self.log_tails() if self.root is not None else ""
            self.stop()
            if isinstance(exc, CephError):
                raise CephError(f"{exc}\n\n--- daemon logs ---\n{tails}") from exc
            raise
        self.log(
            f"cluster ready in {self.timings['ready']:.1f} s at {self.endpoint.endpoint_url} "
            f"(mon {self.timings['mon']:.1f} s, osd up {self.timings['osd']:.1f} s, pools "
            f"{self.timings['pools']:.1f} s, rgw answering {self.timings['rgw']:.1f} s, user "
            f"{self.timings['user']:.1f} s, warmed up {self.timings['warm']:.1f} s; "
            f"dir {self.root})"
        )
        return self.endpoint

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each daemon, wait up to ``grace`` seconds for it, else SIGKILL it; reap them all,
        remove the temp dir (unless ``keep``). Idempotent; never raises for a dead daemon."""
        atexit.unregister(self.stop)
        # One at a time, clients first (rgw, osd, mgr, mon): each stops in well under a second
        # while the monitor is still there, but SIGTERM to all at once costs ~5 s of waiting.
        for name, proc in reversed(self.procs.items()):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.log(f"{name} (pid {proc.pid}) ignored SIGTERM for {grace:.0f} s: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        self.procs.clear()
        self.endpoint = None
        if self.root is not None:
            if self.keep:
                self.log(f"kept {self.root}")
            elif self._owns_root:
                shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _prepare(self) -> None:
        if self._root_arg is None:
            self.root = Path(tempfile.mkdtemp(prefix="aiostore-ceph-"))
            self._owns_root = True
        else:
            self.root = self._root_arg
            self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "log", "crash", "mon/a", "mgr/x", "rgw/rgw.a"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Three distinct ports that were free just now. A daemon that loses the race exits at
        # once, which the waits notice (the fixture then retries with fresh ports).
        ports: list[int] = []
        while len(ports) < 3:
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.mon_ports, self.rgw_port = (ports[0], ports[1]), ports[2]
        fsid = str(uuid.uuid4())
        self.conf.write_text(self._config(fsid))
        _run(
            ["ceph-authtool", "--create-keyring", str(self.root / "keyring"), "--gen-key", "-n",
             "mon.", "--cap", "mon", "allow *"],
            timeout=30,
        )  # fmt: skip
        _run(
            ["monmaptool", "--create", "--fsid", fsid, "--addv", "a", self._mon_addrs(),
             str(self.root / "monmap")],
            timeout=30,
        )  # fmt: skip

    def _mon_addrs(self) -> str:
        p2, p1 = self.mon_ports
        return f"[v2:127.0.0.1:{p2},v1:127.0.0.1:{p1}]"

    def _config(self, fsid: str) -> str:
        d = self.root
        return f"""\
[global]
fsid = {fsid}
mon host = {self._mon_addrs()}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
# No cephx. Without auth the messenger must be in crc mode, or radosgw hangs on start-up.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
# One OSD: one replica, few PGs, no autoscaler, no warnings about it.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon max pg per osd = 1000
mon data avail crit = 1
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}
# Quicker map changes and PG stats than the defaults (tuned for a one-node test cluster).
paxos propose interval = 0.1
mgr stats period = 1
osd mon report interval = 1
# Everything of this cluster lives under its temp dir.
run dir = {d}/run
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
keyring = {d}/keyring
crash dir = {d}/crash
mon data = {d}/mon/$id
mgr data = {d}/mgr/$id
osd data = {d}/osd/$id
rgw data = {d}/rgw/$id

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port}
rgw dynamic resharding = false
rgw enable usage log = false
"""

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        assert self.root is not None
        out = open(self.log_dir / f"{name}.out", "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                [*argv, "-f", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # ^C in the terminal reaches us, not the daemons
                preexec_fn=_die_with_parent
                if threading.current_thread() is threading.main_thread()
                else None,
            )
        finally:
            out.close()
        self.procs[name] = proc
        return proc

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise CephError(f"{name} (pid {proc.pid}) exited with {code}")

    def _wait(
        self, what: str, deadline: float, ready: Callable[[], bool], every: float = 0.2
    ) -> None:
        last: Exception | None = None
        while True:
            self._check_alive()
            try:
                if ready():
                    return
            except CephError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise CephError(
                    f"timed out waiting for {what}" + (f" (last: {last})" if last else "")
                )
            time.sleep(every)

    def _start_mon(self, deadline: float) -> None:
        assert self.root is not None
        _run(
            ["ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap",
             str(self.root / "monmap")],
            timeout=60,
        )  # fmt: skip
        self._spawn("mon.a", ["ceph-mon", "-i", "a"])
        self._wait(
            "the monitor to form a quorum", deadline, lambda: bool(self.ceph_json("mon", "stat"))
        )

    def _start_osd(self, deadline: float) -> None:
        assert self.root is not None
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        (self.root / "osd" / osd_id).mkdir(parents=True, exist_ok=True)
        _run(
            ["ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid],
            timeout=60,
            what="ceph-osd --mkfs",
        )
        self._spawn(f"osd.{osd_id}", ["ceph-osd", "-i", osd_id])

        def up() -> bool:
            stat = self.ceph_json("osd", "stat")
            stat = stat.get("osdmap", stat)  # older releases nest it
            return int(stat.get("num_up_osds", 0)) >= 1 and int(stat.get("num_in_osds", 0)) >= 1

        self._wait("the OSD to be up and in", deadline, up)

    def _create_pools(self) -> None:
        # One `ceph` process reading commands from stdin: ~2 s instead of ~0.5 s per command.
        lines = [f"osd pool create {p} 8 8\nosd pool application enable {p} rgw" for p in RGW_POOLS]
        lines.append(f"osd pool create {RBD_POOL} 8 8\nosd pool application enable {RBD_POOL} rbd")
        self.ceph_batch(lines)
        have = set(self.ceph("osd", "pool", "ls").split())
        missing = [p for p in (*RGW_POOLS, RBD_POOL) if p not in have]
        if missing:
            raise CephError(f"could not create the RGW pools {missing}")

    def _wait_http(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.rgw_port}/"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    resp.read()
                return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer will do
            except (urllib.error.URLError, OSError):
                return False

        self._wait("radosgw to answer HTTP", deadline, answers)

    def _warm_up(self, deadline: float) -> None:
        """The first bucket, object and multipart upload touch lazily initialised state: do them
        once here so tests do not pay (or time) it."""
        try:
            self._warm_up_calls(max(5.0, deadline - time.monotonic()))
        except CephError:
            raise
        except Exception as exc:
            raise CephError(f"warming up the gateway failed: {type(exc).__name__}: {exc}") from exc

    def _warm_up_calls(self, read_timeout: float) -> None:
        client = self.botocore_client(read_timeout=read_timeout)
        bucket = "aiostore-warmup"
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="warm", Body=b"warm")
        if client.get_object(Bucket=bucket, Key="warm")["Body"].read() != b"warm":
            raise CephError("the gateway returned other bytes than it was given")
        mpu = client.create_multipart_upload(Bucket=bucket, Key="warm-mpu")
        part = client.upload_part(
            Bucket=bucket, Key="warm-mpu", UploadId=mpu["UploadId"], PartNumber=1, Body=b"p"
        )
        client.complete_multipart_upload(
            Bucket=bucket,
            Key="warm-mpu",
            UploadId=mpu["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        for key in ("warm", "warm-mpu"):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)
        client.create_bucket(Bucket=SENTINEL_BUCKET)  # for pause()

    def botocore_client(self, *, read_timeout: float = 60.0) -> Any:
        """A synchronous botocore S3 client for the gateway (path-style, no retries)."""
        import botocore.config
        import botocore.session

        assert self.endpoint is not None
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint.endpoint_url,
            aws_access_key_id=self.endpoint.access_key,
            aws_secret_access_key=self.endpoint.secret_key,
            region_name=self.endpoint.region,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=read_timeout,
                retries={"total_max_attempts": 1},
            ),
        )

    # -- commands -------------------------------------------------------------------------------
    def ceph(self, *args: str, timeout: float = 60.0) -> str:
        """``ceph -c <conf> ARGS`` → its stdout. Never waits more than ``timeout`` seconds."""
        connect = str(max(1, int(timeout)))
        return _run(
            ["ceph", "-c", str(self.conf), "--connect-timeout", connect, *args],
            timeout=timeout + 5,
            what="ceph",
        )

    def ceph_batch(self, commands: Sequence[str], timeout: float = 120.0) -> str:
        """Several ``ceph`` commands (one a line) in one process, read from its stdin."""
        cmd = ["ceph", "-c", str(self.conf), "--connect-timeout", "30"]
        try:
            proc = subprocess.run(
                cmd,
                input="\n".join(commands) + "\n",
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CephError(f"ceph (batch) did not finish within {timeout:.0f} s") from exc
        if proc.returncode != 0:
            raise CephError(f"ceph (batch) exited with {proc.returncode}\n{_tail(proc.stderr)}")
        return proc.stdout

    def ceph_json(self, *args: str, timeout: float = 30.0) -> Any:
        out = self.ceph(*args, "--format", "json", timeout=timeout)
        try:
            return json.loads(out)
        except ValueError as exc:
            raise CephError(f"ceph {' '.join(args)}: not JSON: {out[:200]!r}") from exc

    def radosgw_admin(self, *args: str, timeout: float = 60.0) -> str:
        return _run(
            ["radosgw-admin", "-c", str(self.conf), *args], timeout=timeout, what="radosgw-admin"
        )

    def pause(self, *, wait: float = 20.0) -> None:
        """``ceph osd pause``: reads and writes stop; RGW requests that touch RADOS stall.

        The flag is enforced by each client's objecter once it holds the new osdmap, and the
        CLI returns before radosgw has it: for up to a second or so RGW still serves reads.
        So this also waits (up to ``wait`` seconds) until a HEAD through the gateway stalls.
        """
        import botocore.exceptions

        self.ceph("osd", "pause", timeout=30)
        if not wait or self.endpoint is None:
            return
        client = self.botocore_client(read_timeout=1.0)
        deadline = time.monotonic() + wait
        while True:
            try:
                client.head_object(Bucket=SENTINEL_BUCKET, Key=f"pause-{uuid.uuid4().hex}")
            except botocore.exceptions.ReadTimeoutError:
                return  # stalled: the pause is in force at the gateway
            except botocore.exceptions.ClientError:
                pass  # answered (404): radosgw does not know yet
            if time.monotonic() > deadline:
                raise CephError(f"radosgw still answers {wait:g} s after `ceph osd pause`")
            time.sleep(0.1)

    def unpause(self) -> None:
        """``ceph osd unpause``: reads and writes flow again."""
        self.ceph("osd", "unpause", timeout=30)

    def gc(self) -> None:
        """Free the space of deleted objects now (RGW keeps their tails for hours by default)."""
        self.radosgw_admin("gc", "process", "--include-all", timeout=120)

    def pg_states(self) -> dict[str, int]:
        stat = self.ceph_json("pg", "stat")
        stat = stat.get("pg_summary", stat)
        return {s["name"]: int(s["num"]) for s in stat.get("num_pg_by_state", [])}

    def wait_active_clean(self, timeout: float = 60.0) -> None:
        """Wait until every placement group is active+clean."""
        seen: dict[str, int] = {}

        def clean() -> bool:
            nonlocal seen
            seen = self.pg_states()
            return bool(seen) and set(seen) == {"active+clean"}

        try:
            self._wait(
                "placement groups to be active+clean", time.monotonic() + timeout, clean, 0.5
            )
        except CephError as exc:
            raise CephError(f"{exc}; PG states: {seen}") from None

    # -- diagnostics ----------------------------------------------------------------------------
    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every daemon log and captured output, for failure messages."""
        if self.root is None or not self.log_dir.is_dir():
            return "(no logs)"
        parts = []
        for path in sorted(self.log_dir.iterdir()):
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                text = f"(unreadable: {exc})"
            if text.strip():
                parts.append(f"==> {path.name} <==\n{_tail(text, lines)}")
        return "\n".join(parts) or "(logs empty)"


def start_cluster(log: Log = _stderr_log, attempts: int = 2, **kwargs: Any) -> CephCluster:
    """A started :class:`CephCluster`; a failed start is retried with fresh ports and temp dir
    (a port may be taken between choosing it and binding it). Raises CephError with every
    attempt's reason and log tails."""
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        cluster = CephCluster(log=log, **kwargs)
        try:
            cluster.start()
        except CephError as exc:
            errors.append(f"attempt {attempt} of {attempts}: {exc}")
            if attempt < attempts:
                log(f"start attempt {attempt} failed, retrying with fresh ports:\n{exc}")
            continue
        return cluster
    raise CephError("the Ceph cluster did not start:\n" + "\n\n".join(errors))


@contextlib.contextmanager
def running_cluster(log: Log = _stderr_log, **kwargs: Any) -> Iterator[CephCluster]:
    """Install if needed, start (see :func:`start_cluster`), yield, stop."""
    ensure_installed(log)
    cluster = start_cluster(log, **kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()


def main() -> None:
    # Stop cleanly on SIGTERM too, and on ^C even when started in the background (where the
    # shell left SIGINT ignored).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.monotonic()
    with running_cluster(keep="--keep" in sys.argv) as cluster:
        ep = cluster.endpoint
        assert ep is not None
        print(f"up in {time.monotonic() - t0:.1f} s (including any install)")
        print(f"endpoint_url = {ep.endpoint_url}\naccess_key = {ep.access_key}")
        print(f"secret_key = {ep.secret_key}\nceph -c {cluster.conf} -s")
        if "--exit" in sys.argv:
            return
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
