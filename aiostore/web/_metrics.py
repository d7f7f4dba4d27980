"""Prometheus metrics: ``GET /metrics`` in the object service, or :func:`metrics_routes` in any
aiohttp app that embeds aiostore.

Built on the public instrumentation hooks (:mod:`aiostore.instrumentation`): one
:class:`PrometheusInstrument` per manager counts operations, times operations and probes,
counts capability changes and bytes moved. Capability gauges are read from the stores at scrape
time, so they are exact whenever Prometheus looks. Each manager has a registry of its own: two
apps in one process never mix their numbers.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .._manager import StoreManager
from ..capabilities.flags import NAMED
from ..capabilities.state import CapabilityChange
from ..instrumentation import OperationEvent, ProbeEvent
from ._keys import STORES

__all__ = ["PrometheusInstrument", "metrics_for", "metrics_routes"]

_READS = frozenset({"read", "open"})
_WRITES = frozenset({"put", "write"})
#: Seconds: from a memory read (µs) to a large upload (minutes).
_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Held(Collector):
    """``aiostore_capability_held{store,capability}``: 1 or 0, read at scrape time."""

    def __init__(self, manager: StoreManager) -> None:
        self._manager = weakref.ref(manager)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        held = GaugeMetricFamily(
            "aiostore_capability_held",
            "1 when the store currently holds the capability, else 0",
            labels=["store", "capability"],
        )
        configured = GaugeMetricFamily(
            "aiostore_capability_configured",
            "1 when the store's configuration grants the capability, else 0",
            labels=["store", "capability"],
        )
        manager = self._manager()
        if manager is not None:
            for store in manager:
                current, conf = store.capabilities, store.configured_capabilities
                for cap in NAMED:
                    name = str(cap.name)
                    held.add_metric([store.name, name], 1.0 if cap in current else 0.0)
                    configured.add_metric([store.name, name], 1.0 if cap in conf else 0.0)
        yield held
        yield configured


class PrometheusInstrument:
    """An instrument (see :mod:`aiostore.instrumentation`) keeping Prometheus metrics."""

    def __init__(self, manager: StoreManager) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.operations = Counter(
            "aiostore_operations",
            "Store operations by outcome ('ok' or the error class)",
            ["store", "operation", "outcome"],
            registry=reg,
        )
        self.operation_seconds = Histogram(
            "aiostore_operation_duration_seconds",
            "Duration of store operations",
            ["store", "operation"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.probe_seconds = Histogram(
            "aiostore_probe_duration_seconds",
            "Duration of health probes",
            ["store"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.probe_failures = Counter(
            "aiostore_probe_failures",
            "Probes that failed as a whole (raised or timed out)",
            ["store"],
            registry=reg,
        )
        self.changes = Counter(
            "aiostore_capability_changes",
            "Changes of a store's current capabilities",
            ["store", "direction"],
            registry=reg,
        )
        self.bytes = Counter(
            "aiostore_bytes",
            "Bytes of object data moved",
            ["store", "direction"],
            registry=reg,
        )
        reg.register(_Held(manager))

    def on_operation(self, event: OperationEvent) -> None:
        self.operations.labels(event.store, event.operation, event.outcome).inc()
        self.operation_seconds.labels(event.store, event.operation).observe(event.duration)
        if event.bytes:
            direction = "read" if event.operation in _READS else "written"
            if event.operation in _READS or event.operation in _WRITES:
                self.bytes.labels(event.store, direction).inc(event.bytes)

    def on_probe(self, event: ProbeEvent) -> None:
        self.probe_seconds.labels(event.store).observe(event.duration)
        if event.error is not None:
            self.probe_failures.labels(event.store).inc()

    def on_change(self, change: CapabilityChange) -> None:
        if change.revoked:
            self.changes.labels(change.store, "revoked").inc()
        if change.restored:
            self.changes.labels(change.store, "restored").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return bytes(generate_latest(self.registry))


_instruments: weakref.WeakKeyDictionary[StoreManager, PrometheusInstrument] = (
    weakref.WeakKeyDictionary()
)


def metrics_for(manager: StoreManager) -> PrometheusInstrument:
    """The manager's Prometheus instrument, created and registered on first use (``setup()``
    calls it at start-up so that counting starts with the app)."""
    instrument = _instruments.get(manager)
    if instrument is None:
        instrument = _instruments[manager] = PrometheusInstrument(manager)
        manager.instrument(instrument)
    return instrument


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""
    body = metrics_for(request.app[STORES]).render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def metrics_routes() -> list[web.RouteDef]:
    """``GET /metrics`` for an app set up with :func:`aiostore.web.setup`."""
    return [web.get("/metrics", metrics, name="aiostore-metrics")]
