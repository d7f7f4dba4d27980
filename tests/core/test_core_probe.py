"""Probing: hysteresis, passive signals, early re-probes, timeouts, shutdown, logs, reports."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiostore import Capability as C
from aiostore import (
    CapabilityChange,
    HealthReport,
    StorageFull,
    StorageWriteDenied,
    Store,
    StoreAddDisabled,
    StoreGetNotSupported,
    StoreManager,
    StoreRandomGetNotSupported,
)

from .support import FakeDriver, fake_store

MEM_ALL = C.RW_RANDOM | C.DRIVER_REUSABLE
FAST = 0.02


class ProbeCountAtChange(logging.Handler):
    """Records, at the very moment a change is logged, how many probes the store has run."""

    def __init__(self, store: Store) -> None:
        super().__init__(logging.DEBUG)
        self.store = store
        self.seen: list[tuple[int, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO and repr(self.store.name) in record.getMessage():
            self.seen.append((record.levelno, self.store.health.probes, record.getMessage()))


@pytest.fixture
def probe_log() -> AsyncIterator[Any]:
    handlers: list[logging.Handler] = []
    logger = logging.getLogger("aiostore.probe")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)

    def attach(store: Store) -> ProbeCountAtChange:
        handler = ProbeCountAtChange(store)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield attach  # type: ignore[misc]
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(old_level)


async def _until(predicate: Any, timeout: float = 3.0, step: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


async def test_write_fault_revokes_and_heals_with_exact_hysteresis(probe_log: Any) -> None:
    config = {
        "probe": {
            "interval": FAST,
            "timeout": 1.0,
            "failures_to_revoke": 3,
            "successes_to_restore": 2,
        },
        "stores": {"m": {"driver": "memory"}},
    }
    async with StoreManager(config) as manager:
        store = manager["m"]
        log = probe_log(store)
        await store.put("k", b"v")
        await _until(lambda: store.health.probes >= 2)
        reads = 0

        async def reader() -> None:
            nonlocal reads
            while True:
                assert await store.read("k") == b"v"
                assert await store.read("k", offset=0, length=1) == b"v"
                reads += 1
                await asyncio.sleep(0.003)

        read_task = asyncio.ensure_future(reader())
        try:
            p0 = store.health.probes
            store.faults.write_errno = errno.EIO  # fails probes, proves nothing passively
            await asyncio.wait_for(store.wait_for(C.WRITE_ACCESS, present=False), 3)
            assert log.seen[0][0] == logging.WARNING
            assert log.seen[0][1] == p0 + 3, "revoked by exactly the third failing probe"
            health = store.health.capabilities["WRITE_ACCESS"]
            assert health.revoked and "EIO" in health.reason
            assert store.capabilities == C.READ_RANDOM | C.DRIVER_REUSABLE
            for _ in range(5):
                # fails fast: on the first step of the coroutine, without awaiting anything
                call = store.put("new", b"x")
                with pytest.raises(StoreAddDisabled) as info:
                    call.send(None)
                assert info.value.transient is True
                assert "EIO" in info.value.reason
            assert await store.read("k") == b"v"
            await asyncio.sleep(0.05)
            assert store.capabilities == C.READ_RANDOM | C.DRIVER_REUSABLE
            p1 = store.health.probes
            store.faults.clear()
            await asyncio.wait_for(store.wait_healthy(), 3)
            assert log.seen[1][0] == logging.INFO
            assert log.seen[1][1] == p1 + 2, "restored by exactly the second good probe"
            assert len(log.seen) == 2
            obj = await store.put("new", b"x")
            assert obj.size == 1
        finally:
            read_task.cancel()
            await asyncio.gather(read_task, return_exceptions=True)
        assert reads > 5
        assert store.health.healthy


async def test_probes_run_at_the_configured_interval() -> None:
    interval = 0.02
    config = {"probe": {"interval": interval}, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        store = manager["m"]
        await asyncio.sleep(interval)
        p0, t0 = store.health.probes, time.monotonic()
        await asyncio.sleep(0.4)
        rate = (store.health.probes - p0) / (time.monotonic() - t0)
    # 50/s expected (jitter ±10 %); generous bounds for a busy machine, but no bursts and no
    # schedule that drifts far behind
    assert 20 <= rate <= 1 / (0.9 * interval) + 5


async def test_start_up_probe_applies_at_once() -> None:
    manager = StoreManager(
        {
            "probe": {"interval": 60.0, "failures_to_revoke": 5},
            "stores": {"m": {"driver": "memory"}},
        }
    )
    manager["m"].faults.read_only = True
    async with manager:
        assert manager["m"].health.probes == 1
        assert C.WRITE_ACCESS not in manager["m"].capabilities


async def test_dropped_random_access_revokes_only_random_bits() -> None:
    config = {
        "probe": {"interval": FAST, "failures_to_revoke": 2},
        "stores": {"m": {"driver": "memory"}},
    }
    async with StoreManager(config) as manager:
        store = manager["m"]
        await store.put("k", b"0123456789")
        store.faults.drop_random = True
        await asyncio.wait_for(store.wait_for(C.READ_OFFSET, present=False), 3)
        assert store.capabilities == C.READ_ACCESS | C.WRITE_RANDOM | C.DRIVER_REUSABLE
        assert C.READ_CHUNK not in store.capabilities
        for kw in ({"offset": 1}, {"length": 2}, {"offset": 1, "length": 2}):
            with pytest.raises(StoreRandomGetNotSupported) as info:
                await store.read("k", **kw)
            assert info.value.transient is True
        assert await store.read("k") == b"0123456789"
        async with store.open("k") as reader:
            assert await reader.read() == b"0123456789"
        store.faults.clear()
        await asyncio.wait_for(store.wait_healthy(), 3)
        assert await store.read("k", offset=8) == b"89"


async def test_range_failure_in_an_operation_revokes_at_once() -> None:
    config = {"probe": {"enabled": False}, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        store = manager["m"]
        await store.put("k", b"0123456789")
        store.faults.drop_random = True
        with pytest.raises(StoreRandomGetNotSupported) as info:
            await store.read("k", offset=3)
        assert info.value.store == "m"
        assert C.READ_ACCESS in store.capabilities
        assert C.READ_OFFSET not in store.capabilities and C.READ_CHUNK not in store.capabilities
        assert store.health.probes == 0, "no probe needed: the operation proved it"


async def test_no_flapping_with_alternating_results() -> None:
    config = {
        "probe": {"enabled": False, "failures_to_revoke": 2, "successes_to_restore": 2},
        "stores": {"m": {"driver": "memory"}},
    }
    async with StoreManager(config) as manager:
        store = manager["m"]
        changes = store.changes()
        for i in range(40):
            store.faults.read_only = i % 2 == 0
            report = await store.probe()
            assert report.current == MEM_ALL
            cap = report.capabilities["WRITE_ACCESS"]
            assert (cap.consecutive_failures, cap.consecutive_successes) == (
                (1, 0) if i % 2 == 0 else (0, 1)
            )
        assert changes.pending() == 0
        assert store.health.probes == 40
        # the control: two failures in a row do revoke, then alternating never restores
        store.faults.read_only = True
        await store.probe()
        await store.probe()
        assert C.WRITE_ACCESS not in store.capabilities
        for i in range(20):
            store.faults.read_only = i % 2 == 1
            await store.probe()
            assert C.WRITE_ACCESS not in store.capabilities
        assert changes.pending() == 1


@pytest.mark.parametrize("how", ["hang", "raise", "hang-in-session"])
async def test_failing_probe_is_a_failure_and_others_keep_probing(how: str) -> None:
    config = {
        "probe": {"interval": FAST, "timeout": 0.05, "failures_to_revoke": 2},
        "stores": {"bad": fake_store(), "good": {"driver": "memory"}, "also": fake_store()},
    }
    async with StoreManager(config) as manager:
        bad, good, also = manager["bad"], manager["good"], manager["also"]
        driver = bad.driver
        assert isinstance(driver, FakeDriver)
        if how == "hang":
            bad.faults.probe_hang = True
        elif how == "raise":
            bad.faults.probe_error = "the probe exploded"
        else:
            driver.probe_delay = 3600
        started_good = good.health.probes
        started_also = also.health.probes
        await asyncio.wait_for(bad.wait_for(C.READ_ACCESS, present=False), 3)
        assert bad.capabilities == C.DRIVER_REUSABLE
        report = bad.health
        assert report.last_error is not None
        if how == "raise":
            assert "the probe exploded" in report.last_error
        else:
            assert "timed out after 0.05s" in report.last_error
            assert report.last_probe_duration is not None
            assert 0.04 <= report.last_probe_duration < 1.0
        assert report.capabilities["READ_ACCESS"].consecutive_failures >= 2
        with pytest.raises(StoreGetNotSupported):
            await bad.read("k")
        # the bad store's loop goes on, and so do the others'
        p = bad.health.probes
        await _until(
            lambda: (
                bad.health.probes >= p + 2
                and good.health.probes >= started_good + 4
                and also.health.probes >= started_also + 4
            )
        )
        assert good.health.healthy and also.health.healthy
        bad.faults.clear()
        driver.probe_delay = 0
        await asyncio.wait_for(bad.wait_healthy(), 3)


async def test_passive_enospc_revokes_before_the_next_probe() -> None:
    config = {
        "probe": {"interval": 60.0, "failures_to_revoke": 3},
        "stores": {"m": {"driver": "memory"}},
    }
    async with StoreManager(config) as manager:
        store = manager["m"]
        changes = store.changes()
        assert store.health.probes == 1  # the start-up probe; the next one is a minute away
        store.faults.write_errno = errno.ENOSPC
        with pytest.raises(StorageFull) as info:
            await store.put("k", b"v")
        assert info.value.store == "m" and info.value.key == "k"
        assert isinstance(info.value.__cause__, OSError)
        assert C.WRITE_ACCESS not in store.capabilities, "revoked at once"
        change = changes.get_nowait()
        assert change is not None and "ENOSPC" in change.reason
        assert store.capabilities == C.READ_RANDOM | C.DRIVER_REUSABLE
        # and an early re-probe was scheduled (it confirms: still failing)
        await _until(lambda: store.health.probes == 2, timeout=1.0)
        assert store.statistics()["probe"]["early_granted"] == 1
        assert C.WRITE_ACCESS not in store.capabilities
        with pytest.raises(StoreAddDisabled):
            await store.put("k", b"v")


async def test_early_reprobe_is_rate_limited() -> None:
    interval = 2.0
    config = {"probe": {"interval": interval}, "stores": {"m": {"driver": "memory"}}}
    async with StoreManager(config) as manager:
        store = manager["m"]
        t0 = time.monotonic()
        assert store.health.probes == 1
        store.faults.read_only = True
        with pytest.raises(StorageWriteDenied):
            await store.put("k", b"v")  # passive: revokes and asks for a probe (granted)
        await _until(lambda: store.health.probes == 2, timeout=0.5)
        for _ in range(30):
            with pytest.raises(StoreAddDisabled) as info:
                await store.put("k", b"v")
            assert info.value.transient
        stats = store.statistics()["probe"]
        assert stats == {"early_requests": 31, "early_granted": 1}
        await asyncio.sleep(0.05)
        assert store.health.probes == 2, "rate-limited: no second early probe yet"
        await asyncio.sleep(max(0.0, t0 + interval / 4 + 0.02 - time.monotonic()))
        with pytest.raises(StoreAddDisabled):
            await store.put("k", b"v")
        assert store.statistics()["probe"]["early_granted"] == 2
        await _until(lambda: store.health.probes == 3, timeout=0.5)
        assert time.monotonic() - t0 < interval * 0.9, "all of it before the scheduled probe"


async def test_early_reprobe_not_asked_for_permanent_denials() -> None:
    config = {"probe": {"interval": 60.0}, "stores": {"m": {"driver": "memory", "read_only": True}}}
    async with StoreManager(config) as manager:
        store = manager["m"]
        with pytest.raises(StoreAddDisabled) as info:
            await store.put("k", b"v")
        assert info.value.transient is False
        assert store.statistics()["probe"]["early_requests"] == 0


@pytest.mark.parametrize("where", ["fault", "session"])
async def test_leaving_mid_probe_leaves_no_task(where: str) -> None:
    config = {
        "probe": {"interval": 0.01, "timeout": 30.0},
        "stores": {f"s{i}": fake_store() for i in range(5)},
    }
    manager = StoreManager(config)
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    async with manager:
        for store in manager:
            driver = store.driver
            assert isinstance(driver, FakeDriver)
            if where == "fault":
                store.faults.probe_hang = True
            else:
                driver.probe_delay = 3600
        await asyncio.sleep(0.05)  # every store is now stuck inside a probe
        if where == "session":
            assert all(s.statistics()["sessions"]["users"] == 1 for s in manager)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    after = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert after == before
    for store in manager:
        driver = store.driver
        assert isinstance(driver, FakeDriver)
        assert driver.open_sessions() == []
        assert store.health.probing is False


async def test_every_change_logs_exactly_one_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiostore.probe")
    config = {
        "probe": {"enabled": False, "failures_to_revoke": 1, "successes_to_restore": 1},
        "stores": {"m": {"driver": "memory"}, "f": fake_store()},
    }
    async with StoreManager(config) as manager:
        events = manager.changes()
        m, f = manager["m"], manager["f"]
        m.faults.read_only = True
        await m.probe()  # revoke
        await m.probe()  # no change
        m.faults.clear()
        await m.probe()  # restore
        m.faults.probe_error = "kaput"
        await m.probe()  # revoke READ_ACCESS and WRITE_ACCESS, one change
        m.faults.clear()
        await m.probe()  # restore
        m.faults.write_errno = errno.ENOSPC
        with pytest.raises(StorageFull):
            await m.put("k", b"v")  # passive revoke
        m.faults.clear()
        await m.probe()  # restore
        f.faults.session_broken = True
        with pytest.raises(Exception, match="broke"):
            await f.exists("k")  # DRIVER_REUSABLE revoked while retired
        assert await f.exists("k") is False  # ... and restored by a fresh session
        got: list[CapabilityChange] = []
        while (change := events.get_nowait()) is not None:
            got.append(change)
    records = [
        r for r in caplog.records if r.name == "aiostore.probe" and r.levelno >= logging.INFO
    ]
    assert len(got) == 8
    assert len(records) == len(got)
    for change, record in zip(got, records, strict=True):
        assert record.levelno == (logging.WARNING if change.revoked else logging.INFO)
        assert repr(change.store) in record.getMessage()
        assert change.reason in record.getMessage()


async def test_health_report_and_snapshot_are_json_ready() -> None:
    config = {
        "probe": {"interval": FAST, "failures_to_revoke": 1},
        "stores": {"m": {"driver": "memory", "max_bytes": 10}, "f": fake_store(reusable=False)},
    }
    async with StoreManager(config) as manager:
        store = manager["m"]
        report = store.health
        assert isinstance(report, HealthReport)
        assert report.store == "m" and report.probing is True and report.healthy
        assert report.current == report.configured == MEM_ALL
        assert report.probes >= 1 and report.last_probe_at is not None
        assert report.last_probe_duration is not None and report.last_error is None
        json.dumps(report.to_dict())
        await store.put("k", b"0123456789")  # now full: the probe revokes WRITE_ACCESS
        await asyncio.wait_for(store.wait_for(C.WRITE_ACCESS, present=False), 3)
        report = store.health
        assert not report.healthy
        cap = report.capabilities["WRITE_ACCESS"]
        assert cap.revoked and cap.capability == C.WRITE_ACCESS and "full" in cap.reason
        assert cap.changed_at is not None and cap.consecutive_failures >= 1
        assert "REVOKED" in str(report)
        data = json.loads(json.dumps(report.to_dict()))
        assert data["capabilities"]["WRITE_ACCESS"]["revoked"] is True
        snap = json.loads(json.dumps(manager.snapshot()))
        assert snap["default"] == "m" and snap["running"] is True
        s = snap["stores"]["m"]
        assert s["current"]["value"] == int(C.READ_RANDOM | C.DRIVER_REUSABLE)
        assert s["configured"]["value"] == s["native"]["value"] == int(MEM_ALL)
        assert "WRITE_ACCESS" not in s["current"]["names"]
        assert s["health"]["healthy"] is False and s["options"] == {"max_bytes": 10}
        assert s["probe"]["failures_to_revoke"] == 1
        assert snap["stores"]["f"]["configured"]["names"] == C.RW_RANDOM.names
        reports = await manager.probe()
        assert isinstance(reports, dict) and set(reports) == {"m", "f"}
        one = await manager.probe("f")
        assert isinstance(one, HealthReport) and one.store == "f"
    assert store.health.probing is False
    json.dumps(manager.snapshot())
