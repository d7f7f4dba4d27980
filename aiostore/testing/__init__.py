"""Test tooling for aiostore users and driver authors; also a pytest plugin.

Installing aiostore registers this module as a pytest plugin (entry point ``pytest11``), so the
fixtures below are available in any test suite without a ``conftest.py``:

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

import pytest

# Before anything imports it: plain asserts in the suite report like the user's own.
pytest.register_assert_rewrite("aiostore.testing.conformance")

from ._faults import FaultHandle as FaultHandle  # noqa: E402
from ._faults import FaultInjector as FaultInjector  # noqa: E402
from ._plugin import async_fixture as async_fixture  # noqa: E402
from ._plugin import faults as faults  # noqa: E402
from ._plugin import file_store as file_store  # noqa: E402
from ._plugin import http_server_store as http_server_store  # noqa: E402
from ._plugin import memory_store as memory_store  # noqa: E402
from ._plugin import pytest_configure as pytest_configure  # noqa: E402
from ._plugin import pytest_fixture_setup as pytest_fixture_setup  # noqa: E402
from ._plugin import pytest_pycollect_makeitem as pytest_pycollect_makeitem  # noqa: E402
from ._plugin import pytest_runtest_setup as pytest_runtest_setup  # noqa: E402
from ._plugin import s3_server as s3_server  # noqa: E402
from ._plugin import s3_store as s3_store  # noqa: E402
from ._plugin import store_manager as store_manager  # noqa: E402
from ._plugin import store_manager_config as store_manager_config  # noqa: E402
from ._servers import HTTPServerStore as HTTPServerStore  # noqa: E402
from ._servers import S3Server as S3Server  # noqa: E402
from ._wait import CapabilityWaitTimeout as CapabilityWaitTimeout  # noqa: E402
from ._wait import wait_for_capability as wait_for_capability  # noqa: E402

__all__ = [
    "CapabilityWaitTimeout",
    "FaultHandle",
    "FaultInjector",
    "HTTPServerStore",
    "S3Server",
    "async_fixture",
    "wait_for_capability",
]
