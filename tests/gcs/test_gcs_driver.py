"""The gcs driver on fake-gcs-server: resumable uploads and what a failed or cancelled put leaves
behind (the upload session is cancelled), metadata encoding, reads pinned to one generation and
their resumption, listing pages, options and probes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator

import pytest

from aiostore import BadStoreConfiguration, ChecksumMismatch, Store, StoreManager
from aiostore.drivers.gcs import _session
from tests.support.cloudstores import (
    assert_missing_extra_is_named,
    blob,
    cancel_stalled_put,
    list_in_pages,
    pieces,
    read_across_a_reset,
)
from tests.support.faultproxy import Fault, FaultProxy

from .conftest import CHUNK, Admin, ConfigFactory, FakeGCS, objects
from .preconditions import PreconditionProxy


@pytest.fixture
async def recorded(
    fake_gcs: FakeGCS, gcs_config: ConfigFactory
) -> AsyncIterator[tuple[Store, PreconditionProxy]]:
    """A store whose requests pass through a recording proxy (it also enforces the
    precondition, which these tests do not depend on)."""
    async with (
        PreconditionProxy(fake_gcs.url) as proxy,
        StoreManager(gcs_config(endpoint_url=proxy.url)) as manager,
    ):
        yield manager["gcs"], proxy


async def test_resumable_put_and_metadata(store: Store, admin: Admin, bucket: str) -> None:
    """A streamed object of 3 chunks and a bit is uploaded whole; nested metadata is one
    custom metadata value, read back by stat and by open's info."""
    data = blob(3 * CHUNK + 5)
    metadata = {"name": "Zoë ✓", "deep": {"k": ["v", {"x": "y"}]}}
    await store.put("big", pieces(data), size=len(data), metadata=metadata)
    assert await store.read("big") == data
    resource = admin.resource(bucket, "big")
    assert set(resource["metadata"]) == {"aiostore", "aiostore-put"}
    assert json.loads(base64.b64decode(resource["metadata"]["aiostore"])) == metadata
    assert dict((await store.stat("big")).metadata) == metadata
    async with store.open("big", offset=CHUNK, length=10) as reader:
        assert reader.size == 10
        assert reader.info is not None
        assert reader.info.size == len(data)
        assert reader.info.etag == str(resource["generation"])
        assert dict(reader.info.metadata) == metadata
        assert await reader.read() == data[CHUNK : CHUNK + 10]


async def test_failed_resumable_put_cancels_the_upload(
    recorded: tuple[Store, PreconditionProxy], admin: Admin, bucket: str
) -> None:
    """The input breaks after two chunks: the upload session is cancelled (DELETE), nothing is
    visible, the old object is intact."""
    store, proxy = recorded

    class Boom(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield blob(CHUNK)
        yield blob(CHUNK)
        yield blob(CHUNK)
        raise Boom

    with pytest.raises(Boom):
        await store.put("k", broken())
    assert proxy.seen["DELETE upload"] == 1
    assert objects(admin, bucket) == []
    await store.put("k", b"original")
    with pytest.raises(Boom):
        await store.put("k", broken(), overwrite=True)
    assert proxy.seen["DELETE upload"] == 2
    assert await store.read("k") == b"original"


@pytest.mark.parametrize("cancels", [1, 2, 3, "timeout"])
async def test_cancelled_resumable_put_commits_nothing(
    recorded: tuple[Store, PreconditionProxy], admin: Admin, bucket: str, cancels: int | str
) -> None:
    """Cancelled (once, twice, three times, by a timeout) while chunks are going up: the call
    ends promptly, the upload session is cancelled, nothing becomes visible then or later, no
    task is left behind."""
    store, proxy = recorded
    before = len(asyncio.all_tasks())
    await cancel_stalled_put(store, "k", CHUNK, cancels, settle=0.1)
    assert proxy.seen["DELETE upload"] == 1
    await asyncio.sleep(0.3)
    assert objects(admin, bucket) == []
    assert len(asyncio.all_tasks()) <= before
    await store.put("k", b"after")
    assert await store.read("k") == b"after"


async def test_reads_resume_on_the_same_generation(
    gcs_config: ConfigFactory, fake_gcs: FakeGCS, admin: Admin, bucket: str
) -> None:
    """A connection reset mid-body resumes from where it broke (exact bytes); when the object
    was replaced in between, the resumed request finds no such generation: ChecksumMismatch
    instead of mixed versions."""
    data = os.urandom(4 << 20)
    async with (
        FaultProxy(fake_gcs.host, fake_gcs.port) as proxy,
        StoreManager(gcs_config(endpoint_url=proxy.url)) as manager,
    ):
        store = manager["gcs"]
        await store.put("k", data)

        def reset() -> None:
            (conn,) = [
                c for c in proxy.connections if not c.closed and b"alt=media" in c.last_request
            ]
            conn.mode = Fault("reset")

        assert await read_across_a_reset(store, "k", reset) == data
        assert proxy.requests >= 3  # resource, media, resumed media

        def replace_then_reset() -> None:
            admin.upload(bucket, "k", b"replaced")
            reset()

        with pytest.raises(ChecksumMismatch):
            await read_across_a_reset(store, "k", replace_then_reset)


async def test_list_follows_pages(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 3 names: every object under the prefix, in key order, nothing else."""
    await list_in_pages(store, _session, monkeypatch)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunk_size": 1000}, "multiple of 256 KiB"),
        ({"bucket": "a/b"}, "bucket name"),
        ({"endpoint_url": "ftp://x"}, "http:// or https://"),
        ({"max_attempts": 0}, "≥ 1"),
    ],
)
def test_bad_options(gcs_config: ConfigFactory, options: dict[str, object], message: str) -> None:
    """Each mistake names the store and the option."""
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager(gcs_config(**options))
    assert info.value.option == next(iter(options)) and info.value.store == "gcs"
    assert message in str(info.value)


async def test_read_only_store_never_writes_and_create_bucket(
    gcs_config: ConfigFactory, admin: Admin, bucket: str
) -> None:
    """A read-only store's probes write nothing; a missing bucket is reported by the probe and
    created at start with ``create_bucket``."""
    async with StoreManager(gcs_config(read_only=True)) as manager:
        for _ in range(3):
            assert (await manager["gcs"].probe()).healthy
    assert objects(admin, bucket) == []
    async with StoreManager(gcs_config(bucket="t-never-created")) as manager:
        assert not manager["gcs"].health.healthy
        assert "bucket does not exist" in str(manager["gcs"].health)
    async with StoreManager(gcs_config(bucket="t-created-at-start", create_bucket=True)) as m:
        try:
            assert m["gcs"].health.healthy, m["gcs"].health
            await m["gcs"].put("k", b"v")
            assert await m["gcs"].read("k") == b"v"
        finally:
            admin.request("DELETE", "/b/t-created-at-start/o/k")
            admin.request("DELETE", "/b/t-created-at-start")


def test_missing_extra_names_it(gcs_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its backend library the store fails to build, naming the extra to install."""
    assert_missing_extra_is_named(gcs_config(), "gcloud.aio.storage", "gcs", monkeypatch)
