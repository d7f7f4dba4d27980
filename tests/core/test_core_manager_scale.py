"""A manager of many stores: drivers looked up once per name, per-store snapshots, cached names."""

from __future__ import annotations

from typing import Any

import pytest

import aiostore._manager as manager_module
from aiostore import Capability, StoreManager
from aiostore.errors import UnknownStore


def test_a_manager_scans_driver_entry_points_once_per_name(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = manager_module.entry_points

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(manager_module, "entry_points", counting)
    StoreManager({"stores": {f"m{i}": {"driver": "memory"} for i in range(50)}})
    assert len(calls) == 1, calls
    # an unknown driver is still an error naming what is installed (never cached)
    with pytest.raises(Exception, match="unknown driver 'nope'"):
        StoreManager({"stores": {"x": {"driver": "nope"}}})


async def test_snapshot_of_named_stores_only_in_their_order() -> None:
    config = {
        "probe": {"enabled": False},
        "stores": {f"m{i}": {"driver": "memory"} for i in range(5)},
    }
    async with StoreManager(config) as manager:
        whole = manager.snapshot()
        some = manager.snapshot(["m3", "m1"])
        assert list(some["stores"]) == ["m3", "m1"]
        assert some["stores"]["m3"] == whole["stores"]["m3"]
        assert {k: v for k, v in some.items() if k != "stores"} == {
            k: v for k, v in whole.items() if k != "stores"
        }
        with pytest.raises(UnknownStore):
            manager.snapshot(["m1", "nope"])


def test_capability_names_are_fresh_lists_with_the_same_content() -> None:
    caps = Capability.READ_RANDOM | Capability.WRITE_ACCESS
    first = caps.names
    assert "READ_RANDOM" in first and "WRITE_ACCESS" in first and "WRITE_RANDOM" not in first
    first.append("mutated")
    assert "mutated" not in caps.names  # the cache hands out copies
    assert caps.names == first[:-1]
