"""What the tests of the drivers on emulated cloud object stores share (azure on Azurite, gcs on
fake-gcs-server): the emulator process, store configurations, test data, a forwarding HTTP
proxy that tests extend (to lose answers, to enforce a precondition), and the network-fault
tests both drivers run (:class:`FaultTests`, through tests/support/faultproxy.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Final, Self

import aiohttp
import pytest
from aiohttp import web

from aiostore import (
    BackendUnavailable,
    BadStoreConfiguration,
    Capability,
    OperationTimeout,
    Store,
    StoreAddDisabled,
    StoreManager,
)
from aiostore.testing import wait_for_capability

from .faultproxy import FaultProxy
from .net import free_port

__all__ = [
    "FAST_PROBE",
    "MANUAL_PROBE",
    "QUIET_PROBE",
    "SMALL",
    "ConfigFactory",
    "FaultTests",
    "ForwardingProxy",
    "assert_missing_extra_is_named",
    "blob",
    "cancel_stalled_put",
    "config_factory",
    "conformance_config",
    "emulator",
    "installed",
    "list_in_pages",
    "pieces",
    "read_across_a_reset",
]

KiB = 1 << 10
SMALL = os.urandom(4096)
#: Probes run only when a test asks (the start-up probe still runs).
QUIET_PROBE: Final = {"interval": 3600.0, "timeout": 5.0}
#: Probes only when a test calls ``store.probe()``; verdicts act at once.
MANUAL_PROBE: Final = {
    "enabled": False,
    "timeout": 5.0,
    "failures_to_revoke": 1,
    "successes_to_restore": 1,
}
#: Fast probes with the default hysteresis (2 failures to revoke, 2 successes to restore).
FAST_PROBE: Final = {
    "interval": 0.2,
    "timeout": 2.0,
    "failures_to_revoke": 2,
    "successes_to_restore": 2,
}

#: ``make(probe=None, **options)`` → a manager configuration.
ConfigFactory = Callable[..., dict[str, Any]]


def config_factory(name: str, store: Mapping[str, Any]) -> ConfigFactory:
    """``make(**options)``: a manager configuration with one store called ``name`` (``store``
    updated with ``options``); ``probe=`` replaces the probe settings (QUIET_PROBE)."""

    def make(*, probe: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        return {"probe": probe or dict(QUIET_PROBE), "stores": {name: {**store, **options}}}

    return make


def conformance_config(config: dict[str, Any]) -> dict[str, Any]:
    """The one store of a manager configuration made by a :data:`ConfigFactory`, as the
    conformance suite's ``store_config`` (probing every 5 s)."""
    ((store,),) = [config["stores"].values()]
    return {**store, "probe": {"interval": 5.0, "timeout": 5.0}}


# -- the emulator process ------------------------------------------------------------------------


def _wait_listening(name: str, port: int, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"{name} exited with {proc.returncode}: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {seconds} s")


@contextlib.contextmanager
def emulator(name: str, argv: Callable[[int], list[str]], seconds: float = 30.0) -> Iterator[int]:
    """Run ``argv(port)`` for a free loopback port until it listens there; yield the port; stop
    the process (terminate, then kill) when the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        argv(port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_listening(name, port, proc, seconds)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def installed(command: str, hint: str) -> str:
    """The path of ``command``, or skip the test saying how to install it."""
    exe = shutil.which(command)
    if exe is None:
        pytest.skip(f"{command} is not installed ({hint})")
    return exe


# -- test data and common checks ----------------------------------------------------------------


def blob(size: int, salt: int = 0) -> bytes:
    """``size`` bytes of a pattern that differs with ``salt``."""
    return bytes((i * 7 + salt) % 251 for i in range(size))


async def pieces(data: bytes, step: int = 64 * KiB) -> AsyncIterator[bytes]:
    """``data`` as a stream of ``step``-byte pieces."""
    for i in range(0, len(data), step):
        await asyncio.sleep(0)
        yield data[i : i + step]


async def cancel_stalled_put(
    store: Store, key: str, chunk: int, cancels: int | str, settle: float
) -> None:
    """Put ``key`` from a stream that yields three ``chunk``-byte pieces and then stalls; once
    it asks for more and ``settle`` seconds have passed, cancel the put ``cancels`` times (or,
    with ``"timeout"``, let a 1 s timeout end it). The put must end by that cancellation."""
    asked_for_more = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield blob(chunk)
        asked_for_more.set()
        await asyncio.sleep(3600)
        yield b"never"

    if cancels == "timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await store.put(key, stalling())
        return
    task = asyncio.create_task(store.put(key, stalling()))
    await asyncio.wait_for(asked_for_more.wait(), 10)
    await asyncio.sleep(settle)  # let the requests of the chunks run
    assert isinstance(cancels, int)
    for _ in range(cancels):
        task.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task


async def read_across_a_reset(store: Store, key: str, between: Callable[[], object]) -> bytes:
    """Read ``key`` whole, calling ``between()`` (break the connection, replace the object…)
    once the first chunk has arrived."""
    got = bytearray()
    async with store.open(key) as reader:
        got += await reader.__anext__()
        between()
        async for chunk in reader:
            got += chunk
    return bytes(got)


async def list_in_pages(store: Store, session: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """With listing pages of 3 names (``session.LIST_PAGE``), a listing yields every object
    under the prefix, in key order, nothing else."""
    monkeypatch.setattr(session, "LIST_PAGE", 3)
    keys = [f"p/{i:02d}" for i in range(8)]
    for key in keys:
        await store.put(key, key.encode())
    await store.put("q/other", b"x")
    assert [(i.key, i.size) async for i in store.list("p/")] == [(k, 4) for k in keys]


def assert_missing_extra_is_named(
    config: dict[str, Any], library: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``library`` the store fails to build, naming the extra to install."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == library else real(name, *a),
    )
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager(config)
    assert f"pip install 'aiostore[{extra}]'" in str(info.value)


# -- a forwarding proxy to extend ----------------------------------------------------------------

_HOP: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)


class ForwardingProxy:
    """``async with Proxy(upstream) as proxy:`` — a real HTTP proxy on 127.0.0.1 (``proxy.url``)
    that forwards every request as it was signed (no header of aiohttp's own) and points
    ``Location`` headers back at itself. Subclasses override :meth:`handle`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._http = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        return await self.handle(request, await request.read())

    async def handle(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Answer ``request`` (whose body is ``body``); by default forward it."""
        return await self.forward(request, body)

    async def forward(self, request: web.Request, body: bytes) -> web.Response:
        """The upstream's answer to ``request``."""
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._http.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent", "Accept"),
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
        if "Location" in out:
            out["Location"] = out["Location"].replace(self.upstream, self.url)
        return web.Response(status=resp.status, body=data, headers=out)


# -- the network-fault tests both drivers run ----------------------------------------------------


class FaultTests:
    """Network faults between a driver and its emulator through a :class:`FaultProxy`: 503s,
    resets, a black hole, latency, and recovery.

    Subclass it in a test module (``class TestAzureFaults(FaultTests)``), with a ``proxy``
    fixture (a FaultProxy in front of the emulator) and a ``<name>_config`` fixture (a
    :data:`ConfigFactory`) in reach; set :attr:`name` and implement :meth:`proxied` and
    :meth:`names`.
    """

    #: The store's name (and its driver's).
    name: ClassVar[str]
    #: Options of the puts whose final request a cancellation catches on the wire.
    put_options: ClassVar[dict[str, Any]] = {}
    #: When a put of four chunks on a 0.5 s-latency wire has a chunk in flight; how soon a
    #: cancellation then returns.
    in_flight_after: ClassVar[float] = 0.2
    cancel_returns_within: ClassVar[float] = 0.3

    def proxied(self, proxy: FaultProxy) -> dict[str, Any]:
        """The options that point the store at ``proxy``."""
        raise NotImplementedError

    def names(self, request: pytest.FixtureRequest) -> list[str]:
        """The names of the objects in the test's container or bucket, as the emulator lists
        them."""
        raise NotImplementedError

    @pytest.fixture
    def via_proxy(self, request: pytest.FixtureRequest, proxy: FaultProxy) -> ConfigFactory:
        config: ConfigFactory = request.getfixturevalue(f"{self.name}_config")

        def make(**options: Any) -> dict[str, Any]:
            options.setdefault("probe", dict(MANUAL_PROBE))
            return config(
                **self.proxied(proxy),
                max_attempts=3,
                read_timeout=0.5,
                connect_timeout=1.0,
                **options,
            )

        return make

    @pytest.fixture
    async def faulty(self, via_proxy: ConfigFactory) -> AsyncIterator[Store]:
        async with StoreManager(via_proxy()) as manager:
            store = manager[self.name]
            await store.put("small", SMALL)
            yield store

    async def test_503_is_retried_within_one_budget(self, faulty: Store, proxy: FaultProxy) -> None:
        """Two 503s, then success: the put and the read succeed, nothing revoked. Persistent
        503s: exactly max_attempts requests, then BackendUnavailable that revokes
        WRITE_ACCESS."""
        proxy.set_mode("503", requests=2)
        await faulty.put("k", SMALL)
        assert proxy.counts["503"] == 2
        proxy.set_mode("503", requests=2)
        assert await faulty.read("k") == SMALL
        assert faulty.health.healthy
        proxy.set_mode("503")
        before = proxy.counts["503"]
        with pytest.raises(BackendUnavailable) as info:
            await faulty.put("other", SMALL)
        assert proxy.counts["503"] - before == 3
        assert "503" in str(info.value)
        assert Capability.WRITE_ACCESS not in faulty.capabilities
        with pytest.raises(StoreAddDisabled):
            await faulty.put("other", SMALL)
        proxy.pass_through()
        assert (await faulty.probe()).healthy
        await faulty.put("other", SMALL)

    async def test_reset_revokes_within_the_probe_settings_and_pass_restores(
        self, via_proxy: ConfigFactory, proxy: FaultProxy
    ) -> None:
        """Every connection reset: the probes (every 0.2 s, 2 failures) revoke read and write
        access within a few seconds; a put then fails at once with StoreAddDisabled; once
        traffic passes again two good probes restore everything."""
        async with StoreManager(via_proxy(probe=dict(FAST_PROBE))) as manager:
            store = manager[self.name]
            await store.put("k", SMALL)
            proxy.set_mode("reset")
            started = time.monotonic()
            await wait_for_capability(store, Capability.READ_ACCESS, present=False, timeout=10)
            await wait_for_capability(store, Capability.WRITE_ACCESS, present=False, timeout=10)
            assert time.monotonic() - started < 10
            started = time.monotonic()
            with pytest.raises(StoreAddDisabled) as info:
                await store.put("during", SMALL)
            assert time.monotonic() - started < 0.5
            assert info.value.transient
            proxy.pass_through()
            await wait_for_capability(
                store, Capability.RW_ACCESS | Capability.READ_RANDOM, timeout=10
            )
            assert store.health.healthy
            await store.put("after", SMALL)
            assert await store.read("k") == SMALL

    async def test_put_during_an_outage_fails_fast_and_typed(
        self, faulty: Store, proxy: FaultProxy
    ) -> None:
        """Before any probe noticed: a put against resets fails within its retries with
        BackendUnavailable (WRITE_ACCESS revoked); a read likewise revokes READ_ACCESS."""
        proxy.set_mode("reset")
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await faulty.put("k", SMALL)
        assert time.monotonic() - started < 5
        assert Capability.WRITE_ACCESS not in faulty.capabilities
        with pytest.raises(BackendUnavailable):
            await faulty.read("small")
        assert Capability.READ_ACCESS not in faulty.capabilities
        proxy.pass_through()
        assert (await faulty.probe()).healthy
        assert await faulty.read("small") == SMALL

    async def test_black_hole_times_out(self, faulty: Store, proxy: FaultProxy) -> None:
        """No answer at all: OperationTimeout after read_timeout per attempt, READ_ACCESS
        revoked."""
        proxy.set_mode("blackhole")
        started = time.monotonic()
        with pytest.raises((OperationTimeout, BackendUnavailable)):
            await faulty.stat("small")
        assert time.monotonic() - started < 10
        assert Capability.READ_ACCESS not in faulty.capabilities
        proxy.pass_through()
        assert (await faulty.probe()).healthy

    async def test_timeout_while_the_final_request_is_held(
        self, faulty: Store, proxy: FaultProxy
    ) -> None:
        """A put whose input is being consumed when the timeout fires commits nothing. Once its
        final request is on the wire, a cancellation waits for the answer: the object is then
        stored whole, never later and never torn."""

        async def slow() -> AsyncIterator[bytes]:
            yield SMALL
            await asyncio.sleep(3600)
            yield SMALL

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await faulty.put("slow", slow())
        proxy.set_mode("latency", seconds=0.4)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await faulty.put("held", SMALL, **self.put_options)
        assert time.monotonic() - started >= 0.3  # waited for the commit's answer
        proxy.pass_through()
        assert await faulty.read("held") == SMALL
        assert not await faulty.exists("slow")

    async def test_degraded_latency_revokes_read_random(
        self, via_proxy: ConfigFactory, proxy: FaultProxy
    ) -> None:
        """A probe slower than degraded_latency revokes READ_RANDOM only."""
        async with StoreManager(via_proxy(degraded_latency=0.2)) as manager:
            store = manager[self.name]
            proxy.set_mode("latency", seconds=0.1)
            report = await store.probe()
            assert Capability.READ_RANDOM not in store.capabilities, report
            assert Capability.RW_ACCESS in store.capabilities
            assert "degraded" in str(report)
            proxy.pass_through()
            assert (await store.probe()).healthy

    @pytest.mark.parametrize("cancels", [1, 3])
    async def test_cancel_while_a_chunk_is_in_flight(
        self, faulty: Store, proxy: FaultProxy, request: pytest.FixtureRequest, cancels: int
    ) -> None:
        """Cancelled while a chunk of a put is on a slow wire: the put returns promptly (the
        chunk's request is abandoned, not awaited; only a bounded clean-up is), and nothing is
        visible then or later."""
        data = os.urandom(1 << 20)
        proxy.set_mode("latency", seconds=0.5)
        task = asyncio.create_task(faulty.put("slow", data, **self.put_options))
        await asyncio.sleep(self.in_flight_after)
        started = time.monotonic()
        for _ in range(cancels):
            task.cancel()
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < self.cancel_returns_within
        proxy.pass_through()
        await asyncio.sleep(1.0)  # any request still held by the proxy has gone through by now
        assert "slow" not in self.names(request)
        assert not await faulty.exists("slow")
