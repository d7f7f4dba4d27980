"""The plugin as users get it: loaded by its ``pytest11`` entry point in a fresh pytest process,
under pytest-asyncio's default settings and under module-scoped loops."""

from __future__ import annotations

import importlib.util
import sys

import pytest

DEFAULTS = """
import errno

import pytest

import aiostore.testing
from aiostore import Capability, StorageFull, StoreManager
from aiostore.testing import wait_for_capability

IDLE = StoreManager({"stores": {"m": {"driver": "memory"}}})  # never entered: faults are data


def test_loaded_by_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("aiostore") is aiostore.testing._plugin
    dists = {d.metadata["name"] for _, d in pytestconfig.pluginmanager.list_plugin_distinfo()}
    assert "aiostore" in dists


@pytest.mark.asyncio
async def test_fixtures_in_strict_mode(store_manager, memory_store, file_store, faults):
    assert store_manager["memory"] is memory_store and store_manager["file"] is file_store
    await file_store.put("k", b"v")
    with faults.fail_writes("file", errno.ENOSPC):
        with pytest.raises(StorageFull):
            await file_store.put("k2", b"v")
        await wait_for_capability(file_store, Capability.WRITE_ACCESS, present=False)
    await wait_for_capability(file_store, Capability.WRITE_ACCESS)
    await file_store.put("k2", b"v")


def test_a_sync_test_gets_a_running_manager(memory_store):
    assert memory_store.health.probing


@pytest.mark.asyncio
async def test_fails_with_faults_active(memory_store, faults):
    for store in (IDLE["m"], memory_store):
        faults.read_only(store)
        faults.hang_probes(store)
        faults.latency(store, 1)
    assert not IDLE["m"].faults.active, "deliberate failure"


def test_the_failed_tests_faults_were_undone():
    assert not IDLE["m"].faults.active


@pytest.mark.needs_capability(Capability.WRITE_RANDOM)
def test_marker_runs_when_capable(memory_store):
    assert Capability.WRITE_RANDOM in memory_store.configured_capabilities


@pytest.mark.asyncio
@pytest.mark.needs_capability(Capability.WRITE_ACCESS)
async def test_marker_skips_a_read_only_store(http_server_store):
    raise AssertionError("must not run")


class TestReadOnlyFileStore:
    @pytest.fixture
    def store_manager_config(self, store_manager_config):
        store_manager_config["stores"]["file"]["read_only"] = True
        return store_manager_config

    @pytest.mark.needs_capability(Capability.WRITE_ACCESS, store="file_store")
    def test_marker_looks_at_the_named_store(self, file_store, memory_store):
        raise AssertionError("must not run")
"""

MODULE_LOOP = """
import asyncio

import pytest
import pytest_asyncio

from aiostore import Capability
from aiostore.testing import wait_for_capability

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_loop():
    return asyncio.get_running_loop()


async def test_fixtures_run_on_the_module_loop(module_loop, store_manager, memory_store, faults):
    assert asyncio.get_running_loop() is module_loop
    assert any(t.get_name() == "aiostore-prober" for t in asyncio.all_tasks())
    # Only a prober running on this loop can notice this while the test waits.
    with faults.fail_probes(memory_store):
        await wait_for_capability(memory_store, Capability.READ_ACCESS, present=False)
    await wait_for_capability(memory_store, Capability.READ_ACCESS)


async def test_again_on_the_same_loop(module_loop, file_store):
    assert asyncio.get_running_loop() is module_loop
    await file_store.put("k", b"v")
    assert await file_store.read("k") == b"v"
"""

AUTO_MODULE = """
import asyncio

import pytest

from aiostore import Capability, StorageWriteDenied, StoreAddDisabled
from aiostore.testing import wait_for_capability

LOOPS = []
TOUCHED = []


async def test_faults_by_name(store_manager, memory_store, faults):
    LOOPS.append(asyncio.get_running_loop())
    with faults.read_only("memory"):
        with pytest.raises(StorageWriteDenied):
            await memory_store.put("k", b"v")
        with pytest.raises(StoreAddDisabled):
            await memory_store.put("k", b"v")
    await wait_for_capability(memory_store, Capability.WRITE_ACCESS)
    await memory_store.put("k", b"v")


async def test_s3_store(s3_store):
    pytest.importorskip("aiostore.drivers.s3")
    LOOPS.append(asyncio.get_running_loop())
    await s3_store.put("k", b"in a bucket")
    assert await s3_store.read("k", offset=3) == b"a bucket"


async def test_http_server_store(http_server_store):
    LOOPS.append(asyncio.get_running_loop())
    http_server_store.seed("a/b", b"served")
    assert await http_server_store.store.read("a/b", offset=1, length=3) == b"erv"


async def test_fails_with_a_fault_active(file_store, faults):
    TOUCHED.append(file_store)
    faults.fail_writes(file_store)
    faults.drop_ranges(file_store)
    raise AssertionError("deliberate failure")


async def test_one_loop_and_faults_undone():
    LOOPS.append(asyncio.get_running_loop())
    assert len(set(LOOPS)) == 1
    assert not TOUCHED[0].faults.active
"""


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry-point plugins load in the child process."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_PLUGINS", raising=False)


@pytest.mark.usefixtures("autoload")
def test_default_settings(pytester: pytest.Pytester) -> None:
    """No asyncio settings at all (strict mode, default loop scopes), plus a module that runs on a
    module-scoped loop by marker."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_defaults=DEFAULTS, test_module_loop=MODULE_LOOP)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rfs")
    result.assert_outcomes(passed=7, failed=1, skipped=2)
    result.stdout.re_match_lines([r"(?i)asyncio: mode=(mode\.)?strict,"])
    result.stdout.fnmatch_lines(
        ["E * deliberate failure", "FAILED test_defaults.py::test_fails_with_faults_active*"],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*store 'http' (driver 'http') lacks WRITE_ACCESS*",
            "SKIPPED*store 'file' (driver 'file') lacks WRITE_ACCESS*",
        ],
        consecutive=False,
    )


@pytest.mark.usefixtures("autoload")
def test_module_loop_scope_settings(pytester: pytest.Pytester) -> None:
    """Auto mode with every loop module-scoped by configuration."""
    pytester.makeini(
        "[pytest]\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = module\n"
        "asyncio_default_test_loop_scope = module\n"
    )
    pytester.makepyfile(test_auto_module=AUTO_MODULE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rfs")
    result.stdout.re_match_lines(
        [r"(?i)asyncio: mode=(mode\.)?auto,.*asyncio_default_test_loop_scope=module"]
    )
    has_s3 = importlib.util.find_spec("aiostore.drivers.s3") is not None
    has_moto = importlib.util.find_spec("moto") is not None
    s3_runs = int(has_s3 and has_moto)
    result.assert_outcomes(passed=3 + s3_runs, failed=1, skipped=1 - s3_runs)


NEEDS_MISUSE = """
import pytest

from aiostore import Capability


@pytest.mark.needs_capability(Capability.READ_ACCESS)
def test_no_store():
    pass


@pytest.mark.needs_capability(Capability.READ_ACCESS, store="nope")
def test_unknown_fixture(memory_store):
    pass


@pytest.fixture
def not_a_store():
    return 42


@pytest.mark.needs_capability(Capability.READ_ACCESS, store="not_a_store")
def test_not_a_store(not_a_store):
    pass


@pytest.mark.needs_capability("READ_ACCESS")
def test_not_a_capability(memory_store):
    pass
"""


def test_needs_capability_misuse_is_reported(pytester: pytest.Pytester) -> None:
    """A marker that cannot apply errors with a reason instead of running or skipping."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_misuse=NEEDS_MISUSE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [
            "*the test uses no Store fixture*",
            "*the test uses no fixture named 'nope'*",
            "*that fixture is not a Store*",
            "*takes aiostore.Capability values, not 'READ_ACCESS'*",
        ],
        consecutive=False,
    )


def test_s3_server_skips_without_moto(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without moto the S3 fixtures skip, saying what to install."""
    monkeypatch.setitem(sys.modules, "moto.server", None)  # makes the import fail
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_s3="""
        def test_server(s3_server):
            raise AssertionError("must not run")

        async def test_store(s3_store):
            raise AssertionError("must not run")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "--asyncio-mode=auto")
    result.assert_outcomes(skipped=2)
    result.stdout.re_match_lines(
        [r"SKIPPED .*the s3_server fixture needs moto\[server\].*pip install"]
    )
