"""Local disk: aiostore's file driver against raw aiofiles, anyio, opendal, obstore and plain
blocking Python, on the same files in the same scratch directory.

Every put does the same work: md5 + sha256 of the data (what aiostore's put returns), write to
a temporary name, rename it into place and — when aiostore's file driver does by default —
fsync the file and its directory. Peers hash inline, the way their users would, one chunk after
the other; aiostore overlaps hashing with the writes in worker threads. opendal and obstore have
no fsync: a thread opens the written file and fsyncs it and its directory. Gets stream the
object (1 MiB chunks) from the page cache (it was just written), so they measure the client's
cost, not the disk's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._harness import (
    Contender,
    ContenderSpec,
    GiB,
    Group,
    KiB,
    MiB,
    Scenario,
    achunks,
    block,
    chunks,
    rmtree,
    run_limited,
    small_payload,
)

CHUNK = MiB


def _fsync_default() -> bool:
    """Match aiostore's own default, so every contender does the same work."""
    try:
        from aiostore.drivers.file import FileOptions
    except ImportError:
        return True
    field = next((f for f in dataclasses.fields(FileOptions) if f.name == "fsync"), None)
    return True if field is None else bool(field.default)


def _fsync_dir(path: str) -> None:
    """The directory entry must survive a crash like the file (aiostore fsyncs it too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path: str) -> None:
    """fsync a file written by a library that has no fsync of its own, then its directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(os.path.dirname(path))


class _Base(Contender):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.root = Path(self.env["root"])
        self.wdir = self.root / "w" / self.slug
        self.wdir.mkdir(parents=True, exist_ok=True)
        self.size: int = params["size"]
        self.count: int = params["count"]
        self.conc: int = params["concurrency"]
        self.fsync: bool = params["fsync"]
        self.base = block()
        self.payloads = [small_payload(self.base, i) for i in range(self.count)]

    def put_key(self, rnd: int) -> str:
        return f"w/{self.slug}/r{rnd}.bin"

    def small_key(self, rnd: int, i: int) -> str:
        return f"w/{self.slug}/r{rnd}-{i}"

    @staticmethod
    def get_key(i: int | None = None) -> str:
        return "large.bin" if i is None else f"small/{i}.bin"


# -- aiostore ---------------------------------------------------------------------------------


class Aiostore(_Base):
    requires = ("aiostore.drivers.file",)

    async def setup(self) -> None:
        from aiostore import StoreManager

        self.manager = StoreManager(
            {
                "probe": {"interval": 3600},
                "stores": {"f": {"driver": "file", "root": str(self.root)}},
            }
        )
        await self.manager.__aenter__()
        self.store = self.manager["f"]

    async def teardown(self) -> None:
        await self.manager.__aexit__(None, None, None)

    async def op_put(self, rnd: int) -> int:
        obj = await self.store.put(self.put_key(rnd), achunks(self.base, self.size), size=self.size)
        return int(obj.size)

    async def op_get(self, rnd: int) -> int:
        n = 0
        async with self.store.open(self.get_key()) as reader:
            async for chunk in reader:
                n += len(chunk)
        return n

    async def op_put_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.store.put(self.small_key(rnd, i), self.payloads[i])

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def op_get_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.store.read(self.get_key(i))

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n


# -- plain blocking Python --------------------------------------------------------------------


class Blocking(_Base):
    """The serial loop: hash, write, fsync, rename; reads with a plain read loop."""

    def _write(self, path: Path, data: Iterator[bytes]) -> None:
        md5, sha = hashlib.md5(), hashlib.sha256()
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            for chunk in data:
                md5.update(chunk)
                sha.update(chunk)
                f.write(chunk)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            _fsync_dir(str(path.parent))
        md5.hexdigest(), sha.hexdigest()

    def op_put(self, rnd: int) -> int:
        self._write(self.root / self.put_key(rnd), chunks(self.base, self.size))
        return self.size

    def op_get(self, rnd: int) -> int:
        n = 0
        with open(self.root / self.get_key(), "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                n += len(chunk)
        return n

    def op_put_small(self, rnd: int) -> int:
        n = self.n(rnd)
        for i in range(n):
            self._write(self.root / self.small_key(rnd, i), iter((self.payloads[i],)))
        return n

    def op_get_small(self, rnd: int) -> int:
        n = self.n(rnd)
        for i in range(n):
            with open(self.root / self.get_key(i), "rb") as f:
                f.read()
        return n


class WriteOnly(Blocking):
    """Reference: the disk's share of a put — write + fsync + rename, no hashing."""

    def op_put(self, rnd: int) -> int:
        path = self.root / self.put_key(rnd)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            for chunk in chunks(self.base, self.size):
                f.write(chunk)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            _fsync_dir(str(path.parent))
        return self.size

    op_get = None  # type: ignore[assignment]


class ThreeThreads(Blocking):
    """Reference: the same put with md5, sha256 and the writes in three threads of their own,
    fed the same chunks through bounded queues (4 chunks each): the overlap a put can reach
    on this machine (issue 16 quotes 1.86× the serial loop)."""

    def op_put(self, rnd: int) -> int:
        path = self.root / self.put_key(rnd)
        tmp = path.with_name(path.name + ".tmp")
        md5, sha = hashlib.md5(), hashlib.sha256()
        with open(tmp, "wb", buffering=0) as f:
            stages = (md5.update, sha.update, f.write)
            queues: list[queue.Queue[bytes | None]] = [queue.Queue(4) for _ in stages]

            def work(q: queue.Queue[bytes | None], fn: Any) -> None:
                while (chunk := q.get()) is not None:
                    fn(chunk)

            threads = [
                threading.Thread(target=work, args=(q, fn))
                for q, fn in zip(queues, stages, strict=True)
            ]
            for t in threads:
                t.start()
            for chunk in chunks(self.base, self.size):
                for q in queues:
                    q.put(chunk)
            for q in queues:
                q.put(None)
            for t in threads:
                t.join()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            _fsync_dir(str(path.parent))
        md5.hexdigest(), sha.hexdigest()
        return self.size

    op_get = None  # type: ignore[assignment]


class HashOnly(Contender):
    """Reference: the CPU's share of a put — md5 + sha256 of the same bytes, serially, no I/O."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.size: int = params["size"]
        self.base = block()

    def op_put(self, rnd: int) -> int:
        md5, sha = hashlib.md5(), hashlib.sha256()
        for chunk in chunks(self.base, self.size):
            md5.update(chunk)
            sha.update(chunk)
        md5.hexdigest(), sha.hexdigest()
        return self.size


# -- raw aiofiles -----------------------------------------------------------------------------


class Aiofiles(_Base):
    requires = ("aiofiles",)

    async def _write(self, path: Path, data: Any) -> None:
        import asyncio

        import aiofiles
        import aiofiles.os

        md5, sha = hashlib.md5(), hashlib.sha256()
        tmp = path.with_name(path.name + ".tmp")
        async with aiofiles.open(tmp, "wb") as f:
            async for chunk in data:
                md5.update(chunk)
                sha.update(chunk)
                await f.write(chunk)
            if self.fsync:
                await f.flush()
                await asyncio.get_running_loop().run_in_executor(None, os.fsync, f.fileno())
        await aiofiles.os.replace(tmp, path)
        if self.fsync:
            await asyncio.get_running_loop().run_in_executor(None, _fsync_dir, str(path.parent))

    async def op_put(self, rnd: int) -> int:
        await self._write(self.root / self.put_key(rnd), achunks(self.base, self.size))
        return self.size

    async def op_get(self, rnd: int) -> int:
        import aiofiles

        n = 0
        async with aiofiles.open(self.root / self.get_key(), "rb", buffering=0) as f:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        return n

    async def op_put_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self._write(self.root / self.small_key(rnd, i), _one(self.payloads[i]))

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def op_get_small(self, rnd: int) -> int:
        import aiofiles

        async def one(i: int) -> None:
            async with aiofiles.open(self.root / self.get_key(i), "rb") as f:
                await f.read()

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n


async def _one(data: bytes) -> Any:
    yield data


# -- anyio ------------------------------------------------------------------------------------


class Anyio(_Base):
    requires = ("anyio",)

    async def _write(self, path: Path, data: Any) -> None:
        import anyio
        import anyio.to_thread

        md5, sha = hashlib.md5(), hashlib.sha256()
        tmp = path.with_name(path.name + ".tmp")
        async with await anyio.open_file(tmp, "wb") as f:
            async for chunk in data:
                md5.update(chunk)
                sha.update(chunk)
                await f.write(chunk)
            if self.fsync:
                await f.flush()
                await anyio.to_thread.run_sync(os.fsync, f.wrapped.fileno())
        await anyio.Path(tmp).replace(path)
        if self.fsync:
            await anyio.to_thread.run_sync(_fsync_dir, str(path.parent))

    async def op_put(self, rnd: int) -> int:
        await self._write(self.root / self.put_key(rnd), achunks(self.base, self.size))
        return self.size

    async def op_get(self, rnd: int) -> int:
        import anyio

        n = 0
        async with await anyio.open_file(self.root / self.get_key(), "rb", buffering=0) as f:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        return n

    async def op_put_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self._write(self.root / self.small_key(rnd, i), _one(self.payloads[i]))

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def op_get_small(self, rnd: int) -> int:
        import anyio

        async def one(i: int) -> None:
            await anyio.Path(self.root / self.get_key(i)).read_bytes()

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n


# -- opendal ----------------------------------------------------------------------------------


class Opendal(_Base):
    requires = ("opendal",)

    async def setup(self) -> None:
        import opendal

        self.op = opendal.AsyncOperator("fs", root=str(self.root))

    async def _fsync(self, key: str) -> None:
        if self.fsync:
            import anyio.to_thread

            await anyio.to_thread.run_sync(_fsync_path, str(self.root / key))

    async def op_put(self, rnd: int) -> int:
        md5, sha = hashlib.md5(), hashlib.sha256()
        key = self.put_key(rnd)
        async with await self.op.open(key, "wb") as f:
            for chunk in chunks(self.base, self.size):
                md5.update(chunk)
                sha.update(chunk)
                await f.write(chunk)
        await self._fsync(key)
        return self.size

    async def op_get(self, rnd: int) -> int:
        n = 0
        async with await self.op.open(self.get_key(), "rb") as f:
            while chunk := await f.read(CHUNK):
                n += len(chunk)
        return n

    async def op_put_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            data = self.payloads[i]
            hashlib.md5(data), hashlib.sha256(data)
            key = self.small_key(rnd, i)
            await self.op.write(key, data)
            await self._fsync(key)

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def op_get_small(self, rnd: int) -> int:
        async def one(i: int) -> None:
            await self.op.read(self.get_key(i))

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n


# -- obstore ----------------------------------------------------------------------------------


class Obstore(_Base):
    requires = ("obstore",)

    async def setup(self) -> None:
        from obstore.store import LocalStore

        self.store = LocalStore(str(self.root))

    async def _fsync(self, key: str) -> None:
        if self.fsync:
            import anyio.to_thread

            await anyio.to_thread.run_sync(_fsync_path, str(self.root / key))

    async def op_put(self, rnd: int) -> int:
        import obstore as obs

        md5, sha = hashlib.md5(), hashlib.sha256()

        async def hashed() -> Any:
            for chunk in chunks(self.base, self.size):
                md5.update(chunk)
                sha.update(chunk)
                yield chunk

        key = self.put_key(rnd)
        await obs.put_async(self.store, key, hashed())
        await self._fsync(key)
        return self.size

    async def op_get(self, rnd: int) -> int:
        import obstore as obs

        n = 0
        resp = await obs.get_async(self.store, self.get_key())
        async for chunk in resp.stream(min_chunk_size=CHUNK):
            n += len(chunk)
        return n

    async def op_put_small(self, rnd: int) -> int:
        import obstore as obs

        async def one(i: int) -> None:
            data = self.payloads[i]
            hashlib.md5(data), hashlib.sha256(data)
            key = self.small_key(rnd, i)
            await obs.put_async(self.store, key, data)
            await self._fsync(key)

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n

    async def op_get_small(self, rnd: int) -> int:
        import obstore as obs

        async def one(i: int) -> None:
            resp = await obs.get_async(self.store, self.get_key(i))
            await resp.bytes_async()

        n = self.n(rnd)
        await run_limited(n, one, self.conc)
        return n


# -- the group --------------------------------------------------------------------------------

CONTENDERS = (
    ContenderSpec("aiostore", "benchmarks.peers_file:Aiostore", "aiostore"),
    ContenderSpec("plain blocking Python", "benchmarks.peers_file:Blocking", "baseline"),
    ContenderSpec("raw aiofiles", "benchmarks.peers_file:Aiofiles", "baseline"),
    ContenderSpec("anyio", "benchmarks.peers_file:Anyio", "baseline"),
    ContenderSpec("opendal", "benchmarks.peers_file:Opendal"),
    ContenderSpec("obstore", "benchmarks.peers_file:Obstore"),
)
#: Where the limits are: the best overlap of the same work, the disk alone, the hashing alone
#: (file-large puts only).
REFERENCES = (
    ContenderSpec(
        "ref: 3-thread overlap (md5 ‖ sha256 ‖ write)",
        "benchmarks.peers_file:ThreeThreads",
        "reference",
    ),
    ContenderSpec("ref: write + fsync only", "benchmarks.peers_file:WriteOnly", "reference"),
    ContenderSpec("ref: md5 + sha256 only", "benchmarks.peers_file:HashOnly", "reference"),
)


def _after(env: dict[str, Any], spec: ContenderSpec, op: str, rnd: int) -> None:
    if op == "put":
        # Untimed: delete what the put wrote, and let the kernel settle before the next one.
        wdir = Path(env["root"]) / "w" / spec.slug
        rmtree(wdir)
        wdir.mkdir(parents=True, exist_ok=True)
        os.sync()


class FileGroup(Group):
    name = "file"

    def __init__(self, quick: bool, tmp: Path, log_dir: Path) -> None:
        super().__init__(quick, tmp, log_dir)
        self.root = tmp / "file"
        common = {"fsync": _fsync_default(), "concurrency": 64}
        large = {**common, "size": 32 * MiB if quick else GiB, "count": 0}
        small = {**common, "size": 0, "count": 200 if quick else 2000}
        self.large_size, self.small_count = large["size"], small["count"]
        fsync = "fsync, " if common["fsync"] else ""
        repeat = 8 if quick else 3
        self.scenarios = [
            Scenario(
                name="file-large",
                title=f"Local disk, {_size(large['size'])} streaming put / get",
                what=(
                    f"put: md5 + sha256 + write + {fsync}rename of a {_size(large['size'])} "
                    "stream of 1 MiB chunks; get: stream the object back in 1 MiB chunks "
                    f"(page cache; {repeat} times back to back per measurement)."
                ),
                ops=("put", "get"),
                kind="large",
                repeat={"get": repeat},
                contenders=CONTENDERS + REFERENCES,
                params=large,
                group=self.name,
                timeout=300 if quick else 900,
                after=_after,
            ),
            Scenario(
                name="file-small",
                title=f"Local disk, 4 KiB × {small['count']:,} objects, 64 in flight",
                what=(
                    f"put: {small['count']:,} objects of 4 KiB (md5 + sha256 + write + {fsync}"
                    "rename each), 64 in flight (plain Python: one after the other); "
                    "get: read them back."
                ),
                ops=("put", "get"),
                kind="small",
                contenders=CONTENDERS,
                method_suffix="_small",
                params=small,
                group=self.name,
                warmup=True,
                timeout=300 if quick else 900,
                after=_after,
            ),
        ]

    @contextlib.contextmanager
    def env(self) -> Iterator[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        base = block()
        with open(self.root / "large.bin", "wb") as f:
            for chunk in chunks(base, self.large_size):
                f.write(chunk)
        (self.root / "small").mkdir(exist_ok=True)
        for i in range(self.small_count):
            (self.root / "small" / f"{i}.bin").write_bytes(small_payload(base, i))
        os.sync()
        try:
            yield {"root": str(self.root)}
        finally:
            rmtree(self.root)


def _size(n: int) -> str:
    return f"{n // GiB} GiB" if n >= GiB else f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"
