"""A driver from outside aiostore: registered by entry point name, and held to the contract by
the conformance suite, in process and from a separate pytest run."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from aiostore import BadStoreConfiguration, Capability, StoreManager
from aiostore._manager import load_driver
from aiostore.testing.conformance import ConformanceSuite

from .conftest import DIST_ROOT, write_dist_info


def test_entry_point_is_found_by_name(dictdriver_site: Path) -> None:
    """importlib.metadata sees the entry point; the manager loads the driver by its name."""
    (ep,) = importlib.metadata.entry_points(group="aiostore.drivers", name="dictdrv")
    assert ep.value == "aiostore_dictdriver:DictDriver"
    assert ep.dist is not None and ep.dist.name == "aiostore-dictdriver"
    cls = load_driver("dictdrv")
    assert cls.__module__ == "aiostore_dictdriver" and cls.__name__ == "DictDriver"
    manager = StoreManager({"stores": {"d": {"driver": "dictdrv", "chunk_size": 3}}})
    store = manager["d"]
    assert store.driver.name == "dictdrv"
    assert store.native_capabilities == cls.native_capabilities
    assert manager.resolve("dict://d/some/key") == (store, "some/key")


def test_not_registered_without_its_distribution() -> None:
    """Without the dist-info on sys.path the name is unknown (the test above is not vacuous)."""
    with pytest.raises(BadStoreConfiguration, match="unknown driver 'dictdrv'"):
        StoreManager({"stores": {"d": {"driver": "dictdrv"}}})


def test_bad_option_names_store_and_option(dictdriver_site: Path) -> None:
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager({"stores": {"d": {"driver": "dictdrv", "chunk": 3}}})
    assert info.value.store == "d" and info.value.option == "chunk"


async def test_round_trip_through_the_manager(dictdriver_site: Path) -> None:
    async with StoreManager({"stores": {"d": {"driver": "dictdrv"}}}) as manager:
        store = manager["d"]
        stored = await store.put("a/b", b"payload")
        assert stored.location == "dict://d/a/b"
        assert await store.read("a/b", offset=3, length=2) == b"lo"
        assert Capability.WRITE_RANDOM not in store.capabilities


class TestDictDriverConformance(ConformanceSuite):
    """The suite in this process, against the driver by its entry point name."""

    @pytest.fixture
    def store_config(self, dictdriver_site: Path) -> dict[str, Any]:
        return {"driver": "dictdrv", "chunk_size": 4096}


def test_conformance_from_a_separate_project(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example package's own test module, run by a fresh pytest in its own project (strict
    asyncio mode, no conftest): the plugin loads by entry point, the driver by entry point."""
    site = tmp_path / "site"
    write_dist_info(site)
    shutil.copytree(DIST_ROOT / "tests", pytester.path / "tests")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pythonpath = os.pathsep.join(
        [str(site), str(DIST_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    # The same suite again, on a module-scoped loop chosen by the subclass.
    pytester.makepyfile(
        test_module_loop="""
        import asyncio

        import pytest
        import pytest_asyncio

        from aiostore.testing.conformance import ConformanceSuite


        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def module_loop():
            return asyncio.get_running_loop()


        class TestOnAModuleLoop(ConformanceSuite):
            pytestmark = pytest.mark.asyncio(loop_scope="module")

            @pytest.fixture
            def store_config(self):
                return {"driver": "dictdrv"}

            async def test_the_loop_is_the_modules(self, store, module_loop):
                assert asyncio.get_running_loop() is module_loop
                assert any(t.get_name() == "aiostore-prober" for t in asyncio.all_tasks())
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) >= 2 * 25, result.stdout.str()
    result.stdout.fnmatch_lines(["test_module_loop.py *", "tests/test_conformance.py *"])
    # Every skip is a capability the driver lacks, nothing else.
    skips = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    assert skips and all("the store has" in s or "lacks WRITE_CHUNK" in s for s in skips), skips
