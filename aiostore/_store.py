"""The :class:`Store` facade: key validation, the check routine, sessions, passive signals."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from ._cancel import shielded
from ._faults import FaultPlan
from ._keys import _problem as _key_problem
from ._keys import validate_key, validate_prefix
from ._sessions import SessionContext, SessionPool
from ._stream import PutStream
from ._types import Metadata, ObjectInfo, StoredObject
from .capabilities.check import CEILINGS, check
from .capabilities.flags import Capability
from .capabilities.probe import HealthReport, HealthTracker, ProbeConfig, ProbeResult, Verdict
from .capabilities.state import CapabilityState, ChangeHub, Subscription
from .drivers.base import Driver, DriverReader, map_os_error
from .errors import (
    CapabilityError,
    InvalidMetadata,
    InvalidRange,
    OperationTimeout,
    StoreError,
)

if TYPE_CHECKING:
    from .capabilities.probe import Prober

__all__ = ["ObjectReader", "Store"]

MAX_METADATA_BYTES: Final = 2048
_WRITE_OPS: Final = frozenset({"put", "write", "delete"})


_NO_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})


def validate_metadata(metadata: Metadata | None, store: str, key: str) -> Mapping[str, Any]:
    """Metadata is a mapping whose leaves are str, nested in dicts and lists; ≤ 2 KiB as JSON."""
    if metadata is None or (isinstance(metadata, Mapping) and not metadata):
        return _NO_METADATA
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata(
            f"metadata must be a mapping, not {type(metadata).__name__}", store=store, key=key
        )

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise InvalidMetadata(
                        f"metadata key {k!r} at {path} is not a str", store=store, key=key
                    )
                out[k] = walk(v, f"{path}.{k}")
            return out
        if isinstance(value, list | tuple):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        raise InvalidMetadata(
            f"metadata value at {path} is {type(value).__name__}; only str, dicts and lists are"
            " allowed",
            store=store,
            key=key,
        )

    clean = walk(metadata, "metadata")
    size = len(json.dumps(clean, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed",
            store=store,
            key=key,
        )
    assert isinstance(clean, dict)
    return clean


# Per operation, every capability it can need: a store holding all of them skips the check's
# argument rules (the common case; ``check`` raises exactly as before otherwise).
_READ_CEILING: Final = CEILINGS["read"]
_OPEN_CEILING: Final = CEILINGS["open"]
_STAT_CEILING: Final = CEILINGS["stat"]
_EXISTS_CEILING: Final = CEILINGS["exists"]
_WRITE_CEILING: Final = CEILINGS["write"]
_DELETE_CEILING: Final = CEILINGS["delete"]
_PUT_CEILING: Final = CEILINGS["put"]


def _range(offset: Any, length: Any, store: str, key: str) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidRange(f"offset must be an int ≥ 0, not {offset!r}", store=store, key=key)
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 0
    ):
        raise InvalidRange(
            f"length must be None or an int ≥ 0, not {length!r}", store=store, key=key
        )


class Store:
    """One configured store. Get it from a :class:`~aiostore.StoreManager` (``manager[name]``).

    Every operation validates its key, runs the check routine against the *current*
    capabilities before any I/O, borrows a driver session, and turns backend faults into
    passive health signals.
    """

    def __init__(
        self,
        name: str,
        driver: Driver[Any],
        *,
        configured: Capability,
        probe: ProbeConfig,
        priority: int = 0,
        hubs: tuple[ChangeHub, ...] = (),
        prober: Prober | None = None,
    ) -> None:
        self.name = name
        self.driver = driver
        self.priority = priority
        self._state = CapabilityState(name, driver.native_capabilities, configured, hubs)
        self._health = HealthTracker(self._state, probe)
        self._prober = prober
        self._pool = SessionPool(
            name,
            driver,
            shared=Capability.DRIVER_REUSABLE in self._state.snapshot.configured,
            on_retire=self._session_retired,
            on_fresh=self._session_fresh,
        )
        self._faults = FaultPlan()
        self._prefix = driver.location_prefix()
        self._probe_inflight: asyncio.Future[None] | None = None
        self._probe_errors = 0

    # -- capabilities ---------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capability:
        """The *current* capabilities: what the check routine enforces now."""
        return self._state.snapshot.current

    @property
    def native_capabilities(self) -> Capability:
        return self._state.snapshot.native

    @property
    def configured_capabilities(self) -> Capability:
        return self._state.snapshot.configured

    def is_capable(self, *capabilities: Capability) -> bool:
        """True when the store currently holds all of ``capabilities``."""
        current = self._state.snapshot.current
        return all(cap & current == cap for cap in capabilities)

    @property
    def health(self) -> HealthReport:
        return self._health.report(probing=self._prober is not None and self._prober.running)

    @property
    def probe_config(self) -> ProbeConfig:
        return self._health.config

    @property
    def faults(self) -> FaultPlan:
        """Fault switches for tests (see :mod:`aiostore.testing`)."""
        return self._faults

    def changes(self) -> Subscription:
        """Async iterator of this store's :class:`CapabilityChange` events (bounded buffer)."""
        return self._state.changes()

    async def wait_for(self, capability: Capability, *, present: bool = True) -> None:
        """Wait until ``capability`` is (or, with ``present=False``, is no longer) held.

        Takes no timeout: wrap it in ``anyio.fail_after`` / ``asyncio.timeout``.
        """
        sub = self.changes()
        try:
            while (capability in self.capabilities) != present:
                await sub.__anext__()
        finally:
            sub.close()

    async def wait_healthy(self) -> None:
        """Wait until nothing is revoked (current equals configured)."""
        sub = self.changes()
        try:
            while self.capabilities != self.configured_capabilities:
                await sub.__anext__()
        finally:
            sub.close()

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"sessions": self._pool.statistics()}
        if self._prober is not None and self._prober.running:
            stats["probe"] = self._prober.statistics(self.name)
        return stats

    def location(self, key: str) -> str:
        """The URI of ``key`` in this store."""
        key = validate_key(key, self.name)
        return self._prefix + quote(key, safe="/")

    @property
    def location_prefix(self) -> str:
        return self._prefix

    def __repr__(self) -> str:
        return (
            f"<Store {self.name!r} driver={self.driver.name!r}"
            f" current={'|'.join(self.capabilities.names) or 'NONE'}>"
        )

    # -- internals shared by operations ---------------------------------------------------------
    def _check(self, operation: str, key: str | None, **args: Any) -> None:
        try:
            check(self.name, self._state.snapshot, operation, key, self._health.reason_for, **args)
        except CapabilityError as exc:
            if exc.transient:
                self.request_probe()
            raise

    def request_probe(self) -> bool:
        """Ask the prober for an early probe (rate-limited). True when one was scheduled."""
        return self._prober.request(self.name) if self._prober is not None else False

    def _failed(self, exc: BaseException, key: str | None, operation: str) -> BaseException:
        """Translate a stray low-level error, fill in context, and react to passive signals."""
        if isinstance(exc, StoreError):
            err = exc
        elif isinstance(exc, OSError):
            err = map_os_error(exc, key=key, write=operation in _WRITE_OPS, what=operation)
            err.__cause__ = exc
        elif isinstance(exc, TimeoutError):
            err = OperationTimeout(f"{operation} timed out", key=key)
            err.__cause__ = exc
        else:
            return exc
        err.with_context(store=self.name, key=key)
        if err.revokes:
            self._health.passive(err.revokes, f"{operation} failed: {err.detail}")
            self.request_probe()
        return err

    async def _io(
        self,
        operation: str,
        key: str,
        offset: int,
        length: int | None,
        method: str,
        *args: Any,
    ) -> Any:
        """``session.<method>(*args)`` on a borrowed session, after the fault switches; errors
        go through :meth:`_failed`. The usable shared session is taken and given back without
        awaiting anything (the hot path); otherwise ``pool.session()`` opens one."""
        pool = self._pool
        slot = pool.acquire_nowait() if pool.shared else None
        if slot is None:
            try:
                async with pool.session() as session:
                    if self._faults._active:
                        await self._faults.before(operation, key, offset, length)
                    return await getattr(session, method)(*args)
            except BaseException as exc:
                raise self._failed(exc, key, operation)
        try:
            if self._faults._active:
                await self._faults.before(operation, key, offset, length)
            result = await getattr(slot.session, method)(*args)
        except BaseException as exc:
            # Give the session back first (a session-level error retires it), as on exit from
            # ``async with pool.session()``.
            if pool.release_nowait(slot, exc):
                await pool.close_slot(slot)
            raise self._failed(exc, key, operation)
        if pool.release_nowait(slot):
            await pool.close_slot(slot)
        return result

    def _session_retired(self, reason: str) -> None:
        if Capability.DRIVER_REUSABLE in self._state.snapshot.configured:
            self._health.passive(Capability.DRIVER_REUSABLE, f"shared session retired: {reason}")

    def _session_fresh(self) -> None:
        self._health.restore_now(Capability.DRIVER_REUSABLE, "a fresh shared session is open")

    # -- operations -----------------------------------------------------------------------------
    async def put(
        self,
        key: str,
        data: Any,
        *,
        size: int | None = None,
        overwrite: bool = False,
        metadata: Metadata | None = None,
        hash_algo: str = "sha256",
    ) -> StoredObject:
        """Store ``data`` under ``key``, all-or-nothing, computing md5 and ``hash_algo`` on the way.

        Args:
            key: the object's key.
            data: bytes-like, a sync or async iterable of bytes, a sync or async file object, or an
                ``aiohttp.StreamReader``. Streamed with bounded memory.
            size: the expected length; a different one raises ``SizeMismatch`` and stores nothing.
            overwrite: replace an existing object; otherwise an existing key raises ``Duplicate``.
            metadata: str leaves in dicts and lists, at most 2 KiB as JSON.
            hash_algo: the hashlib algorithm of ``StoredObject.multihash``.
        """
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey (fast path: a cached good key)
        if self._state.snapshot.bits & _PUT_CEILING != _PUT_CEILING:
            self._check("put", key)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise InvalidRange(
                f"size must be None or an int ≥ 0, not {size!r}", store=self.name, key=key
            )
        meta = validate_metadata(metadata, self.name, key)
        stream = PutStream(
            data,
            size=size,
            hash_algo=hash_algo,
            chunk_size=self.driver.chunk_size,
            store=self.name,
            key=key,
        )
        return await self._put_stream(key, stream, overwrite=overwrite, metadata=meta)

    async def _put_stream(
        self, key: str, stream: PutStream, *, overwrite: bool, metadata: Mapping[str, Any]
    ) -> StoredObject:
        try:
            async with self._pool.session() as session:
                if self._faults._active:
                    await self._faults.before("put", key, 0, None)
                await session.put(
                    key, stream, size=stream.size, overwrite=overwrite, metadata=metadata
                )
            await stream.finish()
        except BaseException as exc:
            await stream.aclose()
            raise self._failed(exc, key, "put")
        return StoredObject(
            location=self._prefix + quote(key, safe="/"),
            store=self.name,
            key=key,
            size=stream.bytes_read,
            checksum=stream.checksum,
            multihash=stream.multihash,
            hash_algo=stream.hash_algo,
            metadata=metadata,
        )

    def open(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectReader:
        """Open ``key`` for streaming: ``async with store.open(key) as r: async for chunk in r``.

        The check runs now, before any I/O. Reading past the end yields what exists; an
        ``offset`` beyond the size yields nothing.
        """
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey (fast path: a cached good key)
        if (
            offset.__class__ is not int
            or offset < 0
            or (length is not None and (length.__class__ is not int or length < 0))
        ):
            _range(offset, length, self.name, key)
        if self._state.snapshot.bits & _OPEN_CEILING != _OPEN_CEILING:
            self._check("open", key, offset=offset, length=length)
        return ObjectReader(self, key, offset, length)

    async def read(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``key`` (or ``length`` bytes from ``offset``) into memory."""
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey (fast path: a cached good key)
        if (
            offset.__class__ is not int
            or offset < 0
            or (length is not None and (length.__class__ is not int or length < 0))
        ):
            _range(offset, length, self.name, key)
        if self._state.snapshot.bits & _READ_CEILING != _READ_CEILING:
            self._check("read", key, offset=offset, length=length)
        pool = self._pool
        if pool.shared and not self._faults._active:
            # _io() inlined for the commonest operation: a small read on the shared session.
            slot = pool.acquire_nowait()
            if slot is not None:
                try:
                    data: bytes = await slot.session.read(key, offset, length)
                except BaseException as exc:
                    if pool.release_nowait(slot, exc):
                        await pool.close_slot(slot)
                    raise self._failed(exc, key, "read")
                if pool.release_nowait(slot):
                    await pool.close_slot(slot)
                return data
        data = await self._io("read", key, offset, length, "read", key, offset, length)
        return data

    async def write(self, key: str, data: bytes, *, offset: int) -> int:
        """Patch ``data`` into the existing object ``key`` at ``offset``; return bytes written."""
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey (fast path: a cached good key)
        if offset.__class__ is not int or offset < 0:
            _range(offset, None, self.name, key)
        if self._state.snapshot.bits & _WRITE_CEILING != _WRITE_CEILING:
            self._check("write", key, offset=offset)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        written: int = await self._io(
            "write", key, offset, len(data), "write", key, bytes(data), offset
        )
        return written

    async def delete(self, key: str) -> None:
        """Delete ``key``; ``NotFound`` when it does not exist."""
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey (fast path: a cached good key)
        if self._state.snapshot.bits & _DELETE_CEILING != _DELETE_CEILING:
            self._check("delete", key)
        await self._io("delete", key, 0, None, "delete", key)

    async def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and metadata of ``key``."""
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey (fast path: a cached good key)
        if self._state.snapshot.bits & _STAT_CEILING != _STAT_CEILING:
            self._check("stat", key)
        info: ObjectInfo = await self._io("stat", key, 0, None, "stat", key)
        return info

    async def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey (fast path: a cached good key)
        if self._state.snapshot.bits & _EXISTS_CEILING != _EXISTS_CEILING:
            self._check("exists", key)
        found: bool = await self._io("exists", key, 0, None, "exists", key)
        return found

    def list(self, prefix: str = "") -> ObjectLister:
        """Async iterator of :class:`ObjectInfo` for keys starting with ``prefix``.

        The check runs now. Close it early with ``aclose()`` (or ``contextlib.aclosing``).
        """
        prefix = validate_prefix(prefix, self.name)
        self._check("list", None)
        return ObjectLister(self, prefix)

    # -- probing --------------------------------------------------------------------------------
    async def probe(self, *, immediate: bool = False) -> HealthReport:
        """Probe the backend now and fold the verdicts in; return the new report.

        A probe that raises or exceeds ``timeout`` is a failure of every capability it checks.
        """
        await self._probe_once(immediate)
        return self.health

    async def _probe_once(self, immediate: bool = False) -> None:
        """One probe, folded in (the prober's loop calls this: it needs no report).

        At most one probe of a store runs at a time: a caller that arrives while one is in
        flight (``manager.probe()`` during a scheduled probe) waits for that one's verdicts
        instead of starting a second, so drivers never see overlapping probes.
        """
        loop = asyncio.get_running_loop()
        inflight = self._probe_inflight
        if inflight is not None and not inflight.done() and inflight.get_loop() is loop:
            await asyncio.shield(inflight)
            return
        done: asyncio.Future[None] = loop.create_future()
        self._probe_inflight = done
        try:
            await self._probe_now(immediate)
        finally:
            self._probe_inflight = None
            done.set_result(None)

    async def _probe_now(self, immediate: bool) -> None:
        cfg = self._health.config
        configured = self._state.snapshot.configured
        keys = [c for c in self.driver.probe_capabilities if int(c) & int(configured)]
        started = time.monotonic()
        error: str | None = None
        verdicts: ProbeResult
        try:
            # asyncio.timeout, not anyio.fail_after: every store runs this every interval, and an
            # anyio cancel scope costs several times more CPU on asyncio.
            async with asyncio.timeout(cfg.timeout):
                if self._faults._active:
                    await self._faults.before_probe()
                async with self._pool.session() as session:
                    verdicts = await session.probe()
                if self._faults._active:
                    verdicts = self._faults.adjust(verdicts, configured)
        except TimeoutError:
            error = f"probe timed out after {cfg.timeout:g}s"
            verdicts = {k: Verdict.fail(error) for k in keys}
        except Exception as exc:
            if isinstance(exc, StoreError):
                exc.with_context(store=self.name)
            error = f"probe raised {type(exc).__name__}: {exc}"
            _log_probe_error(self.name, exc)
            verdicts = {k: Verdict.fail(error) for k in keys}
        duration = time.monotonic() - started
        self._health.apply(verdicts, duration=duration, error=error, immediate=immediate)
        # A shared session that keeps failing whole probes may itself be the problem (a stale
        # pool after the backend restarted): retire it so the next use opens a fresh one.
        self._probe_errors = self._probe_errors + 1 if error is not None else 0
        if self._probe_errors == cfg.failures_to_revoke and self._pool.shared:
            self._pool.retire_current(
                f"{self._probe_errors} probes in a row failed: {error}", broken=False
            )


def _log_probe_error(store: str, exc: BaseException) -> None:
    from .capabilities.probe import log

    # DEBUG: the reason reaches the health report and, when it changes capabilities, the one
    # WARNING/INFO record of that change; a failing backend must not log every interval.
    log.debug("store %r: probe raised %s: %s", store, type(exc).__name__, exc, exc_info=exc)


async def _release(resource: Any, ctx: SessionContext | None, exc: BaseException | None) -> None:
    """Close a driver reader/iterator, then give its session back, whatever the close does."""
    try:
        aclose = getattr(resource, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                pass
    finally:
        if ctx is not None:
            await ctx.__aexit__(type(exc) if exc else None, exc, None)


class ObjectReader:
    """An open object: async context manager and async iterator of ``bytes`` chunks.

    ``size`` is the number of bytes it yields (known once open). It releases its file or
    connection on exit, when the consumer stops early, and when cancelled.
    """

    def __init__(self, store: Store, key: str, offset: int, length: int | None) -> None:
        self.store = store
        self.key = key
        self.offset = offset
        self.length = length
        self._ctx: SessionContext | None = None
        self._reader: DriverReader | None = None
        self._closed = False
        self._exhausted = False
        self._size: int | None = None

    @property
    def size(self) -> int:
        """Bytes this reader yields in total (once open; still known after it is closed)."""
        if self._size is None:
            raise RuntimeError("the reader is not open yet: use 'async with store.open(...)'")
        return self._size

    async def _open(self) -> DriverReader:
        if self._reader is not None:
            return self._reader
        if self._closed:
            raise StoreError("the reader is closed", store=self.store.name, key=self.key)
        store = self.store
        ctx = store._pool.session()
        try:
            session = await ctx.__aenter__()
        except BaseException as exc:
            raise store._failed(exc, self.key, "open")
        self._ctx = ctx
        try:
            if store._faults._active:
                await store._faults.before("open", self.key, self.offset, self.length)
            self._reader = await session.open(self.key, self.offset, self.length)
            self._size = self._reader.size
        except BaseException as exc:
            self._ctx = None
            await shielded(ctx.__aexit__(type(exc), exc, exc.__traceback__))
            self._closed = True
            raise store._failed(exc, self.key, "open")
        return self._reader

    async def __aenter__(self) -> ObjectReader:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(exc)

    def __aiter__(self) -> ObjectReader:
        return self

    async def __anext__(self) -> bytes:
        reader = self._reader
        if reader is None:
            if self._exhausted:
                raise StopAsyncIteration  # iterating again after the end, like any iterator
            reader = await self._open()
        try:
            chunk = await reader.read_chunk()
        except BaseException as exc:
            await self.aclose(exc)
            raise self.store._failed(exc, self.key, "read")
        if not chunk:
            self._exhausted = True
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def read(self) -> bytes:
        """Everything that is left, joined."""
        parts = [chunk async for chunk in self]
        return b"".join(parts)

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Release the reader and its session. Idempotent; shielded from cancellation."""
        self._closed = True
        reader, self._reader = self._reader, None
        ctx, self._ctx = self._ctx, None
        if reader is not None or ctx is not None:
            await shielded(_release(reader, ctx, exc))


class ObjectLister:
    """Async iterator of :class:`ObjectInfo`; holds a session while iterating."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._ctx: SessionContext | None = None
        self._it: AsyncIterator[ObjectInfo] | None = None
        self._done = False

    def __aiter__(self) -> ObjectLister:
        return self

    async def __anext__(self) -> ObjectInfo:
        if self._done:
            raise StopAsyncIteration
        store = self.store
        try:
            if self._it is None:
                ctx = store._pool.session()
                session = await ctx.__aenter__()
                self._ctx = ctx
                if store._faults._active:
                    await store._faults.before("list", None, 0, None)
                self._it = session.list(self.prefix)
            return await self._it.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise
        except BaseException as exc:
            await self.aclose(exc)
            raise store._failed(exc, None, "list")

    async def aclose(self, exc: BaseException | None = None) -> None:
        self._done = True
        it, self._it = self._it, None
        ctx, self._ctx = self._ctx, None
        if it is not None or ctx is not None:
            await shielded(_release(it, ctx, exc))
