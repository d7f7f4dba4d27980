"""The conformance suite is not vacuous: drivers with known bugs fail exactly the tests that
cover those bugs (and a correct driver passes them: tests/conformance)."""

from __future__ import annotations

import pytest

BROKEN_DRIVERS = '''
import pytest

from aiostore.drivers.memory import MemoryDriver, MemorySession
from aiostore.errors import NotFound
from aiostore.testing.conformance import ConformanceSuite


class CarelessSession(MemorySession):
    """Ignores overwrite=False, loses metadata, and deletes missing keys silently."""

    async def put(self, key, stream, *, size, overwrite, metadata):
        await super().put(key, stream, size=size, overwrite=True, metadata={})

    async def delete(self, key):
        self._d.objects.pop(key, None)


class CarelessDriver(MemoryDriver):
    async def open_session(self):
        return CarelessSession(self)


class PartialSession(MemorySession):
    """Writes chunks into place as they arrive: failed puts leave partial objects."""

    async def put(self, key, stream, *, size, overwrite, metadata):
        await super().put(key, iter_none(), size=0, overwrite=overwrite, metadata=metadata)
        async for chunk in stream:
            old = self._d.objects[key]
            self._d.objects[key] = type(old)(old.data + chunk, old.metadata, old.modified)


async def iter_none():
    return
    yield b""


class PartialDriver(MemoryDriver):
    async def open_session(self):
        return PartialSession(self)


class ClippingSession(MemorySession):
    """Ranges past the end raise instead of yielding what exists; listing is directory-only."""

    async def read(self, key, offset, length):
        data = self._get(key).data
        if length is not None and offset + length > len(data):
            raise NotFound("range beyond the end", key=key)
        return await super().read(key, offset, length)

    async def list(self, prefix):
        async for info in super().list(prefix):
            if prefix.endswith("/") or info.key[len(prefix):].startswith("/"):
                yield info


class ClippingDriver(MemoryDriver):
    async def open_session(self):
        return ClippingSession(self)


class TestCareless(ConformanceSuite):
    @pytest.fixture
    def store_config(self):
        return {"driver": CarelessDriver}


class TestPartial(ConformanceSuite):
    @pytest.fixture
    def store_config(self):
        return {"driver": PartialDriver}


class TestClipping(ConformanceSuite):
    @pytest.fixture
    def store_config(self):
        return {"driver": ClippingDriver}
'''

EXPECTED_FAILURES = {
    "TestCareless": {
        "test_duplicate_and_overwrite",
        "test_concurrent_create_only_puts_have_one_winner",
        "test_metadata_round_trip",
        "test_delete",
    },
    "TestPartial": {
        "test_size_mismatch_stores_nothing",
        "test_failing_input_stores_nothing",
        "test_cancelled_put_leaves_nothing",
    },
    "TestClipping": {"test_read_ranges", "test_list_by_prefix"},
}


def test_broken_drivers_fail_the_tests_for_their_bugs(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_broken=BROKEN_DRIVERS)
    result = pytester.inline_run("-p", "no:cacheprovider")
    passed, _, failed = result.listoutcomes()
    got: dict[str, set[str]] = {}
    for report in failed:
        cls, name = report.nodeid.split("::")[1:3]
        got.setdefault(cls, set()).add(name.split("[")[0])
    assert got == EXPECTED_FAILURES
    assert len(passed) > 3 * 15  # everything else still passes
