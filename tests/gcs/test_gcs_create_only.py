"""Create-only puts in both modes the probe can find: a server that ignores
``ifGenerationMatch=0`` (fake-gcs-server itself: the per-process fallback) and one that enforces
it (fake-gcs-server behind tests/gcs/preconditions.py: the server decides)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from urllib.parse import urlencode

import pytest

from aiostore import Capability, Duplicate, Store, StoreManager
from aiostore.drivers.gcs import GCSDriver
from tests.support.cloudstores import blob, pieces

from .conftest import CHUNK, Admin, ConfigFactory, FakeGCS, objects
from .preconditions import PreconditionProxy


def driver_of(manager: StoreManager) -> GCSDriver:
    driver = manager["gcs"].driver
    assert isinstance(driver, GCSDriver)
    return driver


async def write_verdict(manager: StoreManager) -> str:
    async with manager.session("gcs") as session:
        verdicts = await session.probe()
    verdict = verdicts[Capability.WRITE_ACCESS]
    assert verdict.healthy
    return verdict.reason


async def race(store: Store, key: str, payloads: list[bytes], streamed: bool) -> list[object]:
    return await asyncio.gather(
        *(store.put(key, pieces(p) if streamed else p) for p in payloads),
        return_exceptions=True,
    )


def one_winner(results: list[object]) -> int:
    winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Duplicate) for i, r in enumerate(results) if i != winners[0])
    return winners[0]


async def test_the_emulator_ignores_the_precondition(fake_gcs: FakeGCS, bucket: str) -> None:
    """The premise: fake-gcs-server overwrites on an upload sent with ifGenerationMatch=0."""
    url = f"{fake_gcs.url}/upload/storage/v1/b/{bucket}/o?"

    def premise() -> bytes:
        for data in (b"first", b"second"):
            query = urlencode({"uploadType": "media", "name": "k", "ifGenerationMatch": "0"})
            request = urllib.request.Request(url + query, data=data)
            with urllib.request.urlopen(request, timeout=10):
                pass
        get = f"{fake_gcs.url}/storage/v1/b/{bucket}/o/k?alt=media"
        with urllib.request.urlopen(get, timeout=10) as resp:
            return bytes(resp.read())

    assert await asyncio.to_thread(premise) == b"second"


async def test_fallback_where_the_server_ignores_it(
    gcs_config: ConfigFactory, admin: Admin, bucket: str
) -> None:
    """The probe finds out and says so; create-only puts (single and resumable) still have
    exactly one winner among racing puts of this process and find existing objects."""
    async with StoreManager(gcs_config()) as manager:
        store = manager["gcs"]
        driver = driver_of(manager)
        assert driver.enforces_create_only is False
        assert "ignores ifGenerationMatch=0" in await write_verdict(manager)
        assert "per-process guard" in driver.create_only
        for streamed, size in ((False, 10_000), (True, 3 * CHUNK + 5)):
            key = f"race-{streamed}"
            payloads = [blob(size + i, i) for i in range(6)]
            winner = one_winner(await race(store, key, payloads, streamed))
            assert await store.read(key) == payloads[winner]
            with pytest.raises(Duplicate):
                await store.put(key, pieces(blob(size)) if streamed else b"again")
            assert await store.read(key) == payloads[winner]
        assert driver.guard.held() == 0
    assert objects(admin, bucket) == ["race-False", "race-True"]


async def test_the_server_decides_where_it_enforces_it(
    fake_gcs: FakeGCS, gcs_config: ConfigFactory
) -> None:
    """Behind a proxy that enforces ifGenerationMatch=0 the probe finds that out; create-only
    puts then leave the decision to the server: no look before the write, the server's 412
    becomes Duplicate, racing single and resumable puts have one winner."""
    async with (
        PreconditionProxy(fake_gcs.url) as proxy,
        StoreManager(gcs_config(endpoint_url=proxy.url)) as manager,
    ):
        store = manager["gcs"]
        driver = driver_of(manager)
        assert driver.enforces_create_only is True
        assert "enforces ifGenerationMatch=0" in await write_verdict(manager)
        looks = proxy.seen["GET object"]
        await store.put("k", b"first")
        assert proxy.seen["GET object"] == looks  # no look before the write
        refused = proxy.refused
        with pytest.raises(Duplicate):
            await store.put("k", b"second")
        assert proxy.refused == refused + 1
        with pytest.raises(Duplicate):
            await store.put("k", pieces(blob(3 * CHUNK)))
        assert proxy.refused == refused + 2
        assert await store.read("k") == b"first"
        for streamed, size in ((False, 10_000), (True, 2 * CHUNK + 5)):
            key = f"race-{streamed}"
            payloads = [blob(size + i, i) for i in range(6)]
            winner = one_winner(await race(store, key, payloads, streamed))
            assert await store.read(key) == payloads[winner]
        assert driver.guard.held() == 0


async def test_unknown_until_a_probe_writes(gcs_config: ConfigFactory) -> None:
    """Without probe writes the mode stays unknown: the safe fallback is used, and the probe
    verdict says why."""
    async with StoreManager(gcs_config(probe_write=False)) as manager:
        store = manager["gcs"]
        assert driver_of(manager).enforces_create_only is None
        assert "not known" in await write_verdict(manager)
        await store.put("k", b"v")
        with pytest.raises(Duplicate):
            await store.put("k", b"w")
        assert json.loads(json.dumps(manager.snapshot()))  # JSON-ready


async def test_a_retried_create_only_put_recognises_its_own_lost_success(
    fake_gcs: FakeGCS, gcs_config: ConfigFactory
) -> None:
    """The server stores a create-only upload but its answer is lost (503): the retry meets
    412, finds its own put token on the object and succeeds; another put's object still makes
    a retried put Duplicate."""
    async with (
        PreconditionProxy(fake_gcs.url) as proxy,
        StoreManager(gcs_config(endpoint_url=proxy.url)) as manager,
    ):
        store = manager["gcs"]
        assert driver_of(manager).enforces_create_only is True
        for key, data in (("single", b"one request"), ("resumable", blob(2 * CHUNK + 3))):
            proxy.lose_uploads = 1
            refused = proxy.refused
            await store.put(key, pieces(data) if len(data) > CHUNK else data)
            assert proxy.lose_uploads == 0 and proxy.refused == refused + 1
            assert await store.read(key) == data
        proxy.lose_uploads = 1
        with pytest.raises(Duplicate):
            await store.put("single", b"someone else's")
        assert await store.read("single") == b"one request"
