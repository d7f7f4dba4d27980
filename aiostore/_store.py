"""The :class:`Store` facade and its one operation pipeline.

Every operation runs the same steps, each written once:

1. **admit** (:meth:`Store._admit`): validate the key and arguments, then the check routine
   against the *current* capabilities — before any I/O and before any input is read;
2. **session** (:meth:`Store._call`): borrow a driver session (the running loop's shared one for
   DRIVER_REUSABLE drivers, a fresh one otherwise), seen through the pool's layers (fault
   injection in tests);
3. **driver**: the session method, whose errors the driver already mapped at its I/O edge;
4. **failure** (:meth:`Store._failed`): add context (store, key), turn any stray low-level error
   into the contract's, and react to passive signals (a disk full revokes WRITE_ACCESS at once
   and asks for an early probe; a broken session is retired);
5. **instrumentation**, only when an instrument is registered.

``put`` adds its input stream (:class:`~aiostore._stream.PutStream`); ``open`` and ``list``
hand the borrowed session to a reader or lister (:mod:`aiostore._readers`) that gives it back.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from ._errormap import os_error_map
from ._faults import FaultPlan, FaultySession
from ._keys import _problem as _key_problem
from ._keys import validate_key, validate_prefix
from ._readers import ObjectLister, ObjectReader
from ._sessions import SessionPool, Shared
from ._stream import PutStream
from ._types import Metadata, ObjectInfo, StoredObject
from .capabilities.check import CEILINGS, check
from .capabilities.flags import Capability
from .capabilities.probe import HealthReport, HealthTracker, ProbeConfig, ProbeRunner
from .capabilities.state import (
    CapabilityChange,
    CapabilitySnapshot,
    CapabilityState,
    ChangeHub,
    Subscription,
)
from .capabilities.verdict import ProbeResult
from .drivers.base import Driver, DriverSession
from .errors import (
    CapabilityError,
    InvalidMetadata,
    InvalidRange,
    StorageFull,
    StoreError,
)
from .instrumentation import Instruments, OperationEvent, ProbeEvent

if TYPE_CHECKING:
    from .capabilities.probe import Prober

__all__ = ["ObjectLister", "ObjectReader", "Store", "validate_metadata"]

MAX_METADATA_BYTES: Final = 2048

_NO_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})


def validate_metadata(metadata: Metadata | None, store: str, key: str) -> Mapping[str, Any]:
    """Metadata is a mapping whose leaves are str, nested in dicts and lists; ≤ 2 KiB as JSON
    (UTF-8: a lone surrogate is ``InvalidMetadata``, like any value that cannot be stored)."""
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
    try:
        size = len(json.dumps(clean, ensure_ascii=False).encode())
    except UnicodeEncodeError as exc:
        raise InvalidMetadata(
            f"metadata is not valid Unicode text ({exc.reason}:"
            f" {exc.object[exc.start : exc.end]!r})",
            store=store,
            key=key,
        ) from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed",
            store=store,
            key=key,
        )
    assert isinstance(clean, dict)
    return clean


def _bad_int(value: Any, optional: bool) -> bool:
    if value is None:
        return not optional
    return value.__class__ is not int and (isinstance(value, bool) or not isinstance(value, int))


def _check_range(offset: Any, length: Any, store: str, key: str) -> None:
    if _bad_int(offset, False) or offset < 0:
        raise InvalidRange(f"offset must be an int ≥ 0, not {offset!r}", store=store, key=key)
    if _bad_int(length, True) or (length is not None and length < 0):
        raise InvalidRange(
            f"length must be None or an int ≥ 0, not {length!r}", store=store, key=key
        )


#: What a successful operation proves (see ``HealthTracker.proven``).
_PROVES: Final = {
    "put": int(Capability.WRITE_ACCESS),
    "write": int(Capability.WRITE_ACCESS),
    "delete": int(Capability.WRITE_ACCESS),
    "read": int(Capability.READ_ACCESS),
    "open": int(Capability.READ_ACCESS),
    "stat": int(Capability.READ_ACCESS),
    "exists": int(Capability.READ_ACCESS),
    "list": int(Capability.READ_ACCESS),
}
_RANGED: Final = int(Capability.READ_RANDOM)
_READ: Final = int(Capability.READ_ACCESS)
_READ_CEILING: Final = CEILINGS["read"]


def _moved(method: str, result: Any, args: tuple[Any, ...]) -> int:
    """Bytes of object data an operation moved (for instrumentation)."""
    if method == "read":
        return len(result)
    if method == "write":
        return int(result)
    if method == "put":
        return int(args[1].bytes_read)
    return 0


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
        instruments: Instruments | None = None,
    ) -> None:
        self.name = name
        self.driver = driver
        self.priority = priority
        self._state = CapabilityState(name, driver.native_capabilities, configured, hubs)
        self._health = HealthTracker(self._state, probe)
        self._prober = prober
        self._instruments = instruments if instruments is not None else Instruments()
        self._pool = SessionPool(
            name,
            driver,
            shared=Capability.DRIVER_REUSABLE in self._state.snapshot.configured,
            on_retire=self._session_retired,
            on_fresh=self._session_fresh,
        )
        self._probe = ProbeRunner(
            name,
            self._health,
            tuple(driver.probe_capabilities),
            self._pool,
            lambda why: self._pool.retire_current(why, broken=False) if self._pool.shared else None,
            self._hint_proven,
        )
        self._probe.observer = self._probed
        self._faults = FaultPlan()
        self._faults.listen(self._faults_switched)
        self._prefix = driver.location_prefix()
        #: Readers and listers still open: closed when the manager closes.
        self._open: weakref.WeakSet[ObjectReader | ObjectLister] = weakref.WeakSet()

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

    @property
    def snapshot(self) -> CapabilitySnapshot:
        """The three layers (and the operator's overrides) at one instant."""
        return self._state.snapshot

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

    def unset_capabilities(
        self, capabilities: Capability, *, reason: str = ""
    ) -> CapabilityChange | None:
        """Turn ``capabilities`` off until :meth:`set_capabilities` turns them back on, whatever
        probing says (an operator taking a store out of writes for maintenance).

        Takes effect at once; the reason shows in errors (transient: 503 over REST), in
        ``health``, the snapshot and the change event. Overrides live as long as the process:
        apply them at start-up with the store's ``unset``/``unset_reason`` configuration keys.
        """
        return self._state.unset(Capability(capabilities), str(reason))

    def set_capabilities(self, capabilities: Capability) -> CapabilityChange | None:
        """Lift an operator's :meth:`unset_capabilities`. Never above the configured layer, and
        what health probing revoked stays revoked until probing restores it."""
        return self._state.set(Capability(capabilities))

    @property
    def faults(self) -> FaultPlan:
        """Fault switches for tests (see :mod:`aiostore.testing`)."""
        return self._faults

    def _faults_switched(self, active: bool) -> None:
        configured = self._state.snapshot.configured
        plan = self._faults

        def wrap(session: DriverSession) -> DriverSession:
            return FaultySession(session, plan, configured)

        self._pool.set_wrapper(wrap if active else None)

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
        stats: dict[str, Any] = {"sessions": self._pool.statistics(), "open": len(self._open)}
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

    # -- the pipeline ---------------------------------------------------------------------------
    def _admit(self, operation: str, key: Any, offset: Any = 0, length: Any = None) -> str:
        """Step 1: the key, the range arguments, then the check routine (before any I/O).

        The fast paths cost a few attribute reads: a key already seen valid (cached), plain
        range arguments, and a store holding every capability the operation could need (its
        ceiling) — then the check's argument rules need not run."""
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)  # raises InvalidKey
        if (
            offset.__class__ is not int
            or offset < 0
            or (length is not None and (length.__class__ is not int or length < 0))
        ):
            _check_range(offset, length, self.name, key)
        ceiling = CEILINGS[operation]
        if self._state.snapshot.bits & ceiling != ceiling:
            self._check(operation, key, offset=offset, length=length)
        return key  # type: ignore[no-any-return]

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

    async def _call(
        self, operation: str, key: str | None, method: str, *args: Any, **kwargs: Any
    ) -> Any:
        """Steps 2-5: ``session.<method>(*args)`` on a borrowed session.

        The usable shared session of the running loop is taken and given back without awaiting
        anything (the hot path); otherwise ``pool.session()`` opens one."""
        instruments = self._instruments
        started = time.perf_counter() if instruments.wants_operations else 0.0
        pool = self._pool
        slot = pool.acquire_nowait() if pool.shared else None
        try:
            if slot is not None:
                try:
                    result = await getattr(slot.view, method)(*args, **kwargs)
                except BaseException as exc:
                    # Give the session back first (a session-level error retires it).
                    if pool.release_nowait(slot, exc):
                        await pool.close_slot(slot)
                    raise
                if pool.release_nowait(slot):
                    await pool.close_slot(slot)
            else:
                async with pool.session() as session:
                    result = await getattr(session, method)(*args, **kwargs)
        except BaseException as exc:
            err = self._failed(exc, key, operation)
            if started:
                self._observe(operation, started, err, 0)
            raise err
        # The evidence rule: a successful operation is a successful probe of what it used.
        self._health.proven |= _PROVES[operation]
        if started:
            self._observe(operation, started, None, _moved(method, result, args))
        return result

    async def _lost(
        self, slot: Shared, exc: BaseException, key: str | None, operation: str
    ) -> BaseException:
        """A straight path's session call raised: give the session back (a session-level error
        retires it), then step 4."""
        pool = self._pool
        if pool.release_nowait(slot, exc):
            await pool.close_slot(slot)
        return self._failed(exc, key, operation)

    def _failed(self, exc: BaseException, key: str | None, operation: str) -> BaseException:
        """Step 4: translate a stray low-level error, fill in context, react to passive signals."""
        if not isinstance(exc, StoreError):
            # A stray OSError still becomes the contract's error; anything else (the caller's
            # own input raising, cancellation) passes through as it is.
            exc = os_error_map.translate(exc, key=key, operation=operation)
            if not isinstance(exc, StoreError):
                return exc
        exc.with_context(store=self.name, key=key)
        if exc.revokes:
            full = isinstance(exc, StorageFull)
            self._health.passive(exc.revokes, f"{operation} failed: {exc.detail}", full=full)
            self.request_probe()
        return exc

    def _observe(
        self, operation: str, started: float, error: BaseException | None, moved: int
    ) -> None:
        if error is None:
            outcome = "ok"
        elif isinstance(error, StoreError):
            outcome = type(error).__name__
        elif isinstance(error, Exception):
            outcome = "error"
        else:
            outcome = "cancelled"
        self._instruments.operation(
            OperationEvent(self.name, operation, outcome, time.perf_counter() - started, moved)
        )

    def _proved_read(self, offset: int, length: int | None) -> None:
        self._health.proven |= _RANGED if offset or length is not None else _PROVES["read"]

    def _hint_proven(self, proven: Capability) -> None:
        self.driver.proven = proven

    def _session_retired(self, reason: str) -> None:
        if Capability.DRIVER_REUSABLE in self._state.snapshot.configured:
            self._health.passive(Capability.DRIVER_REUSABLE, f"shared session retired: {reason}")

    def _session_fresh(self) -> None:
        self._health.restore_now(Capability.DRIVER_REUSABLE, "a fresh shared session is open")

    def _track(self, resource: ObjectReader | ObjectLister) -> None:
        self._open.add(resource)

    async def _close_open(self) -> None:
        """Close every reader and lister still open (the manager is closing)."""
        for resource in list(self._open):
            await resource.aclose()

    # -- operations -----------------------------------------------------------------------------
    def _put_args(
        self, key: Any, size: Any, metadata: Metadata | None
    ) -> tuple[str, Mapping[str, Any]]:
        """A put's key, size and metadata validated (shared with the manager's fail-over put,
        so both raise the same errors for the same bad input)."""
        if key.__class__ is not str or _key_problem(key) is not None:
            key = validate_key(key, self.name)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise InvalidRange(
                f"size must be None or an int ≥ 0, not {size!r}", store=self.name, key=key
            )
        return key, validate_metadata(metadata, self.name, key)

    def _stream(self, key: str, data: Any, size: int | None, hash_algo: str) -> PutStream:
        return PutStream(
            data,
            size=size,
            hash_algo=hash_algo,
            chunk_size=self.driver.chunk_size,
            store=self.name,
            key=key,
        )

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
        key = self._admit("put", key)
        key, meta = self._put_args(key, size, metadata)
        stream = self._stream(key, data, size, hash_algo)
        return await self._put(key, stream, overwrite=overwrite, metadata=meta)

    async def _put(
        self, key: str, stream: PutStream, *, overwrite: bool, metadata: Mapping[str, Any]
    ) -> StoredObject:
        try:
            await self._call(
                "put",
                key,
                "put",
                key,
                stream,
                size=stream.size,
                overwrite=overwrite,
                metadata=metadata,
            )
            await stream.finish()
        except BaseException:
            await stream.aclose()
            raise
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
        key = self._admit("open", key, offset, length)
        return ObjectReader(self, key, offset, length)

    async def read(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``key`` (or ``length`` bytes from ``offset``) into memory."""
        # The hottest operation: its common case is written out. A plain valid key, plain range
        # arguments and a store holding all a read can need pass step 1 without a call (any
        # other case takes _admit, which raises or passes); unless an instrument observes
        # operations, the loop's usable shared session is then called directly, given back
        # and its failures handled as _call does.
        if (
            key.__class__ is not str
            or _key_problem(key) is not None
            or offset.__class__ is not int
            or offset < 0
            or (length is not None and (length.__class__ is not int or length < 0))
            or self._state.snapshot.bits & _READ_CEILING != _READ_CEILING
        ):
            key = self._admit("read", key, offset, length)
        pool = self._pool
        slot = None if self._instruments.wants_operations else pool.acquire_nowait()
        if slot is None:
            data: bytes = await self._call("read", key, "read", key, offset, length)
        else:
            try:
                data = await slot.view.read(key, offset, length)
            except BaseException as exc:
                raise await self._lost(slot, exc, key, "read")
            if pool.release_nowait(slot):
                await pool.close_slot(slot)
        # The evidence rule; a ranged read proves random access too.
        self._health.proven |= _RANGED if offset or length is not None else _READ
        return data

    async def write(self, key: str, data: bytes, *, offset: int) -> int:
        """Patch ``data`` into the existing object ``key`` at ``offset``; return bytes written."""
        key = self._admit("write", key, offset)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        written: int = await self._call("write", key, "write", key, bytes(data), offset)
        return written

    async def delete(self, key: str) -> None:
        """Delete ``key``; ``NotFound`` when it does not exist."""
        key = self._admit("delete", key)
        await self._call("delete", key, "delete", key)

    async def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and metadata of ``key``."""
        key = self._admit("stat", key)
        info: ObjectInfo = await self._call("stat", key, "stat", key)
        return info

    async def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        key = self._admit("exists", key)
        found: bool = await self._call("exists", key, "exists", key)
        return found

    def list(self, prefix: str = "") -> ObjectLister:
        """Async iterator of :class:`ObjectInfo` for keys starting with ``prefix``.

        The check runs now. Close it early with ``aclose()`` or ``async with``.
        """
        prefix = validate_prefix(prefix, self.name)
        self._check("list", None)
        return ObjectLister(self, prefix)

    # -- probing --------------------------------------------------------------------------------
    async def probe(self, *, immediate: bool = False) -> HealthReport:
        """Probe the backend now and fold the verdicts in; return the new report.

        A probe that raises or exceeds ``timeout`` is a failure of every capability it checks.
        """
        await self._probe.run(immediate)
        return self.health

    def _probed(self, duration: float, error: str | None, verdicts: ProbeResult) -> None:
        if self._instruments._probe:
            unhealthy = tuple(str(c.name) for c, v in verdicts.items() if not v.healthy)
            self._instruments.probe(ProbeEvent(self.name, duration, error, unhealthy))
