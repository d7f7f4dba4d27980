"""One conformance suite for every aiostore driver: built-in ones and yours.

The suite is a test class to subclass: point it at your store and pytest runs every contract
check against it (put, read, ranges, write, delete, list, stat, Duplicate, SizeMismatch,
InvalidKey, cancellation, metadata, the check routine, probing). Tests that need a capability
the store is not configured with skip with the reason; so does every write-side test on a
read-only store.

Usage, in a test module of your driver's package (pytest-asyncio must be installed; installing
aiostore makes the plugin available)::

    import pytest
    from aiostore.testing.conformance import ConformanceSuite

    class TestMyDriver(ConformanceSuite):
        @pytest.fixture
        def store_config(self, tmp_path):
            # One store's table, as in the TOML configuration: the driver by its entry point
            # name (group "aiostore.drivers") or the Driver class itself, plus its options.
            return {"driver": "mydriver", "root": str(tmp_path)}

The suite builds a :class:`~aiostore.StoreManager` holding that one store (probing every
0.2 s unless the table has its own ``probe``), enters it, and tears it down after each test.
Every test writes under a fresh key prefix, so a shared backend works too.

Other hooks, all optional:

- ``store`` — override this async fixture to hand the suite a running
  :class:`~aiostore.Store` of your own (it then ignores ``store_config``).
- ``seed`` — a fixture returning ``seed(key, data)`` (sync or async) that creates an object
  *without* the store. Read-only stores (an HTTP mirror) need it for the read-side tests; when
  it is absent the suite creates objects with ``store.put``.
- class attributes: :attr:`~ConformanceSuite.supports_listing` (False: ``list`` must refuse
  with a permanent ``StoreGetNotSupported``), :attr:`~ConformanceSuite.large_size`,
  :attr:`~ConformanceSuite.concurrent_puts`, :attr:`~ConformanceSuite.timeout_per_test`.

The aiostore plugin marks the suite's tests ``asyncio`` when no mark of yours applies, so
pytest-asyncio's strict mode needs no configuration. To run them on a module-scoped loop, set
``pytestmark = pytest.mark.asyncio(loop_scope="module")`` on your subclass or module (the
suite's fixtures follow the test's loop).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import io
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, ClassVar, Final, Protocol, TypeAlias, TypeVar

import pytest

from .. import errors
from .._manager import StoreManager
from .._store import Store
from ..capabilities.flags import Capability
from ._faults import FaultInjector
from ._plugin import async_fixture

__all__ = ["ConformanceSuite", "Seeder"]

_C = Capability
#: Probe settings of the store the suite builds from ``store_config``.
SUITE_PROBE: Final[Mapping[str, Any]] = {"interval": 0.2, "timeout": 5.0}
#: Keys every store must refuse with InvalidKey before any I/O.
BAD_KEYS: Final = (
    "",
    "/leading",
    "a//b",
    "trailing/",
    "a/./b",
    "a/../b",
    "..",
    "nul\x00byte",
    "new\nline",
    "x" * 1025,
)

_T = TypeVar("_T", bound=Callable[..., Awaitable[None]])
#: The suite's ``create`` fixture: ``await create(key, data)``.
Create: TypeAlias = Callable[[str, bytes], Awaitable[None]]


class Seeder(Protocol):
    """``seed(key, data)``: create the object ``key`` out of band (sync or async)."""

    def __call__(self, key: str, data: bytes, /) -> Awaitable[None] | None: ...


def _bounded(test: _T) -> _T:
    """Fail a test that runs longer than the suite's ``timeout_per_test`` instead of hanging."""

    @functools.wraps(test)
    async def wrapper(self: ConformanceSuite, *args: Any, **kwargs: Any) -> None:
        deadline = asyncio.timeout(self.timeout_per_test)
        try:
            async with deadline:
                await test(self, *args, **kwargs)
        except TimeoutError:
            if deadline.expired():
                pytest.fail(f"{test.__name__} took longer than {self.timeout_per_test}s")
            raise

    return wrapper  # type: ignore[return-value]


def _blob(size: int, salt: bytes = b"") -> bytes:
    """``size`` deterministic, non-repeating-looking bytes (so ranges are checkable)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(salt + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


class _Chunks:
    """A sync iterable of chunks that records how far it was consumed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.taken += 1
            yield chunk


class _AsyncFile:
    """The smallest async file object: ``async read(n)``."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    async def read(self, size: int = -1) -> bytes:
        await asyncio.sleep(0)
        return self._buf.read(size)


async def _aiter(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def _keys(store: Store, prefix: str) -> dict[str, int]:
    return {info.key: info.size async for info in store.list(prefix)}


class ConformanceSuite:
    """Contract tests for one store. Subclass it (the name must start with ``Test``) and provide
    ``store_config`` (or ``store``); see the module docstring."""

    # The plugin marks these tests ``asyncio`` unless the user's own mark applies.
    __aiostore_conformance__: ClassVar[bool] = True

    #: False when the driver cannot enumerate objects (plain HTTP): ``list`` must then refuse
    #: with ``StoreGetNotSupported(transient=False)``.
    supports_listing: ClassVar[bool] = True
    #: Size of the object the streaming tests move (several chunks of any driver).
    large_size: ClassVar[int] = 3 * 1024 * 1024 + 17
    #: How many create-only puts race for one key.
    concurrent_puts: ClassVar[int] = 8
    #: Seconds one test may take.
    timeout_per_test: ClassVar[float] = 60.0

    # -- fixtures to override ---------------------------------------------------------------------
    @pytest.fixture
    def store_config(self) -> Mapping[str, Any]:
        """Override: the store's configuration table (``{"driver": ..., options...}``)."""
        pytest.fail(
            f"{type(self).__name__} must override the 'store_config' fixture (a store's table,"
            " e.g. {'driver': 'mydriver', ...}) or the 'store' fixture",
            pytrace=False,
        )

    @pytest.fixture
    def seed(self) -> Seeder | None:
        """Override for read-only stores: ``seed(key, data)`` creates an object out of band."""
        return None

    @async_fixture
    async def store(self, store_config: Mapping[str, Any]) -> AsyncIterator[Store]:
        """The running store under test, in a manager of its own (override to bring yours)."""
        table = dict(store_config)
        table.setdefault("probe", dict(SUITE_PROBE))
        async with StoreManager({"stores": {"conformance": table}}) as manager:
            yield manager["conformance"]

    # -- helpers --------------------------------------------------------------------------------
    @pytest.fixture
    def key_prefix(self) -> str:
        """A fresh key prefix per test, so a shared backend works."""
        return f"conformance-{uuid.uuid4().hex[:12]}/"

    @pytest.fixture
    def create(self, store: Store, seed: Seeder | None) -> Create:
        """``await create(key, data)``: the object exists afterwards (via ``seed`` or put)."""

        async def create(key: str, data: bytes) -> None:
            if seed is not None:
                result = seed(key, data)
                if inspect.isawaitable(result):
                    await result
                return
            if _C.WRITE_ACCESS not in store.configured_capabilities:
                pytest.skip(
                    f"store {store.name!r} is read-only and the suite has no 'seed' fixture to"
                    " create objects with"
                )
            await store.put(key, data, overwrite=True)

        return create

    # -- reads ----------------------------------------------------------------------------------
    @_bounded
    async def test_read_whole_object(self, store: Store, create: Create, key_prefix: str) -> None:
        data = _blob(1000, b"whole")
        key = f"{key_prefix}whole.bin"
        await create(key, data)
        assert await store.read(key) == data
        async with store.open(key) as reader:
            assert reader.size == len(data)
            assert await reader.read() == data

    @_bounded
    async def test_read_empty_object(self, store: Store, create: Create, key_prefix: str) -> None:
        key = f"{key_prefix}empty"
        await create(key, b"")
        assert await store.read(key) == b""
        assert (await store.stat(key)).size == 0
        async with store.open(key) as reader:
            assert [chunk async for chunk in reader] == []

    @_bounded
    @pytest.mark.needs_capability(_C.READ_RANDOM)
    async def test_read_ranges(self, store: Store, create: Create, key_prefix: str) -> None:
        data = _blob(777, b"ranges")
        key = f"{key_prefix}ranges.bin"
        await create(key, data)
        cases = [
            (0, None),
            (1, None),
            (100, 50),
            (0, 1),
            (0, 0),
            (776, None),
            (770, 100),  # past the end: what exists
            (777, None),  # at the end: nothing
            (5000, 10),  # beyond the end: nothing
            (0, 10_000),
        ]
        for offset, length in cases:
            got = await store.read(key, offset=offset, length=length)
            end = None if length is None else offset + length
            assert got == data[offset:end], (offset, length)
            async with store.open(key, offset=offset, length=length) as reader:
                streamed = await reader.read()
                assert reader.size == len(data[offset:end]), (offset, length)
            assert streamed == data[offset:end], (offset, length)

    @_bounded
    async def test_open_streams_a_large_object_in_chunks(
        self, store: Store, create: Create, key_prefix: str
    ) -> None:
        data = _blob(self.large_size, b"large")
        key = f"{key_prefix}large.bin"
        await create(key, data)
        chunks: list[bytes] = []
        async with store.open(key) as reader:
            assert reader.size == len(data)
            async for chunk in reader:
                assert isinstance(chunk, bytes) and chunk
                chunks.append(chunk)
        assert b"".join(chunks) == data
        # Stopping early releases the reader; the store keeps working.
        for _ in range(3):
            async with store.open(key) as reader:
                first = await reader.__anext__()
                assert data.startswith(first)
        assert await store.read(key) == data

    @_bounded
    async def test_cancelled_read_releases_the_store(
        self, store: Store, create: Create, key_prefix: str
    ) -> None:
        data = _blob(self.large_size, b"cancel-read")
        key = f"{key_prefix}cancel-read.bin"
        await create(key, data)
        started = asyncio.Event()

        async def consume() -> None:
            async with store.open(key) as reader:
                async for _ in reader:
                    started.set()
                    await asyncio.sleep(3600)

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), self.timeout_per_test / 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.read(key) == data

    @_bounded
    async def test_missing_object(self, store: Store, key_prefix: str) -> None:
        key = f"{key_prefix}missing"
        assert await store.exists(key) is False
        with pytest.raises(errors.NotFound) as info:
            await store.read(key)
        assert info.value.store == store.name and info.value.key == key
        with pytest.raises(errors.NotFound):
            await store.stat(key)
        with pytest.raises(errors.NotFound):
            async with store.open(key) as reader:
                await reader.read()

    @_bounded
    async def test_stat_and_exists(self, store: Store, create: Create, key_prefix: str) -> None:
        data = _blob(4321, b"stat")
        key = f"{key_prefix}dir/stat.bin"
        await create(key, data)
        assert await store.exists(key) is True
        info = await store.stat(key)
        assert info.key == key
        assert info.size == len(data)
        assert isinstance(info.metadata, Mapping)
        if info.modified is not None:
            assert abs(time.time() - info.modified) < 24 * 3600
        # A "directory" is not an object.
        assert await store.exists(f"{key_prefix}dir") is False

    @_bounded
    async def test_unusual_but_valid_keys(
        self, store: Store, create: Create, key_prefix: str
    ) -> None:
        for i, name in enumerate(["ü ñ é.txt", "a+b=c&d", "100%25 sure", "sp ace/x", "#?;,"]):
            key = f"{key_prefix}{name}"
            data = f"object {i}".encode()
            await create(key, data)
            assert await store.read(key) == data, key
            assert (await store.stat(key)).size == len(data), key
            assert store.location(key).startswith(store.location_prefix)

    # -- listing --------------------------------------------------------------------------------
    @_bounded
    async def test_list_by_prefix(self, store: Store, create: Create, key_prefix: str) -> None:
        if not self.supports_listing:
            with pytest.raises(errors.StoreGetNotSupported) as info:
                await _keys(store, key_prefix)
            assert info.value.transient is False
            return
        objects = {
            f"{key_prefix}a/1": b"1",
            f"{key_prefix}a/2": b"22",
            f"{key_prefix}a/b/3": b"333",
            f"{key_prefix}ab": b"4444",
            f"{key_prefix}b/1": b"55555",
        }
        for key, data in objects.items():
            await create(key, data)
        expect = {k: len(v) for k, v in objects.items()}
        assert await _keys(store, key_prefix) == expect
        assert await _keys(store, f"{key_prefix}a/") == {
            k: n for k, n in expect.items() if k.startswith(f"{key_prefix}a/")
        }
        # A prefix is a string prefix, not only a directory.
        assert await _keys(store, f"{key_prefix}a") == {
            k: n for k, n in expect.items() if k.startswith(f"{key_prefix}a")
        }
        assert await _keys(store, f"{key_prefix}nothing/") == {}
        listed = [info.key async for info in store.list(key_prefix)]
        assert len(listed) == len(set(listed))
        # Stopping a listing early is fine.
        lister = store.list(key_prefix)
        await lister.__anext__()
        await lister.aclose()

    # -- writes ---------------------------------------------------------------------------------
    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_put_returns_stored_object(self, store: Store, key_prefix: str) -> None:
        data = _blob(5000, b"put")
        key = f"{key_prefix}put.bin"
        stored = await store.put(key, data, metadata={"a": "b"})
        assert stored.key == key
        assert stored.store == store.name
        assert stored.size == len(data)
        assert stored.location == store.location(key)
        assert stored.location.startswith(store.location_prefix)
        assert stored.checksum == hashlib.md5(data).hexdigest()
        assert stored.hash_algo == "sha256"
        assert stored.multihash == hashlib.sha256(data).hexdigest()
        assert dict(stored.metadata) == {"a": "b"}
        assert await store.read(key) == data
        other = await store.put(f"{key_prefix}put512.bin", data, hash_algo="sha512")
        assert other.multihash == hashlib.sha512(data).hexdigest()

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_put_accepts_every_input_kind(self, store: Store, key_prefix: str) -> None:
        data = _blob(70_000, b"kinds")
        pieces = [data[i : i + 8192] for i in range(0, len(data), 8192)]
        inputs: dict[str, Any] = {
            "bytes": data,
            "bytearray": bytearray(data),
            "memoryview": memoryview(data),
            "iterable": pieces,
            "async-iterable": _aiter(pieces),
            "file": io.BytesIO(data),
            "async-file": _AsyncFile(data),
        }
        for kind, value in inputs.items():
            key = f"{key_prefix}{kind}"
            stored = await store.put(key, value)
            assert stored.size == len(data), kind
            assert stored.checksum == hashlib.md5(data).hexdigest(), kind
            assert await store.read(key) == data, kind
        stored = await store.put(f"{key_prefix}sized", pieces, size=len(data))
        assert stored.size == len(data)

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_put_streams_a_large_object(self, store: Store, key_prefix: str) -> None:
        data = _blob(self.large_size, b"stream")
        key = f"{key_prefix}stream.bin"
        pieces = [data[i : i + 65_536] for i in range(0, len(data), 65_536)]
        stored = await store.put(key, _aiter(pieces), size=len(data))
        assert stored.size == len(data)
        assert stored.checksum == hashlib.md5(data).hexdigest()
        assert (await store.stat(key)).size == len(data)
        assert await store.read(key) == data

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_duplicate_and_overwrite(self, store: Store, key_prefix: str) -> None:
        key = f"{key_prefix}dup"
        await store.put(key, b"first", metadata={"v": "1"})
        with pytest.raises(errors.Duplicate) as info:
            await store.put(key, b"second")
        assert info.value.store == store.name and info.value.key == key
        assert await store.read(key) == b"first"
        stored = await store.put(key, b"third!", overwrite=True, metadata={"v": "3"})
        assert stored.size == 6
        assert await store.read(key) == b"third!"
        info2 = await store.stat(key)
        assert info2.size == 6
        assert dict(info2.metadata) == {"v": "3"}

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_concurrent_create_only_puts_have_one_winner(
        self, store: Store, key_prefix: str
    ) -> None:
        key = f"{key_prefix}race"
        payloads = [_blob(20_000 + i, bytes([i])) for i in range(self.concurrent_puts)]
        results = await asyncio.gather(
            *(store.put(key, p) for p in payloads), return_exceptions=True
        )
        winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, errors.Duplicate) for r in losers), losers
        assert await store.read(key) == payloads[winners[0]]

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_size_mismatch_stores_nothing(self, store: Store, key_prefix: str) -> None:
        data = _blob(10_000, b"size")
        too_long, too_short = f"{key_prefix}too-long", f"{key_prefix}too-short"
        with pytest.raises(errors.SizeMismatch):
            await store.put(too_long, data, size=len(data) - 1)
        with pytest.raises(errors.SizeMismatch):
            await store.put(too_short, _aiter([data[:4000], data[4000:]]), size=len(data) + 1)
        assert await store.exists(too_long) is False
        assert await store.exists(too_short) is False
        # A failed overwrite leaves the old object whole.
        key = f"{key_prefix}kept"
        await store.put(key, b"original")
        with pytest.raises(errors.SizeMismatch):
            await store.put(key, data, size=3, overwrite=True)
        assert await store.read(key) == b"original"

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_failing_input_stores_nothing(self, store: Store, key_prefix: str) -> None:
        class Boom(Exception):
            pass

        async def failing() -> AsyncIterator[bytes]:
            yield _blob(50_000, b"boom")
            yield _blob(50_000, b"boom2")
            raise Boom("the input broke")

        key = f"{key_prefix}broken"
        with pytest.raises(Boom):
            await store.put(key, failing())
        assert await store.exists(key) is False
        await store.put(key, b"original")
        with pytest.raises(Boom):
            await store.put(key, failing(), overwrite=True)
        assert await store.read(key) == b"original"

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_cancelled_put_leaves_nothing(self, store: Store, key_prefix: str) -> None:
        for existing in (None, b"original"):
            key = f"{key_prefix}cancelled-{existing is not None}"
            if existing is not None:
                await store.put(key, existing)
            consumed = asyncio.Event()

            async def stalling(consumed: asyncio.Event) -> AsyncIterator[bytes]:
                yield _blob(100_000, b"stall")
                consumed.set()
                await asyncio.sleep(3600)
                yield b"never"

            task = asyncio.create_task(store.put(key, stalling(consumed), overwrite=True))
            await asyncio.wait_for(consumed.wait(), self.timeout_per_test / 2)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            if existing is None:
                assert await store.exists(key) is False
            else:
                assert await store.read(key) == existing
            if self.supports_listing:
                assert set(await _keys(store, key)) <= {key}

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_delete(self, store: Store, key_prefix: str) -> None:
        key = f"{key_prefix}deleted"
        await store.put(key, b"x")
        await store.delete(key)
        assert await store.exists(key) is False
        with pytest.raises(errors.NotFound):
            await store.read(key)
        with pytest.raises(errors.NotFound) as info:
            await store.delete(key)
        assert info.value.key == key
        await store.put(key, b"again")
        assert await store.read(key) == b"again"

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_metadata_round_trip(self, store: Store, key_prefix: str) -> None:
        metadata = {
            "author": "Zoë",
            "empty": "",
            "tags": ["a", "b c"],
            "nested": {"k": "v", "list": [{"deep": "yes"}]},
        }
        key = f"{key_prefix}meta"
        stored = await store.put(key, b"with metadata", metadata=metadata)
        assert dict(stored.metadata) == metadata
        assert _plain((await store.stat(key)).metadata) == metadata
        plain = f"{key_prefix}no-meta"
        await store.put(plain, b"none")
        assert dict((await store.stat(plain)).metadata) == {}
        with pytest.raises(errors.InvalidMetadata):
            await store.put(f"{key_prefix}bad-meta", b"x", metadata={"n": 1})
        assert await store.exists(f"{key_prefix}bad-meta") is False

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_CHUNK)
    async def test_write_patches_in_place(self, store: Store, key_prefix: str) -> None:
        key = f"{key_prefix}patch"
        await store.put(key, b"hello world")
        assert await store.write(key, b"HELLO", offset=0) == 5
        assert await store.read(key) == b"HELLO world"
        if _C.WRITE_OFFSET in store.configured_capabilities:
            assert await store.write(key, b"W", offset=6) == 1
            assert await store.read(key) == b"HELLO World"
        assert (await store.stat(key)).size == 11
        with pytest.raises(errors.NotFound):
            await store.write(f"{key_prefix}missing", b"x", offset=0)

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_unknown_hash_algo_reads_nothing(self, store: Store, key_prefix: str) -> None:
        chunks = _Chunks([b"a", b"b"])
        with pytest.raises(errors.UnknownHashingAlgo):
            await store.put(f"{key_prefix}hash", chunks, hash_algo="no-such-hash")
        assert chunks.taken == 0
        assert await store.exists(f"{key_prefix}hash") is False

    # -- keys and the check routine -----------------------------------------------------------
    @_bounded
    async def test_invalid_keys_are_refused_before_io(self, store: Store) -> None:
        for key in BAD_KEYS:
            chunks = _Chunks([b"data"])
            with pytest.raises(errors.InvalidKey):
                await store.put(key, chunks)
            assert chunks.taken == 0, key
            with pytest.raises(errors.InvalidKey):
                await store.read(key)
            with pytest.raises(errors.InvalidKey):
                store.open(key)
            with pytest.raises(errors.InvalidKey):
                await store.stat(key)
            with pytest.raises(errors.InvalidKey):
                await store.exists(key)
            with pytest.raises(errors.InvalidKey):
                await store.delete(key)
            with pytest.raises(errors.InvalidKey):
                await store.write(key, b"x", offset=0)
            with pytest.raises(errors.InvalidKey):
                store.location(key)

    @_bounded
    @pytest.mark.parametrize(
        ("operation", "needs"),
        [
            pytest.param("put", _C.WRITE_ACCESS, id="put"),
            pytest.param("delete", _C.WRITE_ACCESS, id="delete"),
            pytest.param("write", _C.WRITE_CHUNK, id="write"),
            pytest.param("write-at-offset", _C.WRITE_RANDOM, id="write-at-offset"),
            pytest.param("read-at-offset", _C.READ_OFFSET, id="read-at-offset"),
            pytest.param("read-a-length", _C.READ_CHUNK, id="read-a-length"),
        ],
    )
    async def test_check_routine_refuses_what_the_store_never_has(
        self, store: Store, key_prefix: str, operation: str, needs: Capability
    ) -> None:
        if needs & store.configured_capabilities == needs:
            pytest.skip(f"the store has {needs.name or '|'.join(needs.names)}")
        key = f"{key_prefix}never"
        chunks = _Chunks([b"data"])
        expected: type[errors.CapabilityError]
        call: Callable[[], Awaitable[object]]
        if operation == "put":
            expected, call = errors.StoreAddDisabled, lambda: store.put(key, chunks)
        elif operation == "delete":
            expected, call = errors.StoreDeleteNotSupported, lambda: store.delete(key)
        elif operation == "write":
            expected, call = errors.StoreWriteNotSupported, lambda: store.write(key, b"x", offset=0)
        elif operation == "write-at-offset":
            expected, call = errors.StoreWriteNotSupported, lambda: store.write(key, b"x", offset=3)
        elif operation == "read-at-offset":
            expected, call = errors.StoreRandomGetNotSupported, lambda: store.read(key, offset=1)
        else:
            expected, call = errors.StoreRandomGetNotSupported, lambda: store.read(key, length=1)
        with pytest.raises(expected) as info:
            await call()
        err = info.value
        assert err.transient is False
        assert err.store == store.name
        # It names a requirement the store lacks.
        assert err.required & needs and err.required & err.available != err.required, err
        assert chunks.taken == 0
        # open() runs the same check at once, before it is entered.
        if operation == "read-at-offset":
            with pytest.raises(expected):
                store.open(key, offset=1)
        elif operation == "read-a-length":
            with pytest.raises(expected):
                store.open(key, length=1)

    @_bounded
    @pytest.mark.needs_capability(_C.WRITE_ACCESS)
    async def test_revoked_capability_is_refused_before_io(
        self, store: Store, key_prefix: str
    ) -> None:
        injector = FaultInjector()
        key = f"{key_prefix}revoked"
        with injector.read_only(store):
            # The backend refuses the write: that proves WRITE_ACCESS lost and revokes it.
            with pytest.raises(errors.StorageWriteDenied):
                await store.put(key, b"x")
            assert _C.WRITE_ACCESS not in store.capabilities
            chunks = _Chunks([b"data"])
            with pytest.raises(errors.StoreAddDisabled) as info:
                await store.put(key, chunks)
            assert info.value.transient is True
            assert chunks.taken == 0
            with pytest.raises(errors.StoreDeleteNotSupported):
                await store.delete(key)
        # Probes bring it back once the backend is healthy again.
        await store.probe(immediate=True)
        assert _C.WRITE_ACCESS in store.capabilities, str(store.health)
        await store.put(key, b"y")
        assert await store.read(key) == b"y"

    # -- probing --------------------------------------------------------------------------------
    @_bounded
    async def test_probe_reports_a_healthy_backend(self, store: Store) -> None:
        report = await store.probe()
        assert report.store == store.name
        assert report.last_error is None, str(report)
        assert report.healthy, str(report)
        assert store.capabilities == store.configured_capabilities, str(report)
        assert report.probes >= 1


def _plain(value: Any) -> Any:
    """Mappings and sequences as plain dicts and lists (drivers may return read-only views)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
