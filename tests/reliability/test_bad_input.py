"""Bad input, generated: keys, locations and configuration either work or raise the documented
error — never an unhandled exception, never a path outside the store root."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiostore
from aiostore import BadStoreConfiguration, InvalidKey, NotFound, UnknownScheme, UnknownStore

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
HAS_FILE = importlib.util.find_spec("aiostore.drivers.file") is not None

# Pieces that attack path handling: traversal in many encodings, separators, unicode look-alikes.
NASTY = [
    "..",
    ".",
    "",
    "/",
    "//",
    "\\",
    "..\\",
    "%2e%2e",
    "%2E%2E%2F",
    "..%2f",
    "%00",
    "\x00",
    "\u2025",
    "\uff0e\uff0e",
    "\u002e\u002e",
    "\u0000",
    "\n",
    "\x7f",
    "~",
    "$HOME",
    "C:",
    "con",
    "a" * 300,
    "\u00e9",
    "e\u0301",
    "\U0001f600",
    "\ud800",
]
key_strategy = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=8), min_size=1, max_size=6).map("/".join),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


class Tally:
    tried = 0
    accepted = 0


@pytest.fixture(scope="module")
def tally() -> Tally:
    t = Tally()
    yield t  # type: ignore[misc]
    print(f"\n[reliability] bad input: {t.tried} inputs tried, {t.accepted} accepted")


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@given(key=key_strategy)
@SETTINGS
def test_keys_work_or_raise_invalid_key(
    key: str, tmp_path_factory: pytest.TempPathFactory, tally: Tally
) -> None:
    """Every generated key: a full round trip, or InvalidKey before any I/O."""
    tally.tried += 1
    root = tmp_path_factory.mktemp("root")
    outside = {p for p in root.parent.iterdir()}
    stores: dict[str, Any] = {"m": {"driver": "memory"}}
    if HAS_FILE:
        stores["f"] = {"driver": "file", "root": str(root / "data")}

    async def main() -> None:
        async with aiostore.StoreManager({"probe": {"enabled": False}, "stores": stores}) as m:
            for store in m:
                try:
                    await store.put(key, b"payload")
                except InvalidKey:
                    continue
                tally.accepted += 1
                assert await store.read(key) == b"payload"
                assert store.location(key)
                again, again_key = m.resolve(store.location(key))
                assert again is store and again_key == key
                await store.delete(key)
                with pytest.raises(NotFound):
                    await store.stat(key)

    _run(main())
    # nothing was created next to the root
    assert {p for p in root.parent.iterdir()} == outside
    if HAS_FILE:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                real = Path(dirpath, f).resolve()
                assert root.resolve() in real.parents


@given(
    location=st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda scheme, rest: f"{scheme}://{rest}",
            st.sampled_from(["file", "s3", "http", "https", "memory", "ftp", "FILE", "Memory", ""]),
            st.text(max_size=40)
            | st.sampled_from(["m/a/../b", "m/%2e%2e/x", "m//a", "m/a%00b", "m/"]),
        ),
    )
)
@SETTINGS
def test_locations_resolve_or_raise(location: str, tally: Tally) -> None:
    """resolve(): a (store, valid key) pair, or UnknownScheme / UnknownStore / InvalidKey."""
    tally.tried += 1
    m = aiostore.StoreManager({"stores": {"m": {"driver": "memory"}}})
    try:
        store, key = m.resolve(location)
    except (UnknownScheme, UnknownStore, InvalidKey):
        return
    tally.accepted += 1
    assert store.name == "m"
    assert ".." not in key.split("/")


option_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@given(
    config=st.one_of(
        st.dictionaries(st.text(max_size=8), option_values, max_size=4),
        st.fixed_dictionaries(
            {
                "stores": st.dictionaries(
                    st.text(max_size=8),
                    st.dictionaries(
                        st.sampled_from(
                            [
                                "driver",
                                "root",
                                "priority",
                                "read_only",
                                "reusable",
                                "probe",
                                "max_bytes",
                                "bogus",
                            ]
                        ),
                        option_values | st.sampled_from(["memory", "file", "s3", "http", "nope"]),
                        max_size=5,
                    ),
                    max_size=3,
                )
            },
            optional={
                "probe": st.dictionaries(
                    st.sampled_from(
                        [
                            "interval",
                            "timeout",
                            "failures_to_revoke",
                            "successes_to_restore",
                            "enabled",
                            "x",
                        ]
                    ),
                    option_values,
                    max_size=3,
                ),
                "default": st.text(max_size=5),
            },
        ),
    )
)
@SETTINGS
def test_config_mappings_build_or_raise_bad_configuration(
    config: dict[str, Any], tally: Tally
) -> None:
    """Any mapping: a manager, or BadStoreConfiguration — never another exception."""
    tally.tried += 1
    try:
        aiostore.StoreManager(config)
    except BadStoreConfiguration as exc:
        assert str(exc)
        return
    tally.accepted += 1
