"""The check matrix: every operation × missing capability → the contract's error, before any I/O."""

from __future__ import annotations

from typing import Any

import pytest

from aiostore import Capability as C
from aiostore import (
    CapabilityError,
    Store,
    StoreAddDisabled,
    StoreDeleteNotSupported,
    StoreGetNotSupported,
    StoreManager,
    StoreRandomGetNotSupported,
    StoreWriteNotSupported,
)
from aiostore.capabilities.check import CHECKS, check, required_for

from .support import ALL, CountingChunks, FakeDriver, fake_store

G, R = StoreGetNotSupported, StoreRandomGetNotSupported

# (operation, arguments, the capability that is missing, the error the contract names)
MATRIX: list[tuple[str, dict[str, Any], C, type[CapabilityError]]] = [
    ("open", {}, C.READ_ACCESS, G),
    ("open", {"offset": 5}, C.READ_ACCESS, G),
    ("open", {"offset": 5}, C.READ_OFFSET, R),
    ("open", {"length": 2}, C.READ_CHUNK, R),
    ("open", {"offset": 0, "length": 0}, C.READ_CHUNK, R),
    ("open", {"offset": 1, "length": 2}, C.READ_OFFSET, R),
    ("open", {"offset": 1, "length": 2}, C.READ_CHUNK, R),
    ("read", {}, C.READ_ACCESS, G),
    ("read", {"offset": 5}, C.READ_ACCESS, G),
    ("read", {"offset": 5}, C.READ_OFFSET, R),
    ("read", {"length": 2}, C.READ_CHUNK, R),
    ("read", {"offset": 0, "length": 0}, C.READ_CHUNK, R),
    ("read", {"offset": 1, "length": 2}, C.READ_OFFSET, R),
    ("read", {"offset": 1, "length": 2}, C.READ_CHUNK, R),
    ("stat", {}, C.READ_ACCESS, G),
    ("exists", {}, C.READ_ACCESS, G),
    ("list", {}, C.READ_ACCESS, G),
    ("put", {}, C.WRITE_ACCESS, StoreAddDisabled),
    ("write", {"offset": 0}, C.WRITE_CHUNK, StoreWriteNotSupported),
    ("write", {"offset": 0}, C.WRITE_ACCESS, StoreWriteNotSupported),
    ("write", {"offset": 3}, C.WRITE_OFFSET, StoreWriteNotSupported),
    ("write", {"offset": 3}, C.WRITE_CHUNK, StoreWriteNotSupported),
    ("delete", {}, C.WRITE_ACCESS, StoreDeleteNotSupported),
]

# (operation, arguments, a capability that is missing but that this call does not need)
NOT_NEEDED: list[tuple[str, dict[str, Any], C]] = [
    ("read", {}, C.READ_RANDOM),
    ("read", {"offset": 0}, C.READ_OFFSET),
    ("read", {"length": 3}, C.READ_OFFSET),
    ("read", {"offset": 2}, C.READ_CHUNK),
    ("open", {"offset": 0, "length": None}, C.READ_RANDOM),
    ("stat", {}, C.WRITE_ACCESS),
    ("exists", {}, C.RW_RANDOM.revoke(C.READ_ACCESS)),
    ("list", {}, C.WRITE_ACCESS),
    ("put", {}, C.WRITE_RANDOM),
    ("put", {}, C.READ_ACCESS),
    ("write", {"offset": 0}, C.WRITE_OFFSET),
    ("delete", {}, C.WRITE_RANDOM),
]

ID = "{0}({1})-no-{2}".format


def _ids(cases: list[Any]) -> list[str]:
    return [
        ID(op, ",".join(f"{k}={v}" for k, v in kw.items()), cap.name) for op, kw, cap, *_ in cases
    ]


async def _make(configured: C, revoked: C | None) -> tuple[StoreManager, Store, FakeDriver]:
    manager = StoreManager(
        {
            "probe": {"enabled": False, "failures_to_revoke": 1},
            "stores": {"s": fake_store(caps=int(configured))},
        }
    )
    await manager.__aenter__()
    store = manager["s"]
    driver = store.driver
    assert isinstance(driver, FakeDriver)
    driver.objects["k"] = b"0123456789"
    if revoked is not None:
        driver.unhealthy[revoked] = "backend says no"
        await store.probe()
        assert int(revoked) & ~int(store.capabilities), "the probe revoked it"
        driver.unhealthy.clear()
    return manager, store, driver


async def _call(store: Store, op: str, kw: dict[str, Any], style: str, data: Any) -> Any:
    """Call ``op`` with the key (and data) passed positionally or by keyword."""
    args: tuple[Any, ...] = ()
    kwargs = dict(kw)
    if op == "list":
        if style == "positional":
            args = ("",)
        else:
            kwargs["prefix"] = ""
    elif style == "positional":
        args = ("k",)
    else:
        kwargs["key"] = "k"
    if op in ("put", "write"):
        payload = data if op == "put" else b"XY"
        if style == "positional":
            args += (payload,)
        else:
            kwargs["data"] = payload
    method = getattr(store, op)
    if op == "open":
        async with method(*args, **kwargs) as reader:
            return await reader.read()
    if op == "list":
        return [info async for info in method(*args, **kwargs)]
    return await method(*args, **kwargs)


@pytest.mark.parametrize("style", ["positional", "keyword"])
@pytest.mark.parametrize("mode", ["never", "revoked"])
@pytest.mark.parametrize(("op", "kw", "missing", "error"), MATRIX, ids=_ids(MATRIX))
async def test_check_matrix(
    op: str,
    kw: dict[str, Any],
    missing: C,
    error: type[CapabilityError],
    mode: str,
    style: str,
) -> None:
    if mode == "never":
        manager, store, driver = await _make(ALL.revoke(missing), None)
    else:
        manager, store, driver = await _make(ALL, missing)
    try:
        sessions_before = driver.calls["open_session"]
        data = CountingChunks([b"abc", b"def"])
        call = _call(store, op, kw, style, data)
        with pytest.raises(CapabilityError) as info:
            call.send(None)  # raises on the first step: nothing was awaited, no I/O
        exc = info.value
        assert type(exc) is error
        assert exc.transient is (mode == "revoked")
        assert exc.store == "s"
        assert exc.operation == op
        assert exc.key == (None if op == "list" else "k")
        assert exc.available == store.capabilities
        assert int(exc.required) & ~int(store.capabilities), "required names what is missing"
        assert "s" in str(exc)
        # before any I/O: no session taken, no driver method run, no input read
        assert driver.body_calls() == 0
        assert driver.calls["open_session"] == sessions_before
        assert not data.iterated and data.pulled == 0
        assert driver.objects == {"k": b"0123456789"}
    finally:
        await manager.__aexit__(None, None, None)


@pytest.mark.parametrize("style", ["positional", "keyword"])
@pytest.mark.parametrize(("op", "kw", "missing"), NOT_NEEDED, ids=_ids(NOT_NEEDED))
async def test_calls_that_do_not_need_the_missing_capability_pass(
    op: str, kw: dict[str, Any], missing: C, style: str
) -> None:
    manager, store, driver = await _make(ALL.revoke(missing), None)
    try:
        data = CountingChunks([b"abc", b"def"])
        if op == "put":
            driver.objects.clear()
        await _call(store, op, kw, style, data)
        assert driver.calls[op] == 1
    finally:
        await manager.__aexit__(None, None, None)


async def test_results_are_the_same_positional_or_keyword() -> None:
    manager, store, _ = await _make(ALL, None)
    try:
        assert await store.read("k", offset=2, length=3) == await store.read(
            key="k", offset=2, length=3
        )
        assert await _call(store, "open", {"offset": 4}, "positional", None) == b"456789"
        assert await _call(store, "open", {"offset": 4}, "keyword", None) == b"456789"
    finally:
        await manager.__aexit__(None, None, None)


def test_table_covers_every_operation() -> None:
    assert set(CHECKS) == {"open", "read", "stat", "exists", "list", "put", "write", "delete"}
    assert required_for("read", {"offset": 0, "length": None}) == C.READ_ACCESS
    assert required_for("read", {"offset": 3, "length": 1}) == C.READ_RANDOM
    assert required_for("write", {"offset": 0}) == C.WRITE_CHUNK
    assert required_for("write", {"offset": 9}) == C.WRITE_RANDOM
    assert required_for("put", {}) == C.WRITE_ACCESS


def test_check_function_alone() -> None:
    from aiostore.capabilities.state import CapabilitySnapshot

    snap = CapabilitySnapshot(ALL, ALL, C.READ_ACCESS | C.WRITE_ACCESS)
    assert check("s", snap, "read", "k", offset=0, length=None) is None
    with pytest.raises(StoreRandomGetNotSupported) as info:
        check("s", snap, "read", "k", lambda missing: f"because {int(missing)}", offset=1)
    assert info.value.transient is True
    assert info.value.reason == "because 2"
    assert "retry later" in str(info.value)
    never = CapabilitySnapshot(ALL, C.READ_ACCESS, C.READ_ACCESS)
    with pytest.raises(StoreDeleteNotSupported) as info2:
        check("s", never, "delete", "k")
    assert info2.value.transient is False
    assert info2.value.required == C.WRITE_ACCESS


async def test_failed_transient_check_asks_for_an_early_probe() -> None:
    manager = StoreManager(
        {
            "probe": {"interval": 60.0, "failures_to_revoke": 1, "initial": False},
            "stores": {"s": fake_store()},
        }
    )
    async with manager:
        store = manager["s"]
        driver = store.driver
        assert isinstance(driver, FakeDriver)
        driver.unhealthy[C.WRITE_ACCESS] = "no"
        await store.probe()
        assert C.WRITE_ACCESS not in store.capabilities
        with pytest.raises(StoreAddDisabled):
            await store.put("x", b"1")
        assert store.statistics()["probe"]["early_requests"] == 1
