"""Health probing, all in one place: hysteresis, health reports, one store's probe, the scheduler.

A driver's ``probe()`` returns a :class:`Verdict` per capability it checks
(:mod:`aiostore.capabilities.verdict`, which drivers import without this module).
:class:`HealthTracker` turns verdicts (and passive signals from failed operations) into the
store's revoked set with hysteresis: revoke after ``failures_to_revoke`` consecutive failures,
restore after ``successes_to_restore`` consecutive successes, never above the configured layer.
:class:`ProbeRunner` runs one store's probe: at most one in flight, bounded by ``timeout``, a
probe that raises or hangs counted as a failure. :class:`Prober` is the scheduler: one
supervised loop per store inside an anyio task group.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import heapq
import logging
import math
import random
import time
import typing
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Final

import anyio
import anyio.abc

from ..errors import BadStoreConfiguration, StoreError
from .flags import Capability
from .state import CapabilityChange, CapabilityState
from .verdict import ProbeResult, Verdict

__all__ = [
    "CapabilityHealth",
    "HealthReport",
    "HealthTracker",
    "ProbeConfig",
    "ProbeResult",
    "ProbeRunner",
    "Prober",
    "Verdict",
]

log = logging.getLogger("aiostore.probe")
#: Jitter draws (bound once: the scheduler draws one per probe).
_random: Final = random.random


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """Probe settings of one store (``[probe]`` defaults, overridden by ``[stores.X.probe]``)."""

    interval: float = 10.0
    timeout: float = 5.0
    failures_to_revoke: int = 2
    successes_to_restore: int = 2
    enabled: bool = True
    #: Probe once when the manager starts and apply that verdict at once (no hysteresis).
    initial: bool = True
    #: Probes in flight at once across all stores (top-level ``[probe]`` table only).
    max_concurrent_probes: int = 64

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], base: ProbeConfig | None = None, store: str | None = None
    ) -> ProbeConfig:
        """Validate a ``probe`` table, filling what it omits from ``base``."""
        if not isinstance(data, Mapping):
            raise BadStoreConfiguration("must be a table", store=store, option="probe")
        base = base or cls()
        values: dict[str, Any] = {}
        for name, value in data.items():
            option = f"probe.{name}"
            if name in ("interval", "timeout"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise BadStoreConfiguration(
                        f"must be a number of seconds, not {value!r}", store=store, option=option
                    )
                if not (value > 0 and math.isfinite(value)):
                    raise BadStoreConfiguration(
                        f"must be positive, not {value!r}", store=store, option=option
                    )
                values[name] = float(value)
            elif name == "max_concurrent_probes" and store is not None:
                raise BadStoreConfiguration(
                    "is a manager-wide setting: set it in the top-level [probe] table",
                    store=store,
                    option=option,
                )
            elif name in ("failures_to_revoke", "successes_to_restore", "max_concurrent_probes"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise BadStoreConfiguration(
                        f"must be a whole number ≥ 1, not {value!r}", store=store, option=option
                    )
                values[name] = value
            elif name in ("enabled", "initial"):
                if not isinstance(value, bool):
                    raise BadStoreConfiguration(
                        f"must be true or false, not {value!r}", store=store, option=option
                    )
                values[name] = value
            else:
                raise BadStoreConfiguration("unknown probe option", store=store, option=option)
        return replace(base, **values)


@dataclass(frozen=True, slots=True)
class CapabilityHealth:
    """Health of one probed capability."""

    capability: Capability
    revoked: bool
    consecutive_failures: int
    consecutive_successes: int
    reason: str
    changed_at: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "capability": self.capability.name,
            "revoked": self.revoked,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "reason": self.reason,
            "changed_at": self.changed_at,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A store's health at one instant: ``store.health`` and ``manager.probe()`` return it."""

    store: str
    capabilities: Mapping[str, CapabilityHealth]
    current: Capability
    configured: Capability
    probes: int
    last_probe_at: float | None
    last_probe_duration: float | None
    last_error: str | None
    probing: bool
    #: Capabilities an operator unset (``store.unset_capabilities``), name → reason.
    unset: Mapping[str, str] = field(default_factory=dict)
    #: WRITE_ACCESS is revoked only for lack of space: deletes still pass.
    full_only: bool = False

    @property
    def healthy(self) -> bool:
        """True when nothing is revoked (current equals configured)."""
        return self.current == self.configured

    def to_dict(self) -> dict[str, object]:
        return {
            "store": self.store,
            "healthy": self.healthy,
            "probing": self.probing,
            "probes": self.probes,
            "last_probe_at": self.last_probe_at,
            "last_probe_duration": self.last_probe_duration,
            "last_error": self.last_error,
            "capabilities": {k: v.to_dict() for k, v in self.capabilities.items()},
            "unset": dict(self.unset),
            "full_only": self.full_only,
        }

    def __str__(self) -> str:
        lines = [
            f"HealthReport(store={self.store!r}, current={'|'.join(self.current.names) or 'NONE'},"
            f" probes={self.probes}, last_error={self.last_error!r})"
        ]
        for name, h in self.capabilities.items():
            state = "REVOKED" if h.revoked else "ok"
            lines.append(
                f"  {name}: {state} (failures={h.consecutive_failures},"
                f" successes={h.consecutive_successes}) {h.reason}"
            )
        return "\n".join(lines)


@dataclass(slots=True)
class _Counter:
    revoked: bool = False
    failures: int = 0
    successes: int = 0
    reason: str = ""
    changed_at: float | None = None
    #: The last failure was a lack of space (see :meth:`Verdict.full`).
    full: bool = False


@dataclass(slots=True)
class _ProbeStats:
    probes: int = 0
    last_at: float | None = None
    last_duration: float | None = None
    last_error: str | None = None


class HealthTracker:
    """Applies verdicts and passive signals with hysteresis; owns the store's revoked set."""

    __slots__ = ("_counters", "_stats", "config", "proven", "state")

    def __init__(self, state: CapabilityState, config: ProbeConfig) -> None:
        self.state = state
        self.config = config
        self._counters: dict[Capability, _Counter] = {}
        self._stats = _ProbeStats()
        #: Capability bits successful operations proved since the last probe (the evidence
        #: rule: a busy store is probed only for what traffic has not just proven).
        self.proven = 0

    # -- inputs -------------------------------------------------------------------------------
    def apply(
        self,
        verdicts: ProbeResult,
        *,
        duration: float | None = None,
        error: str | None = None,
        immediate: bool = False,
    ) -> CapabilityChange | None:
        """Fold one probe's verdicts in. ``immediate`` skips hysteresis (the start-up probe)."""
        stats = self._stats
        stats.probes += 1
        now = stats.last_at = time.time()
        stats.last_duration = duration
        stats.last_error = error
        configured = int(self.state.snapshot.configured)
        changed: list[str] = []
        need_fail = 1 if immediate else self.config.failures_to_revoke
        need_ok = 1 if immediate else self.config.successes_to_restore
        counters = self._counters
        for cap, verdict in verdicts.items():
            if not _and(cap, configured):
                continue  # never above configured: verdicts on what we never had are moot
            c = counters.get(cap)
            if c is None:
                c = counters[cap] = _Counter()
            if verdict.healthy:
                c.successes += 1
                c.failures = 0
                if verdict.reason and not c.revoked:
                    c.reason = verdict.reason  # what a healthy probe says (a mode it found)
                if c.revoked and c.successes >= need_ok:
                    c.revoked = False
                    c.changed_at = now
                    c.reason = verdict.reason or "probe healthy"
                    changed.append(f"{cap.name} restored: {c.reason}")
            else:
                c.failures += 1
                c.successes = 0
                c.reason = verdict.reason or "probe failed"
                if c.revoked and c.full != verdict.out_of_space:
                    changed.append(f"{cap.name} still revoked: {c.reason}")
                c.full = verdict.out_of_space
                if not c.revoked and c.failures >= need_fail:
                    c.revoked = True
                    c.changed_at = now
                    changed.append(f"{cap.name} revoked: {c.reason}")
        if not changed:
            return None  # nothing changed: no report, no snapshot, no log record
        return self._publish(changed)

    def passive(
        self, capability: Capability, reason: str, *, full: bool = False
    ) -> CapabilityChange | None:
        """An operation proved the backend lost ``capability``: revoke it at once (``full``:
        for lack of space)."""
        c = self._counters.setdefault(capability, _Counter())
        c.failures = max(c.failures, self.config.failures_to_revoke)
        c.successes = 0
        c.reason = reason
        was_full, c.full = c.full, full
        if c.revoked:
            return (
                self._publish([f"{capability.name} still revoked: {reason}"])
                if (was_full != full)
                else None
            )
        c.revoked = True
        c.changed_at = time.time()
        return self._publish([f"{capability.name} revoked: {reason}"])

    def restore_now(self, capability: Capability, reason: str) -> CapabilityChange | None:
        """Restore ``capability`` without waiting for probes (e.g. a fresh shared session)."""
        c = self._counters.get(capability)
        if c is None or not c.revoked:
            return None
        c.revoked = False
        c.failures = 0
        c.changed_at = time.time()
        c.reason = reason
        return self._publish([f"{capability.name} restored: {reason}"])

    def _publish(self, changed: list[str]) -> CapabilityChange | None:
        if not changed:
            return None
        reason = "; ".join(changed)
        full = [cap for cap, c in self._counters.items() if c.revoked and c.full]
        change = self.state.set_revoked(self.revoked(), reason, full)
        if change is not None:
            level = logging.WARNING if change.revoked else logging.INFO
            log.log(
                level,
                "store %r capabilities %s -> %s: %s",
                self.state.store,
                "|".join(change.old.names) or "NONE",
                "|".join(change.new.names) or "NONE",
                reason,
            )
        return change

    # -- outputs ------------------------------------------------------------------------------
    def revoked(self) -> list[Capability]:
        return [cap for cap, c in self._counters.items() if c.revoked]

    def reason_for(self, missing: Capability) -> str:
        """Reason text of the revoked capabilities that cover ``missing`` bits."""
        reasons = [
            f"{cap.name}: {c.reason}"
            for cap, c in self._counters.items()
            if c.revoked and self.state.derive([cap]) & missing != missing
        ]
        reasons += [
            f"{cap.name}: unset by operator" + (f": {why}" if why else "")
            for cap, why in self.state.unset_reasons().items()
            if self.state.derive([cap]) & missing != missing
        ]
        return "; ".join(reasons)

    def report(self, probing: bool) -> HealthReport:
        snap = self.state.snapshot
        caps = {
            cap.name or str(int(cap)): CapabilityHealth(
                cap, c.revoked, c.failures, c.successes, c.reason, c.changed_at
            )
            for cap, c in self._counters.items()
        }
        s = self._stats
        return HealthReport(
            self.state.store,
            caps,
            snap.current,
            snap.configured,
            s.probes,
            s.last_at,
            s.last_duration,
            s.last_error,
            probing,
            {str(cap.name): why for cap, why in self.state.unset_reasons().items()},
            snap.full_only,
        )


_PROVEN: Final = Verdict(True, "proven by a successful operation")


class _Probing(typing.Protocol):
    async def probe(self) -> ProbeResult: ...


class ProbeRunner:
    """One store's probe, folded into its health.

    At most one probe of a store runs at a time: a caller that arrives while one is in flight
    (``manager.probe()`` during a scheduled probe) waits for that one's verdicts instead of
    starting a second, so drivers never see overlapping probes. A probe that raises or exceeds
    ``timeout`` fails every capability it checks. ``failures_to_revoke`` whole-probe failures in
    a row call ``refresh`` (the store retires its shared session: a stale connection pool after
    the backend restarted may itself be the problem).
    """

    def __init__(
        self,
        store: str,
        health: HealthTracker,
        checks: tuple[Capability, ...],
        pool: _Pool,
        refresh: Callable[[str], None],
        hint: Callable[[Capability], None] = lambda proven: None,
    ) -> None:
        self.store = store
        self._hint = hint
        self.health = health
        self._checks = tuple((cap, int(cap)) for cap in checks)
        #: The capabilities a probe checks now (those of ``_checks`` configured in ``_checks_for``).
        self._checks_for = -1
        self._checking: list[Capability] = []
        self._pool = pool
        self._hinted = 0
        self._refresh = refresh
        #: The probe in flight on each loop: its joiners.
        self._inflight: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        self._errors = 0
        #: Called after each probe with (duration, error, verdicts) — the instrumentation hook.
        self.observer: Callable[[float, str | None, ProbeResult], None] | None = None

    async def run(self, immediate: bool = False) -> None:
        """Probe once (or join the probe in flight on this loop) and fold the verdicts in."""
        # In flight per loop: a probe on another loop (another thread's, or one left pending
        # on a loop that stopped) neither blocks nor ends this loop's probe.
        loop = asyncio.get_running_loop()
        inflight = self._inflight
        while (joiners := inflight.get(loop)) is not None:
            # Joiners are rare (manager.probe() during a scheduled probe): only they pay for a
            # future; the scheduled probe itself creates none.
            joined: asyncio.Future[None] = loop.create_future()
            joiners.append(joined)
            await asyncio.shield(joined)
            if not immediate:
                return
            # An immediate probe (no hysteresis) was asked for: the joined one was not that.
        inflight[loop] = joiners = []
        try:
            await self._probe(immediate)
        finally:
            del inflight[loop]
            for fut in joiners:
                if not fut.done():
                    fut.set_result(None)

    async def _probe(self, immediate: bool) -> None:
        health = self.health
        cfg = health.config
        configured = int(health.state.snapshot.configured)
        if configured != self._checks_for:  # what to check follows the configured set
            self._checks_for = configured
            self._checking = [cap for cap, bits in self._checks if bits & configured]
        checks = self._checking
        proven, health.proven = health.proven, 0
        started = time.monotonic()
        error: str | None = None
        verdicts: ProbeResult
        if proven and not immediate and all(_and(c, proven) == c for c in checks):
            # Traffic since the last probe proved everything this probe would check.
            verdicts = dict.fromkeys(checks, _PROVEN)
        else:
            if proven or self._hinted:  # tell the driver what traffic proved (or no longer)
                self._hint(Capability(proven))
                self._hinted = proven
            try:
                verdicts = await self._probe_session(cfg.timeout)
            except TimeoutError:
                error = f"probe timed out after {cfg.timeout:g}s"
            except Exception as exc:
                if isinstance(exc, StoreError):
                    exc.with_context(store=self.store)
                error = f"probe raised {type(exc).__name__}: {exc}"
                # DEBUG: the reason reaches the health report and, when it changes
                # capabilities, the one WARNING/INFO record of that change; a failing backend
                # must not log every interval.
                log.debug("store %r: %s", self.store, error, exc_info=exc)
            if error is not None:
                verdicts = {c: Verdict.fail(error) for c in checks}
            elif proven:
                # What traffic proved and the probe skipped (a write) counts as healthy.
                skipped = {c: _PROVEN for c in checks if _and(c, proven) == c and c not in verdicts}
                if skipped:
                    verdicts = {**verdicts, **skipped}
        duration = time.monotonic() - started
        health.apply(verdicts, duration=duration, error=error, immediate=immediate)
        if self.observer is not None:
            self.observer(duration, error, verdicts)
        self._errors = self._errors + 1 if error is not None else 0
        if self._errors == cfg.failures_to_revoke:
            self._refresh(f"{self._errors} probes in a row failed: {error}")

    async def _probe_session(self, timeout: float) -> ProbeResult:
        """``session.probe()`` on a borrowed session, bounded by ``timeout``.

        Every store runs this every interval, so it is lean: the running loop's shared session
        is borrowed without an await (as operations do), and the bound is a timer armed only
        when the probe first waits (:class:`_Bounded`): a probe that answers at once (a memory
        store's) costs no timer at all.
        """
        bounded = _Bounded(self._borrowed_probe(), timeout)
        try:
            verdicts: ProbeResult = await bounded
        except BaseException as exc:
            # An expired timer's cancellation is withdrawn however the probe ended (as
            # asyncio.timeout does); a CancelledError that was ours alone is the timeout, a
            # caller's cancel propagates, any other error stays what it is.
            if bounded.expired and bounded.uncancel() and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError from None
            raise
        finally:
            bounded.disarm()
        if bounded.expired:
            bounded.uncancel()  # the probe swallowed our cancellation and returned: undo it
        return verdicts

    async def _borrowed_probe(self) -> ProbeResult:
        pool = self._pool
        slot = pool.acquire_nowait() if pool.shared else None
        if slot is None:
            async with pool.session() as session:
                return await session.probe()
        try:
            verdicts: ProbeResult = await slot.view.probe()
        except BaseException as exc:
            if pool.release_nowait(slot, exc):
                await pool.close_slot(slot)
            raise
        if pool.release_nowait(slot):
            await pool.close_slot(slot)
        return verdicts


class _Bounded:
    """Await a coroutine with a deadline whose timer is armed only if the coroutine waits.

    The coroutine's first step runs inline (in the awaiting task, as a plain ``await`` would);
    if it finishes there, no timer was ever made. If it waits, the timer is armed for what is
    left of ``timeout`` and the rest is delegated with ``yield from`` (the awaiting task
    drives it exactly as it would have). On expiry the task is cancelled, as
    ``asyncio.timeout`` does; :meth:`uncancel` tells whether that was the only cancellation.
    """

    __slots__ = ("_cancelling", "_coro", "_deadline", "_task", "_timer", "expired")

    def __init__(self, coro: Coroutine[Any, Any, ProbeResult], timeout: float) -> None:
        self._coro = coro
        self._deadline = time.monotonic() + timeout
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self.expired = False

    def __await__(self) -> Generator[Any, None, ProbeResult]:
        coro = self._coro
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            return typing.cast(ProbeResult, done.value)
        self._arm()
        while True:  # hand what it waits for to the task; pass anything thrown in on to it
            try:
                yield waiting
            except BaseException as exc:
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return typing.cast(ProbeResult, done.value)
                continue
            break
        return (yield from coro.__await__())

    def _arm(self) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        delay = self._deadline - time.monotonic()
        self._timer = loop.call_at(loop.time() + max(0.0, delay), self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def uncancel(self) -> bool:
        """Withdraw our cancellation; True when no other is pending."""
        return self._task is not None and self._task.uncancel() <= self._cancelling


class _Pool(typing.Protocol):
    """What a probe needs of the store's session pool (:class:`aiostore._sessions.SessionPool`)."""

    @property
    def shared(self) -> bool: ...
    def acquire_nowait(self) -> Any: ...
    def release_nowait(self, slot: Any, exc: BaseException | None = None) -> bool: ...
    async def close_slot(self, slot: Any) -> None: ...
    def session(self) -> AbstractAsyncContextManager[_Probing]: ...


_and: Final = int.__and__


@dataclass(slots=True, eq=False)
class _Schedule:
    name: str
    config: ProbeConfig
    run: Callable[[], Awaitable[object]]
    #: When the next probe is due (loop time); heap entries with another due are stale.
    due: float = math.inf
    busy: bool = False
    #: A worker is running its probe now (``busy`` alone: it may still wait in the queue).
    started: bool = False
    #: An early probe was granted while one was running: run again when it ends.
    early_pending: bool = False
    last_early: float = -math.inf
    early_requests: int = 0
    early_granted: int = 0


class _Worker:
    """A long-lived task that runs due probes one after another."""

    __slots__ = ("current", "spill_armed", "task", "wake")

    def __init__(self) -> None:
        self.current: _Schedule | None = None
        self.spill_armed = False
        self.wake: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class Prober:
    """The scheduler: every store's probes, supervised by one task in the manager's task group.

    One heap of due times instead of a sleeping task per store: start times are spread over the
    first interval (no thundering herd), each store is probed start-to-start every interval
    (jittered ±10 %), never two probes of one store at once, at most ``max_concurrent`` probes
    in flight, and a slow or hung probe (bounded by its timeout) delays nobody else's schedule.

    Scheduling runs in loop callbacks: one timer, re-armed, launches every probe due within a
    ``tick`` (5 % of the shortest interval, at most 50 ms), so a thousand stores cost twenty
    timer callbacks a second. Due probes go to a queue that long-lived workers (at most
    ``max_concurrent``) drain, not to a task each: one woken worker runs probes that finish
    without waiting (a memory store's) back to back. When a probe does wait, a callback armed
    as it started finds the worker still inside it on the loop's next turn and wakes another
    worker for the rest of the queue — so a hung probe holds up one worker, never the queue.
    """

    def __init__(self, max_concurrent: int = 64) -> None:
        self._schedules: dict[str, _Schedule] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._max = max_concurrent
        self._heap: list[tuple[float, int, _Schedule]] = []
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._tick = 0.05
        self._ready: collections.deque[_Schedule] = collections.deque()
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        #: Workers told to run that have not started yet (at most one: see :meth:`_dispatch`).
        self._waking = 0
        #: Set when a scheduling callback fails: the supervising task then raises it.
        self._failed: asyncio.Future[None] | None = None
        #: The supervising task's context: timers and workers run in it, not in a caller's.
        self._context = contextvars.copy_context()

    def add(self, name: str, config: ProbeConfig, run: Callable[[], Awaitable[object]]) -> None:
        self._schedules[name] = _Schedule(name, config, run)

    @property
    def running(self) -> bool:
        return self._tg is not None

    @property
    def max_concurrent(self) -> int:
        return self._max

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        if any(s.config.enabled for s in self._schedules.values()):
            tg.start_soon(self._main, name="aiostore-probe-scheduler")

    def stop(self) -> None:
        self._tg = None

    def request(self, name: str) -> bool:
        """Ask for an early probe of ``name``; at most one per ``interval / 4``. True if granted."""
        sched = self._schedules.get(name)
        loop = self._loop
        if sched is None or self._tg is None or loop is None or not sched.config.enabled:
            return False
        sched.early_requests += 1
        now = time.monotonic()
        if now - sched.last_early < sched.config.interval / 4:
            return False
        sched.last_early = now
        sched.early_granted += 1
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            self._early(sched)
        else:  # thread-safe: a store may be used from another thread's event loop
            loop.call_soon_threadsafe(self._early, sched)
        return True

    def statistics(self, name: str) -> dict[str, int]:
        sched = self._schedules[name]
        return {"early_requests": sched.early_requests, "early_granted": sched.early_granted}

    # -- scheduling: loop callbacks --------------------------------------------------------------
    def _push(self, sched: _Schedule, due: float) -> None:
        sched.due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, sched))

    def _arm(self, at: float) -> None:
        """Make sure :meth:`_due` runs at ``at`` (or earlier)."""
        loop = self._loop
        if loop is None or at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        # In the scheduler's own context, never in that of whoever asked for an early probe.
        self._timer = loop.call_at(at, self._due, context=self._context)

    def _early(self, sched: _Schedule) -> None:
        if self._loop is None:
            return
        if sched.busy:
            if sched.started:
                sched.early_pending = True  # run again when this one ends
            # else: queued, not started yet — that probe is the early one
        else:
            now = self._loop.time()
            self._push(sched, now)
            self._arm(now)

    def _due(self) -> None:
        """Queue every probe due within a tick, then re-arm for the next one."""
        loop = self._loop
        self._timer = None
        self._timer_at = math.inf
        if loop is None:
            return
        try:
            now = loop.time()
            horizon = now + self._tick
            heap = self._heap
            ready = self._ready
            while heap and heap[0][0] <= horizon:
                due, _, sched = heapq.heappop(heap)
                if due != sched.due:
                    continue  # superseded by an early probe
                interval = sched.config.interval
                # Start to start: a late wake-up (a busy machine) or a slow probe does not push
                # the schedule back. Never a burst to catch up (starts stay ≥ interval/2 apart);
                # an early probe restarts the schedule.
                self._push(sched, max(due + interval * (0.9 + 0.2 * _random()), now + interval / 2))
                if not sched.busy:  # else still probing (slower than its interval): skip a turn
                    sched.busy = True
                    ready.append(sched)
            if heap:
                self._arm(max(heap[0][0], horizon))
            self._dispatch()
        except BaseException as exc:  # a bug here must not stop probing silently
            if self._failed is not None and not self._failed.done():
                self._failed.set_exception(exc)
            raise

    def _dispatch(self) -> None:
        """Get a worker going on the queue, unless one is about to start anyway."""
        loop = self._loop
        if not self._ready or self._waking or loop is None:
            return
        if self._idle:
            worker = self._idle.pop()
            assert worker.wake is not None
            worker.wake.set_result(None)
        elif len(self._workers) < self._max:
            worker = _Worker()
            self._workers.add(worker)
            worker.task = loop.create_task(
                self._work(worker), name="aiostore-probe-worker", context=self._context.copy()
            )
        else:
            return  # every worker is inside a probe: the first to finish takes the next
        self._waking += 1

    def _spill(self, worker: _Worker) -> None:
        """The loop's next turn after ``worker`` started a probe: still inside it? Then the
        probe waits for something, and another worker takes the rest of the queue."""
        worker.spill_armed = False
        if worker.current is not None:
            self._dispatch()

    # -- workers -----------------------------------------------------------------------------------
    async def _work(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        ready = self._ready
        try:
            while True:
                self._waking -= 1
                while ready:
                    sched = ready.popleft()
                    sched.started = True
                    worker.current = sched
                    if not worker.spill_armed:
                        worker.spill_armed = True
                        loop.call_soon(self._spill, worker)
                    try:
                        await sched.run()
                    except Exception:  # the run itself records failures; a last resort
                        log.exception("probe of store %r failed; continuing", sched.name)
                    finally:
                        worker.current = None
                        sched.busy = sched.started = False
                    if self._loop is None:
                        return  # the scheduler stopped (this probe swallowed the cancellation)
                    if sched.early_pending:
                        sched.early_pending = False
                        self._push(sched, loop.time())
                        self._arm(loop.time())
                if self._loop is None:
                    return
                worker.wake = loop.create_future()
                self._idle.append(worker)
                await worker.wake
        finally:
            self._workers.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)

    # -- the supervising task ----------------------------------------------------------------------
    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._context = contextvars.copy_context()
        self._failed = failed = loop.create_future()
        enabled = [s for s in self._schedules.values() if s.config.enabled]
        # Probes due within a tick of each other start together, up to a tick early: 5 % of the
        # shortest interval, within the ±10 % jitter every start has anyway.
        self._tick = min(0.05, min(s.config.interval for s in enabled) / 20)
        now = loop.time()
        for sched in enabled:
            # Spread over the first interval: a thousand stores do not all probe at once.
            self._push(sched, now + sched.config.interval * random.random())
        if self._heap:
            self._arm(self._heap[0][0])
        try:
            await failed  # scheduling happens in callbacks; this task only supervises them
        finally:
            self._loop = None
            self._failed = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = math.inf
            tasks = [w.task for w in self._workers if w.task is not None]
            for task in tasks:
                task.cancel()
            if tasks:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(tasks)
            # Every worker is done now, including any cancelled before its first step (whose
            # own clean-up never ran): none of them may count against the next start.
            self._workers.clear()
            self._idle.clear()
            self._ready.clear()
            self._waking = 0
            for sched in self._schedules.values():
                sched.busy = sched.started = False
                sched.early_pending = False
