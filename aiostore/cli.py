"""The ``aiostore`` command line: serve the object service and dashboard, inspect capabilities,
and move objects in and out of the configured stores.

Exit codes: 0 success; 1 an operation failed (``NotFound``, ``Duplicate``, a backend error, a
file that cannot be read); 2 a usage error or a bad configuration (``BadStoreConfiguration``, an
unknown store name); 130 interrupted before ``serve`` was up. ``serve`` exits 0 when stopped by
SIGINT or SIGTERM. Errors are one line on stderr: ``aiostore: error: <message>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import IO, Any, Final

from ._cancel import run_sync
from ._manager import StoreManager
from .capabilities.flags import NAMED, Capability
from .capabilities.probe import HealthReport
from .errors import BadStoreConfiguration, StoreError, UnknownStore
from .web._server_options import MAX_PORT, ServerOptions
from .web._server_options import load_config as load_server_config

__all__ = ["DEFAULT_CONFIG", "main"]

PROG: Final = "aiostore"
DEFAULT_ROOT: Final = "./aiostore-data"
#: What every command uses without ``--config``: a file store under ./aiostore-data (created when
#: missing) and an in-process memory store.
DEFAULT_CONFIG: Final[dict[str, Any]] = {
    "default": "local",
    # Local stores can afford a probe a second: a store that turns read-only (or fills up)
    # shows on the dashboard within about two seconds (two failed probes), not twenty.
    "probe": {"interval": 1.0},
    "stores": {
        "local": {"driver": "file", "root": DEFAULT_ROOT},
        "memory": {"driver": "memory"},
    },
}
CHUNK: Final = 1 << 20
#: Transfers at least this big show a progress line (when stderr is a terminal).
PROGRESS_MIN: Final = 8 << 20


class UsageError(Exception):
    """Bad arguments or configuration: exit code 2."""


class OperationError(Exception):
    """A failure outside the stores (a local file): exit code 1."""


# -- helpers ------------------------------------------------------------------------------------


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_config(config: str | None) -> tuple[StoreManager, ServerOptions]:
    """The manager and ``[server]`` options of ``--config FILE``, or of :data:`DEFAULT_CONFIG`.

    Raises:
        UsageError: the configuration has no store (an empty file, a typo in ``[stores.X]``):
            every command would silently do nothing.
    """
    if config is None:
        # The file driver creates ./aiostore-data at start-up when it is missing.
        return StoreManager(DEFAULT_CONFIG), ServerOptions()
    data, server = load_server_config(config)
    stores = data.get("stores")
    if not stores:
        raise UsageError(
            f"the configuration {config!r} defines no store: add at least one [stores.NAME]"
            ' table with a driver, e.g. [stores.local] driver = "file" root = "./data"'
        )
    return StoreManager(data), server


def load_manager(config: str | None) -> StoreManager:
    """The manager of ``--config FILE``, or of :data:`DEFAULT_CONFIG`."""
    return load_config(config)[0]


class Progress:
    """A one-line ``\\r`` progress display on a terminal; silent otherwise."""

    def __init__(self, label: str, total: int | None, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._shown = False
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.enabled = tty and (total is None or total >= PROGRESS_MIN)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.total is None and self.done < PROGRESS_MIN:
            return  # unknown size: only worth a line once it is big
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = _size(self.done / elapsed) + "/s"
        if self.total:
            pct = min(100, self.done * 100 // self.total)
            line = f"{self.label} {pct:3d}% {_size(self.done)} / {_size(self.total)} {rate}"
        else:
            line = f"{self.label} {_size(self.done)} {rate}"
        self.stream.write("\r" + line + "\033[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _caps_names(c: Capability) -> str:
    return "|".join(c.names) or "NONE"


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- commands -----------------------------------------------------------------------------------


async def _caps(manager: StoreManager, args: argparse.Namespace) -> int:
    async with manager:
        if args.json:
            print(json.dumps(manager.snapshot(), indent=2, default=str))
            return 0
        width = max(len(c.name or "") for c in NAMED)
        for i, store in enumerate(manager):
            if i:
                print()
            health = store.health
            state = "healthy" if health.healthy else "DEGRADED"
            print(f"{store.name}  ({store.driver.name}, {store.location_prefix})  {state}")
            print(f"  {'capability':<{width}}  native  configured  current")
            for cap in NAMED:
                native = cap in store.native_capabilities
                configured = cap in store.configured_capabilities
                current = cap in store.capabilities
                now = "yes" if current else ("REVOKED" if configured else "no")
                print(
                    f"  {cap.name:<{width}}  {'yes' if native else 'no':<6}"
                    f"  {'yes' if configured else 'no':<10}  {now}"
                )
            for name, h in health.capabilities.items():
                if h.revoked:
                    print(f"  {name} revoked: {h.reason}")
    return 0


async def _probe(manager: StoreManager, args: argparse.Namespace) -> int:
    async with manager:
        result = await manager.probe(args.store)
        reports = [result] if isinstance(result, HealthReport) else list(result.values())
        if args.json:
            print(json.dumps({r.store: r.to_dict() for r in reports}, indent=2, default=str))
        else:
            for report in reports:
                state = "healthy" if report.healthy else "DEGRADED"
                print(f"{report.store}: {state}, current {_caps_names(report.current)}")
                print(str(report).split("\n", 1)[1] if "\n" in str(report) else "  (no verdicts)")
    return 0


async def _read_chunks(f: IO[bytes], progress: Progress) -> AsyncIterator[bytes]:
    # run_sync (not anyio's): a read still running when Ctrl+C cancels the put finishes before
    # the file is closed under it.
    while True:
        try:
            chunk = await run_sync(f.read, CHUNK)
        except OSError as exc:  # the local file, not the store, failed
            raise OperationError(f"cannot read the input: {exc.strerror or exc}") from exc
        if not chunk:
            return
        progress.update(len(chunk))
        yield chunk


async def _put(manager: StoreManager, args: argparse.Namespace) -> int:
    metadata = None
    if args.metadata is not None:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as exc:
            raise UsageError(f"--metadata is not valid JSON: {exc}") from exc
    if args.file == "-":
        src: IO[bytes] = sys.stdin.buffer
        size = None
        close = False
    else:
        try:
            src = await run_sync(open, args.file, "rb")
        except OSError as exc:
            raise OperationError(f"cannot read {args.file!r}: {exc.strerror}") from exc
        st = os.fstat(src.fileno())
        # Only a regular file's size is its length: a pipe or a device says 0.
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
        close = True
    try:
        async with manager:
            store = manager[args.store]
            progress = Progress(f"put {args.key}", size)
            try:
                obj = await store.put(
                    args.key,
                    _read_chunks(src, progress),
                    size=size,
                    overwrite=args.overwrite,
                    metadata=metadata,
                )
            finally:
                progress.close()
    finally:
        if close:
            src.close()
    if args.json:
        print(
            json.dumps(
                {
                    "location": obj.location,
                    "store": obj.store,
                    "key": obj.key,
                    "size": obj.size,
                    "checksum": obj.checksum,
                    "multihash": obj.multihash,
                    "hash_algo": obj.hash_algo,
                    "metadata": dict(obj.metadata),
                }
            )
        )
    else:
        print(f"{obj.location}\t{obj.size}\tmd5:{obj.checksum}")
    return 0


async def _get(manager: StoreManager, args: argparse.Namespace) -> int:
    to_stdout = args.file in (None, "-")
    async with manager:
        store = manager[args.store]
        reader = store.open(args.key, offset=args.offset, length=args.length)
        async with reader:
            progress = Progress(f"get {args.key}", reader.size)
            if to_stdout:
                out = sys.stdout.buffer
                try:
                    async for chunk in reader:
                        await _write(out.write, chunk, "stdout")
                        progress.update(len(chunk))
                    await _write(out.flush, None, "stdout")
                finally:
                    progress.close()
                return 0
            # Into a temporary file beside the target, renamed at the end: a failed download
            # never leaves a partial file under the target's name.
            try:
                target, fd, tmp = await run_sync(_temp_beside, args.file)
            except OSError as exc:
                raise OperationError(f"cannot write {args.file!r}: {exc.strerror}") from exc
            try:
                with os.fdopen(fd, "wb") as f:
                    # mkstemp made it 0600: a downloaded file gets the mode any new file gets.
                    os.fchmod(f.fileno(), 0o666 & ~_umask())
                    async for chunk in reader:
                        await _write(f.write, chunk, repr(args.file))
                        progress.update(len(chunk))
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            finally:
                progress.close()
    return 0


async def _write(write: Callable[..., object], chunk: bytes | None, where: str) -> None:
    """``write(chunk)`` (or ``write()``) in a worker thread that never outlives the caller (the
    file is closed only after it); a failing local write is an operation error, not a crash."""
    try:
        if chunk is None:
            await run_sync(write)
        else:
            await run_sync(write, chunk)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OperationError(f"cannot write {where}: {exc.strerror or exc}") from exc


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (the CLI runs no other thread yet)
    os.umask(mask)
    return mask


def _temp_beside(path: str) -> tuple[str, int, str]:
    target = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".aiostore-", suffix=".part", dir=os.path.dirname(target))
    return target, fd, tmp


async def _ls(manager: StoreManager, args: argparse.Namespace) -> int:
    async with manager:
        store = manager[args.store]
        lister = store.list(args.prefix)
        try:
            async for info in lister:
                if args.json:
                    line = json.dumps(
                        {
                            "key": info.key,
                            "size": info.size,
                            "modified": info.modified,
                            "metadata": dict(info.metadata),
                        }
                    )
                elif args.long:
                    line = f"{info.size:>12}  {_iso(info.modified)}  {info.key}"
                else:
                    line = info.key
                print(line)
        finally:
            await lister.aclose()
    return 0


async def _rm(manager: StoreManager, args: argparse.Namespace) -> int:
    async with manager:
        store = manager[args.store]
        for key in args.keys:
            await store.delete(key)
    return 0


# -- serve --------------------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve --host {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        # Listening now means the URL printed at start-up is good at once: connections wait in
        # the backlog until the app is up.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OperationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback one."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve --host {host!r}: {exc.strerror}") from exc
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_loopback for info in infos
    )


def _server_options(args: argparse.Namespace, server: ServerOptions) -> ServerOptions:
    """The ``[server]`` table with the command line's flags on top."""
    flags = {
        name: getattr(args, name)
        for name in ("host", "port", "token_file", "read_token_file")
        if getattr(args, name) is not None
    }
    try:
        server = dataclasses.replace(server, **flags)
    except BadStoreConfiguration as exc:
        option = f"--{exc.option.replace('_', '-')}" if exc.option else "[server]"
        raise UsageError(f"{option}: {exc.detail.removeprefix(f'option {exc.option!r}: ')}")
    if server.token_file is None and not args.insecure and not _is_loopback(server.host):
        raise UsageError(
            f"refusing to serve on {server.host!r} without a token: anyone who can reach it"
            " could read and delete every object. Give --token-file PATH (or [server]"
            " token_file), listen on 127.0.0.1, or pass --insecure if that is really meant"
        )
    return server


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .web import create_app

    manager, server = load_config(args.config)
    server = _server_options(args, server)
    app = create_app(manager, server=server)  # reads the token files: before binding
    sock = _bind(server.host, server.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"

    async def announce(app: web.Application) -> None:
        stores = ", ".join(f"{s.name} ({s.driver.name})" for s in manager)
        print(f"{PROG}: serving {stores}", flush=True)
        if server.token_file is not None:
            print(f"{PROG}: requests need the token of {server.token_file}", flush=True)
        print(f"{PROG}: dashboard at {url}  (Ctrl+C to stop)", flush=True)

    async def goodbye(app: web.Application) -> None:
        print(f"{PROG}: stopped", flush=True)

    app.on_startup.append(announce)
    app.on_cleanup.append(goodbye)
    # run_app turns SIGINT and SIGTERM into a graceful shutdown: running requests finish (up
    # to shutdown_timeout), /events streams end, the manager closes; then it returns normally.
    web.run_app(app, sock=sock, print=None, shutdown_timeout=10.0)
    return 0


# -- argument parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``aiostore`` argument parser."""

    def common(top: bool = False) -> argparse.ArgumentParser:
        # Global options are accepted before and after the command. Separate parsers (not one
        # shared parent) so a subcommand's unset option never overwrites the global one.
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument(
            "--config",
            metavar="FILE",
            default=None if top else argparse.SUPPRESS,
            help="TOML configuration (default: a file store 'local' in ./aiostore-data"
            " and a memory store 'memory')",
        )
        p.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0 if top else argparse.SUPPRESS,
            help="more logging (-vv: debug)",
        )
        return p

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Async blob storage with capabilities that follow backend health.",
        parents=[common(top=True)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "serve", parents=[common()], help="run the REST object service and the dashboard"
    )
    p.add_argument(
        "--host", default=None, help="address to listen on ([server] host, else 127.0.0.1)"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=None,
        help="port 0-65535; 0 picks a free one ([server] port, else 8080)",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        default=None,
        help="ask every request for the bearer token in PATH ([server] token_file)",
    )
    p.add_argument(
        "--read-token-file",
        metavar="PATH",
        default=None,
        help="a second token that may only read: GET and HEAD ([server] read_token_file)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening on a non-loopback address without a token",
    )

    p = sub.add_parser("caps", parents=[common()], help="each store's capabilities after a probe")
    p.add_argument("--json", action="store_true", help="the full snapshot as JSON")

    p = sub.add_parser("probe", parents=[common()], help="probe stores now and show their health")
    p.add_argument("store", nargs="?", help="one store (default: all)")
    p.add_argument("--json", action="store_true", help="health reports as JSON")

    p = sub.add_parser("put", parents=[common()], help="store a file (or stdin) under a key")
    p.add_argument("store")
    p.add_argument("key")
    p.add_argument("file", metavar="FILE|-", help="the file to upload, or - for stdin")
    p.add_argument("--overwrite", action="store_true", help="replace an existing object")
    p.add_argument("--metadata", metavar="JSON", help='metadata, e.g. \'{"owner": "me"}\'')
    p.add_argument("--json", action="store_true", help="print the stored object as JSON")

    p = sub.add_parser("get", parents=[common()], help="read an object into a file or stdout")
    p.add_argument("store")
    p.add_argument("key")
    p.add_argument("file", metavar="FILE|-", nargs="?", help="target file (default: stdout)")
    p.add_argument("--offset", type=_non_negative, default=0, help="first byte to read")
    p.add_argument("--length", type=_non_negative, default=None, help="bytes to read at most")

    p = sub.add_parser("ls", parents=[common()], help="list keys")
    p.add_argument("store")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("-l", "--long", action="store_true", help="size and modification time too")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("rm", parents=[common()], help="delete objects")
    p.add_argument("store")
    p.add_argument("keys", metavar="KEY", nargs="+")
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be 0-{MAX_PORT}, not {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, not {value}")
    return value


_COMMANDS: Final[
    dict[str, Callable[[StoreManager, argparse.Namespace], Coroutine[Any, Any, int]]]
] = {
    "caps": _caps,
    "probe": _probe,
    "put": _put,
    "get": _get,
    "ls": _ls,
    "rm": _rm,
}


def _setup_logging(verbose: int, serve: bool) -> None:
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose or serve else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("aiostore").setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.command == "serve")
    try:
        if args.command == "serve":
            return _serve(args)
        manager, _server = load_config(args.config)
        return asyncio.run(_COMMANDS[args.command](manager, args))
    except (BadStoreConfiguration, UnknownStore, UsageError) as exc:
        return _fail(_one_line(str(exc)), 2)
    except (StoreError, OperationError) as exc:
        return _fail(_one_line(str(exc)), 1)
    except BrokenPipeError:
        # The reader of stdout went away (``| head``): not worth a message.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
