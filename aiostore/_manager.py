"""The :class:`StoreManager`: configuration, stores, sessions and the prober's lifetime."""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from os import PathLike
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote

import anyio

from ._cancel import shielded
from ._keys import validate_key
from ._sessions import SessionContext
from ._store import Store
from ._stream import PutStream
from ._types import Metadata, StoredObject
from .capabilities.flags import NAMED, Capability
from .capabilities.probe import HealthReport, ProbeConfig, Prober
from .capabilities.state import CapabilityChange, ChangeHub, Subscription
from .drivers.base import Driver, redacted_options
from .errors import (
    BackendUnavailable,
    BadStoreConfiguration,
    StorageFull,
    StoreAddDisabled,
    StoreError,
    UnknownScheme,
    UnknownStore,
)
from .instrumentation import Instruments

__all__ = ["StoreManager", "load_driver"]

log = logging.getLogger("aiostore")

ENTRY_POINT_GROUP: Final = "aiostore.drivers"
#: Keys every store takes, whatever its driver (the rest are the driver's options).
COMMON_OPTIONS: Final = frozenset(
    {"driver", "priority", "read_only", "reusable", "probe", "unset", "unset_reason"}
)
_TOP_LEVEL: Final = frozenset({"default", "probe", "stores"})
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FAILOVER: Final = (StoreAddDisabled, StorageFull, BackendUnavailable)
#: The extra that brings a built-in driver's backend library.
_EXTRAS: Final = {"s3": "s3", "azure": "azure", "gcs": "gcs"}


def load_driver(
    name: str | type[Driver[Any]],
    store: str | None = None,
    loaded: dict[str, type[Driver[Any]]] | None = None,
) -> type[Driver[Any]]:
    """The driver class registered under ``name`` in the ``aiostore.drivers`` entry points
    (or ``name`` itself when it already is a Driver subclass). ``loaded``: classes already
    found by name, filled in (a manager scans the entry points once per driver name, not once
    per store: a scan costs milliseconds)."""
    if isinstance(name, type):
        if issubclass(name, Driver):
            return name
        raise BadStoreConfiguration(
            f"{name!r} is not a Driver subclass", store=store, option="driver"
        )
    if not isinstance(name, str):
        raise BadStoreConfiguration(
            f"must be a driver name, not {name!r}", store=store, option="driver"
        )
    if loaded is not None and name in loaded:
        return loaded[name]
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    for ep in found:
        try:
            cls = ep.load()
        except ImportError as exc:
            extra = _EXTRAS.get(name)
            hint = f": pip install 'aiostore[{extra}]'" if extra else ""
            raise BadStoreConfiguration(
                f"driver {name!r} needs a library that is not installed ({exc}){hint}",
                store=store,
                option="driver",
            ) from exc
        except Exception as exc:
            raise BadStoreConfiguration(
                f"driver {name!r} failed to load: {type(exc).__name__}: {exc}",
                store=store,
                option="driver",
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Driver)):
            raise BadStoreConfiguration(
                f"entry point {name!r} is not a Driver subclass", store=store, option="driver"
            )
        if loaded is not None:
            loaded[name] = cls
        return cls
    known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
    raise BadStoreConfiguration(
        f"unknown driver {name!r} (installed: {', '.join(known) or 'none'})",
        store=store,
        option="driver",
    )


class StoreManager:
    """Every configured store, their sessions and their health probes.

    ``async with manager:`` starts probing and owns every session; leaving it stops the probes and
    closes every session, leaking no task, connection or file. Build it from a mapping (the TOML
    layout of ``docs/configuration.md``) or with :meth:`from_file`.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            raise BadStoreConfiguration("the configuration must be a mapping")
        for top in config:
            if top not in _TOP_LEVEL:
                raise BadStoreConfiguration(
                    f"unknown top-level setting {top!r} (known: default, probe, stores)"
                )
        self._hub = ChangeHub()
        self._instruments = Instruments()
        base_probe = ProbeConfig.from_mapping(config.get("probe", {}))
        self._prober = Prober(base_probe.max_concurrent_probes)
        stores_cfg = config.get("stores", {})
        if not isinstance(stores_cfg, Mapping):
            raise BadStoreConfiguration("'stores' must be a table of stores")
        self._stores: dict[str, Store] = {}
        loaded: dict[str, type[Driver[Any]]] = {}
        for name, store_cfg in stores_cfg.items():
            store = self._build_store(name, store_cfg, base_probe, loaded)
            self._stores[name] = store
            self._prober.add(name, store.probe_config, store._probe.run)
        default = config.get("default")
        if default is None:
            default = next(iter(self._stores), None)
        elif default not in self._stores:
            raise BadStoreConfiguration(f"default store {default!r} is not configured")
        self._default: str | None = default
        self._runner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._entered = False

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> StoreManager:
        """Build a manager from a TOML file."""
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise BadStoreConfiguration(
                f"cannot read configuration file {str(path)!r}: {exc.strerror}"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise BadStoreConfiguration(
                f"configuration file {str(path)!r} is not valid TOML: {exc}"
            ) from exc
        return cls(data)

    def _build_store(
        self,
        name: Any,
        cfg: Any,
        base_probe: ProbeConfig,
        loaded: dict[str, type[Driver[Any]]] | None = None,
    ) -> Store:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise BadStoreConfiguration(
                f"store name {name!r} must be 1-64 letters, digits, '_', '.' or '-'"
            )
        if not isinstance(cfg, Mapping):
            raise BadStoreConfiguration("store configuration must be a table", store=name)
        if "driver" not in cfg:
            raise BadStoreConfiguration("is required", store=name, option="driver")
        driver_cls = load_driver(cfg["driver"], name, loaded)
        priority = cfg.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise BadStoreConfiguration(
                f"must be a whole number, not {priority!r}", store=name, option="priority"
            )
        flags = {}
        for flag, default in (("read_only", False), ("reusable", True)):
            value = cfg.get(flag, default)
            if not isinstance(value, bool):
                raise BadStoreConfiguration(
                    f"must be true or false, not {value!r}", store=name, option=flag
                )
            flags[flag] = value
        probe = ProbeConfig.from_mapping(cfg.get("probe", {}), base_probe, store=name)
        unset, unset_reason = _unset_option(name, cfg)
        options = {k: v for k, v in cfg.items() if k not in COMMON_OPTIONS}
        driver = driver_cls.from_config(name, options)
        configured = Capability(
            int(driver.configured_capabilities()) & int(driver.native_capabilities)
        )
        if flags["read_only"]:
            configured = configured.revoke(Capability.WRITE_ACCESS)
        if not flags["reusable"]:
            configured = configured.revoke(Capability.DRIVER_REUSABLE)
        driver.configured = configured
        store = Store(
            name,
            driver,
            configured=configured,
            probe=probe,
            priority=priority,
            hubs=(self._hub, _InstrumentHub(self._instruments)),
            prober=self._prober,
            instruments=self._instruments,
        )
        if unset:
            store.unset_capabilities(unset, reason=unset_reason)
        return store

    # -- lookup ---------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Store:
        try:
            return self._stores[name]
        except (KeyError, TypeError):
            known = ", ".join(self._stores) or "none"
            raise UnknownStore(f"no store named {name!r} (configured: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._stores

    def __iter__(self) -> Iterator[Store]:
        return iter(self._stores.values())

    def __len__(self) -> int:
        return len(self._stores)

    @property
    def names(self) -> list[str]:
        return list(self._stores)

    @property
    def default(self) -> Store:
        if self._default is None:
            raise UnknownStore("no store is configured")
        return self._stores[self._default]

    def resolve(self, location: str) -> tuple[Store, str]:
        """The store and key of a location URI (``file:///…``, ``s3://bucket/…``, …)."""
        if not isinstance(location, str) or "://" not in location:
            raise UnknownScheme(f"{location!r} is not a location URI (scheme://...)")
        scheme, rest = location.split("://", 1)
        scheme = scheme.lower()
        location = f"{scheme}://{rest}"  # schemes are case-insensitive (RFC 3986)
        candidates = [s for s in self._stores.values() if scheme in s.driver.schemes]
        if not candidates:
            raise UnknownScheme(f"no configured store handles the scheme {scheme!r}")
        best: Store | None = None
        for store in candidates:
            prefix = store.location_prefix
            if location.startswith(prefix) and (
                best is None or len(prefix) > len(best.location_prefix)
            ):
                best = store
        if best is None:
            raise UnknownStore(f"no configured store holds {location!r}")
        key = validate_key(unquote(location[len(best.location_prefix) :]), best.name)
        return best, key

    def session(self, name: str) -> SessionContext:
        """``async with manager.session(name) as s:`` — a ready driver session of store ``name``.

        DRIVER_REUSABLE drivers share one session per event loop (opened once, closed by the
        manager); others get a fresh session per ``async with``, closed on exit.
        """
        return self[name]._pool.session()

    def changes(self) -> Subscription:
        """Async iterator of every store's :class:`CapabilityChange` events."""
        return self._hub.subscribe()

    def instrument(self, instrument: object) -> None:
        """Register an instrument (see :mod:`aiostore.instrumentation`): its ``on_operation``,
        ``on_probe`` and ``on_change`` methods, whichever it has, observe every store."""
        self._instruments.add(instrument)

    def uninstrument(self, instrument: object) -> None:
        """Remove an instrument registered with :meth:`instrument`."""
        self._instruments.remove(instrument)

    # -- lifecycle ------------------------------------------------------------------------------
    async def __aenter__(self) -> StoreManager:
        if self._entered:
            raise RuntimeError("this StoreManager is already running")
        self._entered = True
        try:
            for store in self._stores.values():
                store._pool.reopen()
            async with anyio.create_task_group() as tg:
                for store in self._stores.values():
                    tg.start_soon(self._start_store, store)
        except BaseException:
            self._entered = False
            await shielded(self._close_stores())
            raise
        # The probe task group lives in a task of its own so that the manager can be entered
        # and left from different tasks (pytest-asyncio fixtures do that).
        self._stop = asyncio.Event()
        started = asyncio.get_running_loop().create_future()
        self._runner = asyncio.get_running_loop().create_task(
            self._run_probers(started), name="aiostore-prober"
        )
        try:
            await started
        except BaseException:
            await self.aclose()  # cancelled meanwhile: leave nothing running
            raise
        return self

    async def _start_store(self, store: Store) -> None:
        try:
            await store.driver.start()
        except StoreError as exc:
            log.warning("store %r: start-up failed: %s", store.name, exc)
        cfg = store.probe_config
        if cfg.enabled and cfg.initial:
            await store._probe.run(immediate=True)

    async def _run_probers(self, started: asyncio.Future[None]) -> None:
        assert self._stop is not None
        try:
            async with anyio.create_task_group() as tg:
                self._prober.start(tg)
                started.set_result(None)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self._prober.stop()
            if not started.done():
                started.set_result(None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop probing and close every session and driver. Idempotent.

        Runs to the end even when the caller is cancelled (natively too: ``task.cancel()``,
        ``asyncio.timeout``), then re-raises the cancellation: every store is closed either way.
        """
        await shielded(self._aclose())

    async def _aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            assert self._stop is not None
            self._stop.set()
            await asyncio.wait([runner])  # it cancels its own probe tasks and ends
        if self._entered:
            self._entered = False
            await self._close_stores()
        if runner is not None and not runner.cancelled() and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]

    async def _close_stores(self) -> None:
        # Callers run this shielded (see aclose): one store failing to close never keeps the
        # others open.
        for store in self._stores.values():
            await store._close_open()
            await store._pool.aclose()
            try:
                await store.driver.aclose()
            except Exception:
                log.warning("store %r: closing the driver failed", store.name, exc_info=True)

    # -- probing --------------------------------------------------------------------------------
    async def probe(self, name: str | None = None) -> HealthReport | dict[str, HealthReport]:
        """Probe now: one store (its report) or, with no name, every store (a dict of reports)."""
        if name is not None:
            return await self[name].probe()
        reports: dict[str, HealthReport] = {}

        async def one(store: Store) -> None:
            reports[store.name] = await store.probe()

        async with anyio.create_task_group() as tg:
            for store in self._stores.values():
                tg.start_soon(one, store)
        return {n: reports[n] for n in self._stores}

    def snapshot(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """JSON-ready state of every store (or of the stores ``names``, in that order): three
        capability layers, health, sessions. Unknown names raise ``UnknownStore``."""
        stores: dict[str, Any] = {}
        chosen = self._stores.values() if names is None else [self[name] for name in names]
        for store in chosen:
            snap = store._state.snapshot
            stores[store.name] = {
                "driver": store.driver.name,
                "location": store.location_prefix,
                "priority": store.priority,
                "native": _caps(snap.native),
                "configured": _caps(snap.configured),
                "current": _caps(snap.current),
                "version": snap.version,
                "health": store.health.to_dict(),
                "unset": _caps(snap.unset) | {"reason": snap.unset_reason},
                "probe": {
                    "interval": store.probe_config.interval,
                    "timeout": store.probe_config.timeout,
                    "failures_to_revoke": store.probe_config.failures_to_revoke,
                    "successes_to_restore": store.probe_config.successes_to_restore,
                    "enabled": store.probe_config.enabled,
                },
                "options": redacted_options(store.driver.options),
                "sessions": store._pool.statistics(),
            }
        return {
            "default": self._default,
            "running": self._runner is not None,
            "max_concurrent_probes": self._prober.max_concurrent,
            "stores": stores,
        }

    # -- fail-over put --------------------------------------------------------------------------
    async def put(
        self,
        key: str,
        data: Any,
        *,
        stores: Sequence[str] | None = None,
        size: int | None = None,
        overwrite: bool = False,
        metadata: Metadata | None = None,
        hash_algo: str = "sha256",
    ) -> StoredObject:
        """Put into the first store, by ``priority`` (highest first), that currently holds
        WRITE_ACCESS; fail over to the next on ``StoreAddDisabled``, ``StorageFull`` or
        ``BackendUnavailable`` when nothing was consumed or the data is re-readable."""
        names = list(stores) if stores is not None else self.names
        candidates = sorted((self[n] for n in names), key=lambda s: -s.priority)
        if not candidates:
            raise UnknownStore("no store to put into")
        # The same validation as Store.put, so both raise the same errors for the same input.
        key, meta = candidates[0]._put_args(key, size, metadata)
        writable = [s for s in candidates if Capability.WRITE_ACCESS in s.capabilities]
        if not writable:
            raise StoreAddDisabled(
                "no store currently holds WRITE_ACCESS (tried: "
                + ", ".join(s.name for s in candidates)
                + ")",
                key=key,
                operation="put",
                required=Capability.WRITE_ACCESS,
                transient=any(
                    Capability.WRITE_ACCESS in s.configured_capabilities for s in candidates
                ),
            )
        stream: PutStream | None = writable[0]._stream(key, data, size, hash_algo)
        errors: list[StoreError] = []
        for store in writable:
            assert stream is not None
            try:
                store._check("put", key)
                return await store._put(key, stream, overwrite=overwrite, metadata=meta)
            except _FAILOVER as exc:
                errors.append(exc)
                stream = stream.again(store=None)
                if stream is None:
                    raise
                log.warning("put %r: store %r failed (%s); trying the next", key, store.name, exc)
        raise errors[-1]


class _InstrumentHub(ChangeHub):
    """Hands every capability change to the manager's instruments."""

    def __init__(self, instruments: Instruments) -> None:
        super().__init__()
        self._instruments = instruments

    def publish(self, change: CapabilityChange) -> None:
        self._instruments.change(change)


def _unset_option(store: str, cfg: Mapping[str, Any]) -> tuple[Capability, str]:
    """The store's ``unset`` (capability names) and ``unset_reason`` keys."""
    names = cfg.get("unset", [])
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise BadStoreConfiguration(
            "must be a list of capability names", store=store, option="unset"
        )
    known = {str(c.name): c for c in NAMED}
    caps = Capability.NONE
    for n in names:
        if n not in known:
            raise BadStoreConfiguration(
                f"unknown capability {n!r} (known: {', '.join(known)})", store=store, option="unset"
            )
        caps |= known[n]
    reason = cfg.get("unset_reason", "")
    if not isinstance(reason, str):
        raise BadStoreConfiguration("must be a string", store=store, option="unset_reason")
    return caps, reason


def _caps(c: Capability) -> dict[str, Any]:
    return {"value": int(c), "names": c.names}
