"""The pytest plugin: fixtures, the ``needs_capability`` marker, and loop-scope alignment.

Async fixtures here are pytest-asyncio fixtures that run on the *test's* event loop, whatever
``loop_scope`` the test uses: a running manager's prober must run on the loop that the test
awaits in, or probes would stall while the test runs (see :func:`pytest_fixture_setup`).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest

# Before anything imports it: plain asserts in the suite report like the user's own.
pytest.register_assert_rewrite("aiostore.testing.conformance")

from .._manager import StoreManager  # noqa: E402
from .._store import Store  # noqa: E402
from ..capabilities.flags import Capability  # noqa: E402
from ._faults import FaultInjector  # noqa: E402
from ._servers import HTTPServerStore, S3Server, StaticServer, start_moto  # noqa: E402

__all__ = [
    "PROBE_SETTINGS",
    "SERVER_PROBE_SETTINGS",
    "async_fixture",
    "faults",
    "file_store",
    "http_server_store",
    "memory_store",
    "pytest_configure",
    "pytest_fixture_setup",
    "pytest_pycollect_makeitem",
    "pytest_runtest_setup",
    "s3_server",
    "s3_store",
    "store_manager",
    "store_manager_config",
]

#: Probe settings of the stores the fixtures build: frequent, so health changes show quickly in
#: tests, with timeouts that a loaded CI machine does not hit by accident (lower ``timeout`` in
#: ``store_manager_config`` to test hanging probes quickly).
PROBE_SETTINGS: Final[Mapping[str, Any]] = {"interval": 0.05, "timeout": 2.0}
#: ... for stores on a server (S3, HTTP), whose probes make several requests.
SERVER_PROBE_SETTINGS: Final[Mapping[str, Any]] = {"interval": 0.1, "timeout": 5.0}

_F = TypeVar("_F", bound=Callable[..., Any])
_FOLLOW: Final = "_aiostore_follows_test_loop"

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio is in the test extra
    pytest_asyncio = None  # type: ignore[assignment]


def async_fixture(func: _F) -> _F:
    """Declare an async fixture that runs on the loop of the test that requests it.

    Works in pytest-asyncio's strict and auto modes. Used by this plugin and by
    :class:`~aiostore.testing.conformance.ConformanceSuite`.
    """
    target = getattr(func, "__func__", func)
    setattr(target, _FOLLOW, True)
    if pytest_asyncio is None:  # pragma: no cover
        return pytest.fixture(func)
    return pytest_asyncio.fixture(func)  # type: ignore[return-value]


# -- hooks ----------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_capability(*capabilities, store=None): skip unless the test's store (every Store"
        " among its fixtures, or the fixture named by store=) is configured with all of these"
        " aiostore.Capability values",
    )


def _test_loop_scope(request: pytest.FixtureRequest) -> str | None:
    """The loop scope pytest-asyncio runs the requesting test in (None: not an async test)."""
    item = request.node
    if pytest_asyncio is None or not isinstance(item, pytest.Function):
        return None
    if not pytest_asyncio.is_async_test(item):
        return None
    marker = item.get_closest_marker("asyncio")
    scope = None
    if marker is not None:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if scope is None:
        try:
            scope = item.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # pytest-asyncio without that option: tests run per function
            scope = None
    return str(scope) if scope else "function"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Run this plugin's function-scoped async fixtures on the requesting test's loop.

    pytest-asyncio picks a fixture's loop from its ``loop_scope`` (or the
    ``asyncio_default_fixture_loop_scope`` setting); a test marked
    ``asyncio(loop_scope="module")`` would otherwise get a manager whose prober lives on an idle
    function-scoped loop. A function-scoped fixture may use any wider loop, so following the test
    is always valid.
    """
    target = getattr(fixturedef.func, "__func__", fixturedef.func)
    if not getattr(target, _FOLLOW, False) or fixturedef.scope != "function":
        return (yield)
    scope = _test_loop_scope(request)
    if scope is None:
        return (yield)
    previous = getattr(target, "_loop_scope", None)
    # pytest-asyncio reads it in its own (inner) hook wrapper.
    setattr(target, "_loop_scope", scope)  # noqa: B010
    try:
        return (yield)
    finally:
        setattr(target, "_loop_scope", previous)  # noqa: B010


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, object, object]:
    """Mark the async tests of conformance suites ``asyncio`` when nothing else does.

    Strict mode then needs no configuration, and a ``pytest.mark.asyncio(loop_scope=...)`` of the
    user's (on the subclass or the module) still wins: a mark on the suite's base class would
    come first in pytest's MRO order. This wrapper is inner to pytest-asyncio's, which turns the
    marked functions into its items afterwards.
    """
    result = yield
    if (
        isinstance(collector, pytest.Class)
        and getattr(collector.obj, "__aiostore_conformance__", False)
        and inspect.iscoroutinefunction(obj)
        and result
    ):
        for node in result if isinstance(result, list) else [result]:
            if isinstance(node, pytest.Function) and node.get_closest_marker("asyncio") is None:
                node.add_marker(pytest.mark.asyncio)
    return result


def _stores_in(value: object) -> list[Store]:
    if isinstance(value, Store):
        return [value]
    inner = getattr(value, "store", None)
    if isinstance(inner, Store):
        return [inner]
    return []


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    """After fixtures are set up, skip tests marked ``needs_capability`` whose store lacks it."""
    result = yield
    marks = list(item.iter_markers("needs_capability"))
    if marks and isinstance(item, pytest.Function):
        _skip_unless_capable(item, marks)
    return result


def _skip_unless_capable(item: pytest.Function, marks: list[pytest.Mark]) -> None:
    for mark in marks:
        required = Capability.NONE
        for cap in mark.args:
            if isinstance(cap, bool) or not isinstance(cap, int):
                pytest.fail(
                    f"needs_capability takes aiostore.Capability values, not {cap!r}",
                    pytrace=False,
                )
            required |= Capability(cap)
        name = mark.kwargs.get("store")
        if name is not None:
            if name not in item.funcargs:
                pytest.fail(
                    f"needs_capability(store={name!r}): the test uses no fixture named {name!r}",
                    pytrace=False,
                )
            stores = _stores_in(item.funcargs[name])
            if not stores:
                pytest.fail(
                    f"needs_capability(store={name!r}): that fixture is not a Store",
                    pytrace=False,
                )
        else:
            stores = [s for v in item.funcargs.values() for s in _stores_in(v)]
            if not stores:
                pytest.fail(
                    "needs_capability: the test uses no Store fixture (request one, or name it"
                    " with store=...)",
                    pytrace=False,
                )
        for store in stores:
            configured = store.configured_capabilities
            if required & configured != required:
                missing = [n for n in required.names if Capability[n] & configured != Capability[n]]
                pytest.skip(
                    f"store {store.name!r} (driver {store.driver.name!r}) lacks"
                    f" {'|'.join(missing)}; it is configured with"
                    f" {'|'.join(configured.names) or 'NONE'}"
                )


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def store_manager_config(tmp_path: Path) -> dict[str, Any]:
    """The configuration ``store_manager`` runs: a memory store ``"memory"`` (the default) and a
    file store ``"file"`` under ``tmp_path``, probing every 0.05 s with a 2 s timeout. Override it
    to add or change stores."""
    return {
        "default": "memory",
        "probe": dict(PROBE_SETTINGS),
        "stores": {
            "memory": {"driver": "memory"},
            "file": {"driver": "file", "root": str(tmp_path / "aiostore-file")},
        },
    }


@async_fixture
async def store_manager(store_manager_config: Mapping[str, Any]) -> AsyncIterator[StoreManager]:
    """A running :class:`~aiostore.StoreManager` built from ``store_manager_config``; closed
    (probes stopped, sessions closed) at teardown."""
    async with StoreManager(store_manager_config) as manager:
        yield manager


@pytest.fixture
def memory_store(store_manager: StoreManager) -> Store:
    """The ``"memory"`` store of ``store_manager``."""
    return store_manager["memory"]


@pytest.fixture
def file_store(store_manager: StoreManager) -> Store:
    """The ``"file"`` store of ``store_manager`` (its root is under ``tmp_path``)."""
    return store_manager["file"]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 for the whole session (skips without ``moto[server]``)."""
    try:
        handle = start_moto()
    except ImportError as exc:
        pytest.skip(f"the s3_server fixture needs moto[server] ({exc}): pip install 'moto[server]'")
    try:
        yield handle.info
    finally:
        handle.stop()


@async_fixture
async def s3_store(s3_server: S3Server) -> AsyncIterator[Store]:
    """An ``s3`` store on ``s3_server`` with a fresh bucket, in a running manager of its own."""
    config = {"probe": dict(SERVER_PROBE_SETTINGS), "stores": {"s3": s3_server.store_config()}}
    async with StoreManager(config) as manager:
        yield manager["s3"]


@async_fixture
async def http_server_store(tmp_path: Path) -> AsyncIterator[HTTPServerStore]:
    """An aiohttp static server on 127.0.0.1 serving a fresh directory (Range honoured) and an
    ``http`` store on it: ``store, directory = http_server_store``; files written into
    ``directory`` (or through ``http_server_store.seed(key, data)``) are the store's objects."""
    directory = tmp_path / f"http-root-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    server = StaticServer(directory)
    base_url = await server.start()
    try:
        config = {
            "probe": dict(SERVER_PROBE_SETTINGS),
            "stores": {"http": {"driver": "http", "base_url": base_url}},
        }
        async with StoreManager(config) as manager:
            yield HTTPServerStore(manager["http"], directory)
    finally:
        await server.aclose()


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[FaultInjector]:
    """A :class:`~aiostore.testing.FaultInjector`; every fault still active is undone at
    teardown, also when the test fails. Stores may be named: names resolve against the test's
    ``StoreManager`` and ``Store`` fixtures (``faults.read_only("file")``)."""
    injector = FaultInjector(lambda name: _resolve_store(request, name))
    try:
        yield injector
    finally:
        injector.undo_all()


def _resolve_store(request: pytest.FixtureRequest, name: str) -> Store:
    item = request.node
    values = list(getattr(item, "funcargs", {}).values())
    for value in values:
        for store in _stores_in(value):
            if store.name == name:
                return store
    for value in values:
        if isinstance(value, StoreManager) and name in value:
            return value[name]
    raise LookupError(
        f"faults: no store named {name!r} among this test's fixtures; pass the Store itself"
    )
