"""The memory driver: what the facade and the check routine cost, against a direct driver-session
call and a plain dict (the floor). No I/O: everything here is Python overhead.

* ``put`` / ``read``: one 4 KiB object at a time, awaited in a loop.
* ``check``: the check routine a read runs before any I/O (``Store._check("read", ...)``) against
  a dict lookup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._harness import Contender, ContenderSpec, Group, Scenario, block, small_payload


class _Base(Contender):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.count: int = params["count"]
        self.checks: int = params["checks"]
        base = block()
        self.payloads = [small_payload(base, i) for i in range(self.count)]
        self.keys = [f"small/{i}" for i in range(self.count)]


async def _stream(data: bytes) -> Any:
    yield data


class Aiostore(_Base):
    """Through the facade: key validation, check routine, session pool, hashing."""

    async def setup(self) -> None:
        from aiostore import StoreManager

        self.manager = StoreManager(
            {"probe": {"interval": 3600}, "stores": {"m": {"driver": "memory"}}}
        )
        await self.manager.__aenter__()
        self.store = self.manager["m"]
        for key, data in zip(self.keys, self.payloads, strict=True):
            await self.store.put(key, data)

    async def teardown(self) -> None:
        await self.manager.__aexit__(None, None, None)

    async def op_put(self, rnd: int) -> int:
        put = self.store.put
        for i, data in enumerate(self.payloads):
            await put(f"p{rnd}/{i}", data)
        return self.count

    def after_put(self, rnd: int) -> None:
        objects = self.store.driver.objects
        for i in range(self.count):
            objects.pop(f"p{rnd}/{i}", None)

    async def op_read(self, rnd: int) -> int:
        read = self.store.read
        for key in self.keys:
            await read(key)
        return self.count

    def op_check(self, rnd: int) -> int:
        check = self.store._check
        key = self.keys[0]
        for _ in range(self.checks):
            check("read", key, offset=0, length=None)
        return self.checks

    def op_check_routine(self, rnd: int) -> int:
        from aiostore.capabilities.check import check

        store = self.store
        snapshot, reasons = store._state.snapshot, store._health.reason_for
        key = self.keys[0]
        for _ in range(self.checks):
            check("m", snapshot, "read", key, reasons, offset=0, length=None)
        return self.checks


class Direct(_Base):
    """The memory driver's session, called directly: no facade, no hashing."""

    async def setup(self) -> None:
        from aiostore.drivers.memory import MemoryDriver, MemoryOptions

        self.driver = MemoryDriver("m", MemoryOptions())
        self.session = await self.driver.open_session()
        for key, data in zip(self.keys, self.payloads, strict=True):
            await self.session.put(key, _stream(data), size=len(data), overwrite=False, metadata={})

    async def op_put(self, rnd: int) -> int:
        put = self.session.put
        for i, data in enumerate(self.payloads):
            await put(f"p{rnd}/{i}", _stream(data), size=len(data), overwrite=False, metadata={})
        return self.count

    def after_put(self, rnd: int) -> None:
        for i in range(self.count):
            self.driver.objects.pop(f"p{rnd}/{i}", None)

    async def op_read(self, rnd: int) -> int:
        read = self.session.read
        for key in self.keys:
            await read(key, 0, None)
        return self.count


class Dict(_Base):
    """A dict: the floor of any in-memory store."""

    async def setup(self) -> None:
        self.d = dict(zip(self.keys, self.payloads, strict=True))

    def op_put(self, rnd: int) -> int:
        d = self.d
        for i, data in enumerate(self.payloads):
            d[f"p{rnd}/{i}"] = data
        return self.count

    def after_put(self, rnd: int) -> None:
        for i in range(self.count):
            self.d.pop(f"p{rnd}/{i}", None)

    def op_read(self, rnd: int) -> int:
        d = self.d
        for key in self.keys:
            d[key]
        return self.count

    def op_check(self, rnd: int) -> int:
        d = self.d
        key = self.keys[0]
        for _ in range(self.checks):
            d[key]
        return self.checks

    op_check_routine = op_check


class MemoryGroup(Group):
    name = "memory"

    def __init__(self, quick: bool, tmp: Path, log_dir: Path) -> None:
        super().__init__(quick, tmp, log_dir)
        params = {"count": 10_000 if quick else 100_000, "checks": 100_000 if quick else 1_000_000}
        self.scenarios = [
            Scenario(
                name="memory",
                title="Memory driver: facade and check-routine overhead",
                what=(
                    f"put / read: {params['count']:,} objects of 4 KiB, one at a time (aiostore"
                    " hashes md5 + sha256 on put; the direct session and the dict do not); "
                    f"check: {params['checks']:,} checks of a read as every operation runs them"
                    " (`Store._check`); check-routine: the check routine alone"
                    " (`aiostore.capabilities.check.check`); the dict does as many lookups."
                ),
                ops=("put", "read", "check", "check-routine"),
                kind="micro",
                contenders=(
                    ContenderSpec("aiostore", "benchmarks.peers_memory:Aiostore", "aiostore"),
                    ContenderSpec(
                        "memory driver session (direct)",
                        "benchmarks.peers_memory:Direct",
                        "baseline",
                    ),
                    ContenderSpec("dict (reference)", "benchmarks.peers_memory:Dict", "reference"),
                ),
                params=params,
                group=self.name,
                warmup=True,
                timeout=120 if quick else 600,
            )
        ]
