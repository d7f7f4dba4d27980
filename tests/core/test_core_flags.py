"""Capability: the contract's table, containment, revoking, normalizing; per-store state."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aiostore
from aiostore import Capability as C
from aiostore.capabilities.flags import NAMED
from aiostore.capabilities.state import CapabilityState

from .support import NO_PROBE

CONTRACT_TABLE = {
    "NONE": 0,
    "READ_ACCESS": 1,
    "READ_OFFSET": 3,
    "READ_CHUNK": 5,
    "READ_RANDOM": 7,
    "WRITE_ACCESS": 8,
    "WRITE_OFFSET": 24,
    "WRITE_CHUNK": 40,
    "WRITE_RANDOM": 56,
    "RW_ACCESS": 9,
    "RW_OFFSET": 27,
    "RW_CHUNK": 45,
    "RW_RANDOM": 63,
    "DRIVER_REUSABLE": 64,
}

READ_EXTRA = 2 | 4
WRITE_EXTRA = 16 | 32


def has_orphans(value: int) -> bool:
    """An offset/chunk bit without the access bit it extends."""
    return bool((value & READ_EXTRA and not value & 1) or (value & WRITE_EXTRA and not value & 8))


def test_values_are_the_contract_table_exactly() -> None:
    assert {m.name: int(m) for m in C.__members__.values()} == CONTRACT_TABLE
    assert {name: int(C[name]) for name in CONTRACT_TABLE} == CONTRACT_TABLE
    assert [c.name for c in NAMED] == list(CONTRACT_TABLE)[1:]
    assert issubclass(C, int)
    # ints interoperate both ways
    assert C(63) is C.RW_RANDOM
    assert C.READ_OFFSET == 3


@pytest.mark.parametrize(
    ("part", "whole"),
    [
        (C.READ_ACCESS, C.READ_OFFSET),
        (C.READ_ACCESS, C.READ_CHUNK),
        (C.READ_OFFSET, C.READ_RANDOM),
        (C.READ_CHUNK, C.READ_RANDOM),
        (C.WRITE_ACCESS, C.WRITE_OFFSET),
        (C.WRITE_ACCESS, C.WRITE_CHUNK),
        (C.WRITE_OFFSET, C.WRITE_RANDOM),
        (C.WRITE_CHUNK, C.WRITE_RANDOM),
        (C.READ_ACCESS, C.RW_ACCESS),
        (C.WRITE_ACCESS, C.RW_ACCESS),
        (C.READ_OFFSET, C.RW_OFFSET),
        (C.WRITE_OFFSET, C.RW_OFFSET),
        (C.READ_CHUNK, C.RW_CHUNK),
        (C.WRITE_CHUNK, C.RW_CHUNK),
        (C.RW_OFFSET, C.RW_RANDOM),
        (C.RW_CHUNK, C.RW_RANDOM),
        (C.READ_RANDOM, C.RW_RANDOM),
        (C.WRITE_RANDOM, C.RW_RANDOM),
    ],
)
def test_containment(part: C, whole: C) -> None:
    assert part in whole
    assert whole & part == part
    assert whole not in part
    assert part & whole != whole


def test_composites_are_unions() -> None:
    assert C.READ_RANDOM == C.READ_OFFSET | C.READ_CHUNK
    assert C.WRITE_RANDOM == C.WRITE_OFFSET | C.WRITE_CHUNK
    assert C.RW_ACCESS == C.READ_ACCESS | C.WRITE_ACCESS
    assert C.RW_OFFSET == C.READ_OFFSET | C.WRITE_OFFSET
    assert C.RW_CHUNK == C.READ_CHUNK | C.WRITE_CHUNK
    assert C.RW_RANDOM == C.RW_OFFSET | C.RW_CHUNK
    assert C.DRIVER_REUSABLE not in C.RW_RANDOM
    assert C.READ_ACCESS not in C.WRITE_RANDOM


@pytest.mark.parametrize(
    ("start", "revoked", "expected"),
    [
        (C.READ_RANDOM, C.READ_RANDOM, C.READ_ACCESS),
        (C.RW_RANDOM, C.READ_RANDOM, C.READ_ACCESS | C.WRITE_RANDOM),
        (C.RW_RANDOM, C.RW_RANDOM, C.RW_ACCESS),
        (C.RW_RANDOM | C.DRIVER_REUSABLE, C.RW_RANDOM, C.RW_ACCESS | C.DRIVER_REUSABLE),
        (C.RW_RANDOM, C.WRITE_ACCESS, C.READ_RANDOM),
        (C.RW_RANDOM, C.READ_ACCESS, C.WRITE_RANDOM),
        (C.RW_RANDOM, C.RW_ACCESS, C.NONE),
        (C.RW_RANDOM, C.WRITE_RANDOM, C.READ_RANDOM | C.WRITE_ACCESS),
        (C.RW_RANDOM, C.READ_OFFSET, C.READ_CHUNK | C.WRITE_RANDOM),
        (C.RW_RANDOM, C.WRITE_CHUNK, C.WRITE_OFFSET | C.READ_RANDOM),
        (C.RW_RANDOM | C.DRIVER_REUSABLE, C.DRIVER_REUSABLE, C.RW_RANDOM),
        (C.READ_ACCESS, C.WRITE_ACCESS, C.READ_ACCESS),
        (C.NONE, C.RW_RANDOM, C.NONE),
    ],
)
def test_revoke_rules(start: C, revoked: C, expected: C) -> None:
    assert start.revoke(revoked) == expected
    assert start.revoke(int(revoked)) == expected  # ints are accepted too


def test_revoking_write_access_removes_write_offset_and_chunk() -> None:
    value = (C.RW_RANDOM | C.DRIVER_REUSABLE).revoke(C.WRITE_ACCESS)
    assert C.WRITE_OFFSET not in value
    assert C.WRITE_CHUNK not in value
    assert int(value) & (8 | WRITE_EXTRA) == 0
    assert value == C.READ_RANDOM | C.DRIVER_REUSABLE


def test_normalized_drops_orphans() -> None:
    assert C(2).normalized() == C.NONE
    assert C(4 | 16).normalized() == C.NONE
    assert C(1 | 2 | 32).normalized() == C.READ_OFFSET
    assert C(8 | 16 | 4).normalized() == C.WRITE_OFFSET
    assert C(64 | 2).normalized() == C.DRIVER_REUSABLE


def test_grant_adds_base_and_respects_ceiling() -> None:
    assert C.NONE.grant(C.READ_RANDOM) == C.READ_RANDOM
    assert C.READ_ACCESS.grant(C.WRITE_CHUNK) == C.READ_ACCESS | C.WRITE_CHUNK
    assert C.NONE.grant(C.RW_RANDOM, ceiling=C.READ_RANDOM) == C.READ_RANDOM
    # a ceiling without the base bit cannot leave an orphan behind
    assert C.NONE.grant(C.READ_RANDOM, ceiling=C(2 | 4)) == C.NONE


def test_names() -> None:
    assert C.READ_ACCESS.names == ["READ_ACCESS"]
    assert C.READ_OFFSET.names == ["READ_ACCESS", "READ_OFFSET"]
    assert C.NONE.names == []
    assert (C.RW_RANDOM | C.DRIVER_REUSABLE).names == [c.name for c in NAMED]
    assert C.RW_ACCESS.names == ["READ_ACCESS", "WRITE_ACCESS", "RW_ACCESS"]


ANY_VALUE = st.integers(min_value=0, max_value=127)
ANY_CAP = st.sampled_from([C.NONE, *NAMED])


@given(value=ANY_VALUE, cap=ANY_CAP)
def test_revoke_property(value: int, cap: C) -> None:
    start = C(value).normalized()
    out = start.revoke(cap)
    assert not has_orphans(int(out))
    assert int(out) & ~int(start) == 0, "revoking never adds bits"
    extra = int(cap) & ~(1 | 8)
    removed = extra if extra else int(cap)
    assert int(out) & removed == 0, "the revoked bits are gone"
    # bits unrelated to what was revoked are kept
    kept = int(start) & ~removed
    if removed & 1:
        kept &= ~READ_EXTRA
    if removed & 8:
        kept &= ~WRITE_EXTRA
    assert int(out) == kept
    # revoking a composite keeps its base access bits
    if extra:
        assert int(out) & int(cap) & (1 | 8) == int(start) & int(cap) & (1 | 8)


@given(value=ANY_VALUE, cap=ANY_CAP, ceiling=ANY_VALUE)
def test_grant_and_normalize_property(value: int, cap: C, ceiling: int) -> None:
    raw = C(value)
    norm = raw.normalized()
    assert not has_orphans(int(norm))
    assert norm.normalized() == norm
    assert int(norm) & ~value == 0
    granted = norm.grant(cap, ceiling)
    assert not has_orphans(int(granted))
    assert int(granted) & ~ceiling == 0
    unbounded = norm.grant(cap)
    assert cap in unbounded
    assert norm in unbounded


def test_no_orphans_exhaustively() -> None:
    """Every value × every named capability, both operations (the property tests sample)."""
    for value in range(128):
        start = C(value).normalized()
        assert not has_orphans(int(start))
        for cap in (C.NONE, *NAMED):
            assert not has_orphans(int(start.revoke(cap)))
            assert not has_orphans(int(start.grant(cap)))
            for ceiling in (0, 2, 6, 48, 63, 127):
                assert not has_orphans(int(start.grant(cap, ceiling)))


def test_state_keeps_configured_within_native_and_normalized() -> None:
    state = CapabilityState("s", C.READ_RANDOM, C.RW_RANDOM | C.DRIVER_REUSABLE)
    snap = state.snapshot
    assert snap.native == C.READ_RANDOM
    assert snap.configured == C.READ_RANDOM
    assert snap.current == C.READ_RANDOM
    orphan = CapabilityState("s", C.RW_RANDOM, C(2 | 16))
    assert orphan.snapshot.configured == C.NONE


def test_state_snapshot_is_immutable_and_swapped_whole() -> None:
    state = CapabilityState("s", C.RW_RANDOM, C.RW_RANDOM)
    before = state.snapshot
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.current = C.NONE  # type: ignore[misc]
    change = state.set_revoked([C.WRITE_ACCESS], "test")
    assert change is not None
    assert change.old == C.RW_RANDOM and change.new == C.READ_RANDOM
    assert change.revoked == C.WRITE_RANDOM and change.restored == C.NONE
    after = state.snapshot
    assert after is not before
    assert before.current == C.RW_RANDOM  # the old snapshot is untouched
    assert after.current == C.READ_RANDOM and after.version == before.version + 1
    # the same revoked set again: no change, no new snapshot
    assert state.set_revoked([C.WRITE_ACCESS], "again") is None
    assert state.snapshot is after


async def test_state_is_per_store_instance() -> None:
    config = {
        "probe": NO_PROBE,
        "stores": {"a": {"driver": "memory"}, "b": {"driver": "memory"}},
    }
    m1 = aiostore.StoreManager(config)
    m2 = aiostore.StoreManager(config)
    async with m1, m2:
        a, b, other_a = m1["a"], m1["b"], m2["a"]
        assert a.faults is not b.faults and a.faults is not other_a.faults
        a.faults.read_only = True
        for _ in range(a.probe_config.failures_to_revoke):
            await a.probe()
            await b.probe()
            await other_a.probe()
        assert C.WRITE_ACCESS not in a.capabilities
        assert b.capabilities == other_a.capabilities == C.RW_RANDOM | C.DRIVER_REUSABLE
        assert b.health.healthy and other_a.health.healthy and not a.health.healthy
        await b.put("k", b"x")
        assert not await a.exists("k")
        assert not await other_a.exists("k")
