"""The ``aiostore`` command line, run as ``python -m aiostore`` in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.net import free_port

from .support import HAS_FILE_DRIVER

needs_file = pytest.mark.skipif(not HAS_FILE_DRIVER, reason="aiostore.drivers.file is missing")
TIMEOUT = 30


def cli(
    *args: str | Path, cwd: Path, stdin: bytes | None = None, stderr: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "aiostore", *map(str, args)],
        cwd=cwd,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=TIMEOUT,
        check=False,
    )


def write_config(tmp_path: Path, *, file_store: bool) -> Path:
    text = '[probe]\ninterval = 5.0\n\n[stores.mem]\ndriver = "memory"\n'
    if file_store:
        root = tmp_path / "root"
        text = f'default = "disk"\n{text}\n[stores.disk]\ndriver = "file"\nroot = "{root}"\n'
    path = tmp_path / "aiostore.toml"
    path.write_text(text)
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("aiostore: error: ")
    return lines[0]


class Server:
    """``aiostore serve`` in a subprocess; stdout lines are collected by a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.log = open(cwd / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiostore", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        self.output: list[str] = []

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_url(self) -> str:
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"serve printed no URL: {self.output}") from None
            if line is None:
                raise AssertionError(f"serve exited: {self.output} {self.stderr()}")
            self.output.append(line)
            match = re.search(r"dashboard at (http://\S+)", line)
            if match:
                return match.group(1)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        while (line := self.lines.get(timeout=5)) is not None:
            self.output.append(line)
        return code

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_answers_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    """serve prints the dashboard URL, answers /stores and /, and exits 0 on SIGINT and on
    SIGTERM after closing everything ("stopped")."""
    config = write_config(tmp_path, file_store=HAS_FILE_DRIVER)
    port = free_port() if sig == signal.SIGINT else 0
    server = Server(["--config", str(config), "serve", "--port", str(port)], tmp_path)
    try:
        url = server.wait_for_url()
        assert url.startswith("http://127.0.0.1:")
        if port:
            assert url == f"http://127.0.0.1:{port}/"
        snap = get_json(url + "stores")
        assert snap["running"] is True
        assert "mem" in snap["stores"]
        assert ("disk" in snap["stores"]) == HAS_FILE_DRIVER
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert b'id="timeline"' in resp.read()
    finally:
        code = server.stop(sig)
    assert code == 0, server.stderr()
    assert server.output[-1].strip() == "aiostore: stopped"
    assert "Traceback" not in server.stderr()


@needs_file
def test_serve_without_config_uses_a_local_file_store(tmp_path: Path) -> None:
    """No --config: a file store 'local' in ./aiostore-data (created) and a memory store."""
    server = Server(["serve", "--port", "0"], tmp_path)
    try:
        url = server.wait_for_url()
        snap = get_json(url + "stores")
        assert snap["default"] == "local"
        assert snap["stores"]["local"]["driver"] == "file"
        assert snap["stores"]["memory"]["driver"] == "memory"
        assert (tmp_path / "aiostore-data").is_dir()
    finally:
        assert server.stop(signal.SIGTERM) == 0


def test_serve_on_a_busy_port_fails_in_one_line(tmp_path: Path) -> None:
    """A port already taken is an operation error (exit 1), one line, no traceback."""
    config = write_config(tmp_path, file_store=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = cli("--config", config, "serve", "--port", port, cwd=tmp_path)
    assert "cannot listen" in assert_one_line_error(result, 1)


@needs_file
def test_put_get_ls_rm_round_trip(tmp_path: Path) -> None:
    """Objects go in from a file and stdin, come out whole, ranged, to a file and to stdout,
    are listed and removed; failures are exit 1 with one line."""
    config = write_config(tmp_path, file_store=True)
    src = tmp_path / "src.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)

    def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return cli("--config", config, *args, cwd=tmp_path, stdin=stdin)

    put = run("put", "disk", "dir/a.bin", src)
    assert put.returncode == 0, put.stderr
    location, size, md5 = put.stdout.decode().split()
    assert md5 == "md5:" + hashlib.md5(data).hexdigest()
    assert location.startswith("file://") and location.endswith("dir/a.bin")
    assert size == str(len(data))
    meta = '{"owner": "me"}'
    put = run("put", "disk", "dir/b.txt", "-", "--metadata", meta, "--json", stdin=b"hi")
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["metadata"] == {"owner": "me"}

    out = tmp_path / "out.bin"
    assert run("get", "disk", "dir/a.bin", out).returncode == 0
    assert out.read_bytes() == data
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert run("get", "disk", "dir/a.bin", "--offset", "10", "--length", "5").stdout == data[10:15]

    listing = run("ls", "disk", "dir/", "-l").stdout.decode().splitlines()
    assert [line.split()[-1] for line in listing] == ["dir/a.bin", "dir/b.txt"]
    assert [line.split()[0] for line in listing] == [str(len(data)), "2"]

    dup = run("put", "disk", "dir/a.bin", "-", stdin=b"other")
    assert "exists" in assert_one_line_error(dup, 1)
    assert run("rm", "disk", "dir/a.bin", "dir/b.txt").returncode == 0
    assert run("ls", "disk").stdout == b""
    missing = run("get", "disk", "dir/a.bin", out)
    assert "no such object" in assert_one_line_error(missing, 1)
    assert out.read_bytes() == data  # a failed get leaves the target alone
    assert "cannot read" in assert_one_line_error(run("put", "disk", "k", tmp_path / "no"), 1)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (None, "cannot read configuration file"),
        ("[stores.x\n", "not valid TOML"),
        ('[stores.x]\ndriver = "nope"\n', "unknown driver"),
        ('[stores.x]\ndriver = "memory"\nbogus = 1\n', "bogus"),
        ('[stores.x]\ndriver = "memory"\n[stores.x.probe]\ninterval = -1\n', "interval"),
    ],
    ids=["missing", "toml", "driver", "option", "probe"],
)
def test_bad_config_exits_2_in_one_line(tmp_path: Path, text: str | None, needle: str) -> None:
    """BadStoreConfiguration: exit 2, one line naming the problem, no traceback."""
    config = tmp_path / "bad.toml"
    if text is not None:
        config.write_text(text)
    result = cli("--config", config, "caps", cwd=tmp_path)
    assert needle in assert_one_line_error(result, 2)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """No command, an unknown store and a bad option value are usage errors."""
    config = write_config(tmp_path, file_store=False)
    assert cli(cwd=tmp_path).returncode == 2
    assert "no store named" in assert_one_line_error(
        cli("--config", config, "ls", "nope", cwd=tmp_path), 2
    )
    result = cli("--config", config, "get", "mem", "k", "--offset", "-1", cwd=tmp_path)
    assert result.returncode == 2
    assert cli("--help", cwd=tmp_path).returncode == 0


def test_caps_and_probe(tmp_path: Path) -> None:
    """caps prints each store's three layers after the start-up probe; --json the snapshot;
    probe reports health. --config also works after the command."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[stores.mem]\ndriver = "memory"\n[stores.ro]\ndriver = "memory"\nread_only = true\n'
    )
    table = cli("caps", "--config", config, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    text = table.stdout.decode()
    assert re.search(r"^ro\s+\(memory", text, re.M)
    rows = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines() if ln.startswith("  ")}
    assert rows["WRITE_ACCESS"] == ["yes", "no", "no"]  # the read-only store, printed last
    snap = json.loads(cli("--config", config, "caps", "--json", cwd=tmp_path).stdout)
    assert snap["stores"]["ro"]["configured"]["names"] == [
        "READ_ACCESS",
        "READ_OFFSET",
        "READ_CHUNK",
        "READ_RANDOM",
        "DRIVER_REUSABLE",
    ]
    probe = cli("--config", config, "probe", "mem", "--json", cwd=tmp_path)
    assert json.loads(probe.stdout)["mem"]["healthy"] is True
    probe = cli("--config", config, "probe", cwd=tmp_path)
    assert probe.stdout.decode().startswith("mem: healthy")


def _read_all(fd: int, sink: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the child closed the terminal
            return
        if not chunk:
            return
        sink.append(chunk)


def test_progress_only_on_a_terminal(tmp_path: Path) -> None:
    """A large put draws a \\r progress line when stderr is a terminal, and nothing when it is
    a pipe."""
    config = write_config(tmp_path, file_store=False)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (12 << 20))
    piped = cli("--config", config, "put", "mem", "k", big, cwd=tmp_path)
    assert piped.returncode == 0
    assert piped.stderr == b""

    master, slave = os.openpty()
    seen: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(master, seen), daemon=True)
    reader.start()
    try:
        on_tty = cli("--config", config, "put", "mem", "k", big, cwd=tmp_path, stderr=slave)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    assert on_tty.returncode == 0
    shown = b"".join(seen).decode()
    assert "\r" in shown
    assert "100%" in shown
    assert "12.0 MiB" in shown


def test_console_script_points_at_main() -> None:
    """The ``aiostore`` console script is aiostore.cli:main."""
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "aiostore"]
    assert script.value == "aiostore.cli:main"


def test_sigint_handler_is_default_in_children() -> None:
    """Sanity: the test process does not ignore SIGINT, so serve's children receive it."""
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


@needs_file
def test_put_from_a_pipe_stores_all_of_it(tmp_path: Path) -> None:
    """A FIFO (like /dev/stdin or a process substitution) reports size 0: the put must not
    take that as the declared size; the whole stream is stored."""
    config = write_config(tmp_path, file_store=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = os.urandom(100_000)

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = cli("--config", config, "put", "disk", "piped", fifo, cwd=tmp_path)
    writer.join(TIMEOUT)
    assert result.returncode == 0, result.stderr.decode()
    got = cli("--config", config, "get", "disk", "piped", cwd=tmp_path)
    assert got.returncode == 0, got.stderr.decode()
    assert got.stdout == data


@needs_file
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_get_to_a_full_device_fails_in_one_line(tmp_path: Path) -> None:
    """A local write that fails (ENOSPC on stdout) is an operation error: exit 1, one line."""
    config = write_config(tmp_path, file_store=True)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    assert cli("--config", config, "put", "disk", "k", src, cwd=tmp_path).returncode == 0
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "aiostore", "--config", str(config), "get", "disk", "k"],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=TIMEOUT,
            check=False,
        )
    assert "cannot write stdout" in assert_one_line_error(result, 1)
