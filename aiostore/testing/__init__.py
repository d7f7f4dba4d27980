"""Test tooling for aiostore users and driver authors; also a pytest plugin.

Installing aiostore registers ``aiostore.testing._plugin`` as a pytest plugin (entry point
``pytest11``), so the fixtures below are available in any test suite without a ``conftest.py``:

- ``store_manager`` — a running :class:`~aiostore.StoreManager` with a memory store
  ``"memory"`` and a file store ``"file"`` under ``tmp_path``, probing every 0.05 s
  (its configuration is the overridable fixture ``store_manager_config``);
- ``memory_store``, ``file_store`` — those two stores;
- ``s3_server`` — a moto S3 server on 127.0.0.1 for the session (skipped without moto);
  ``s3_store`` — an ``s3`` store on it with a fresh bucket per test;
- ``http_server_store`` — an aiohttp static server on 127.0.0.1 and an ``http`` store on it:
  ``store, directory = http_server_store``;
- ``faults`` — a :class:`FaultInjector`: read-only, failing writes, dropped ranges, latency,
  failing or hanging probes, a broken session; each returns an undo handle; all are undone at
  teardown.

Plus :func:`wait_for_capability` and the marker ``@pytest.mark.needs_capability(Capability.X)``.
Async fixtures need pytest-asyncio and run on the requesting test's event loop, whatever its
``loop_scope``. The conformance suite for drivers is :mod:`aiostore.testing.conformance`; see
``docs/testing.md``.
"""

from __future__ import annotations

from typing import Any as _Any

from ._faults import FaultHandle as FaultHandle
from ._faults import FaultInjector as FaultInjector
from ._servers import HTTPServerStore as HTTPServerStore
from ._servers import S3Server as S3Server
from ._wait import CapabilityWaitTimeout as CapabilityWaitTimeout
from ._wait import wait_for_capability as wait_for_capability

__all__ = [
    "CapabilityWaitTimeout",
    "FaultHandle",
    "FaultInjector",
    "HTTPServerStore",
    "S3Server",
    "async_fixture",
    "wait_for_capability",
]


def __getattr__(name: str) -> _Any:
    # The plugin's fixtures and ``async_fixture`` need pytest: imported only when asked for, so
    # the fault injector and the waiters work in programs without pytest.
    if name == "async_fixture" or name in _PLUGIN_NAMES:
        from . import _plugin

        return getattr(_plugin, name)
    raise AttributeError(f"module 'aiostore.testing' has no attribute {name!r}")


_PLUGIN_NAMES = frozenset(
    {
        "faults",
        "file_store",
        "http_server_store",
        "memory_store",
        "s3_server",
        "s3_store",
        "store_manager",
        "store_manager_config",
    }
)
