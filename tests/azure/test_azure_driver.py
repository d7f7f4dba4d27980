"""The azure driver on Azurite: staged block uploads and what a failed or cancelled put leaves
behind, create-only atomicity, metadata encoding, reads pinned to one version, listing pages,
the three ways to authenticate, secrets, options and probes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from aiostore import (
    BadStoreConfiguration,
    Capability,
    ChecksumMismatch,
    Duplicate,
    NotFound,
    Store,
    StoreAddDisabled,
    StoreManager,
)
from aiostore.drivers.azure import _session
from tests.support.cloudstores import (
    assert_missing_extra_is_named,
    blob,
    cancel_stalled_put,
    list_in_pages,
    pieces,
)

from .conftest import ACCOUNT, BLOCK, KEY, Azurite, ConfigFactory, blobs
from .lossy import LossyProxy


def committed(admin: BlobServiceClient, container: str, name: str) -> int:
    committed, _ = admin.get_blob_client(container, name).get_block_list("committed")
    return len(committed)


async def test_large_put_is_staged_and_committed_once(
    store: Store, admin: BlobServiceClient, container: str
) -> None:
    """An object of 5 blocks and a bit is staged as 6 blocks and committed by one block list."""
    data = blob(5 * BLOCK + 7)
    await store.put("big", pieces(data), size=len(data))
    assert await store.read("big") == data
    assert committed(admin, container, "big") == 6
    small = blob(BLOCK)
    await store.put("small", small)  # one block's worth: one Put Blob, no block list
    assert committed(admin, container, "small") == 0
    assert await store.read("small") == small


async def test_failed_staged_put_commits_nothing(
    store: Store, admin: BlobServiceClient, container: str
) -> None:
    """The input breaks after three staged blocks: nothing visible, the old object intact."""

    class Boom(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield blob(BLOCK)
        raise Boom

    with pytest.raises(Boom):
        await store.put("k", broken())
    assert not await store.exists("k")
    assert blobs(admin, container) == []
    await store.put("k", b"original")
    with pytest.raises(Boom):
        await store.put("k", broken(), overwrite=True)
    assert await store.read("k") == b"original"


@pytest.mark.parametrize("cancels", [1, 2, 3, "timeout"])
async def test_cancelled_staged_put_commits_nothing(
    store: Store, admin: BlobServiceClient, container: str, cancels: int | str
) -> None:
    """Cancelled (once, twice, three times, or by a timeout) while blocks are staged: the call
    ends promptly, nothing becomes visible then or later, no task is left behind."""
    before = len(asyncio.all_tasks())
    await cancel_stalled_put(store, "k", BLOCK, cancels, settle=0.2)
    await asyncio.sleep(0.3)
    assert not await store.exists("k")
    assert blobs(admin, container) == []
    assert len(asyncio.all_tasks()) <= before
    # Only uncommitted blocks remain (for the service to discard); the name is still free.
    await store.put("k", b"after")
    assert await store.read("k") == b"after"


async def test_create_only_puts_are_atomic(store: Store) -> None:
    """Staged and single create-only puts find an existing object (Duplicate, object intact);
    racing staged create-only puts have one winner."""
    data = blob(3 * BLOCK)
    await store.put("k", data)
    with pytest.raises(Duplicate):
        await store.put("k", pieces(blob(3 * BLOCK, 1)))
    with pytest.raises(Duplicate):
        await store.put("k", b"small")
    assert await store.read("k") == data
    payloads = [blob(2 * BLOCK + i, i) for i in range(4)]
    results = await asyncio.gather(
        *(store.put("race", pieces(p)) for p in payloads), return_exceptions=True
    )
    winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Duplicate) for i, r in enumerate(results) if i not in winners)
    assert await store.read("race") == payloads[winners[0]]


async def test_metadata_is_one_base64_json_value(
    store: Store, admin: BlobServiceClient, container: str
) -> None:
    """Nested, non-ASCII metadata is stored as one header-safe value and read back whole, by
    stat, by open's info, and for staged puts too."""
    metadata = {"name": "Zoë ✓", "tags": ["a", "b c"], "deep": {"k": [{"x": "y"}]}}
    for key, data in (("one", b"x"), ("staged", blob(2 * BLOCK + 1))):
        await store.put(key, data, metadata=metadata)
        raw = admin.get_blob_client(container, key).get_blob_properties().metadata
        assert set(raw) == {"aiostore", "aiostoreput"}
        assert json.loads(base64.b64decode(raw["aiostore"])) == metadata
        assert dict((await store.stat(key)).metadata) == metadata
        async with store.open(key, offset=1) as reader:
            assert reader.info is not None and dict(reader.info.metadata) == metadata


async def test_reader_info_comes_from_the_download(
    store: Store, admin: BlobServiceClient, container: str
) -> None:
    """``info`` describes the version read: the full size (also for a range), its ETag."""
    data = blob(10_000)
    await store.put("k", data)
    etag = admin.get_blob_client(container, "k").get_blob_properties().etag
    async with store.open("k", offset=100, length=50) as reader:
        assert reader.size == 50
        assert reader.info is not None
        assert reader.info.size == len(data) and reader.info.etag == etag
        assert await reader.read() == data[100:150]


async def test_read_of_several_ranges_is_pinned_to_one_version(
    store: Store, admin: BlobServiceClient, container: str
) -> None:
    """A read spanning three 4 MiB ranges returns exact bytes; when the blob is replaced after
    the first range, the next range fails (If-Match) instead of mixing versions."""
    data = os.urandom(2 * _session.READ_CHUNK + 1000)
    await store.put("k", data)
    assert await store.read("k") == data
    async with store.open("k") as reader:
        first = await reader.__anext__()
        assert first == data[: len(first)] and len(first) < len(data)
        admin.get_blob_client(container, "k").upload_blob(b"replaced", overwrite=True)
        with pytest.raises(ChecksumMismatch):
            async for _ in reader:
                pass


async def test_list_follows_pages(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing pages of 3 names: every object under the prefix, in key order, nothing else."""
    await list_in_pages(store, _session, monkeypatch)


async def test_connection_string_and_sas_token(
    azurite: Azurite, container: str, admin: BlobServiceClient
) -> None:
    """Both other ways to authenticate work; none of the secrets shows in a repr, the snapshot
    or an error."""
    sas = generate_container_sas(
        ACCOUNT,
        container,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    stores = {
        "by-string": {
            "driver": "azure",
            "connection_string": azurite.connection_string(),
            "container": container,
        },
        "by-sas": {
            "driver": "azure",
            "account_url": azurite.url,
            "sas_token": "?" + sas,
            "container": container,
        },
    }
    async with StoreManager({"stores": stores}) as manager:
        for name in stores:
            store = manager[name]
            await store.put(f"{name}/k", name.encode(), metadata={"by": name})
            assert await store.read(f"{name}/k") == name.encode()
            assert dict((await store.stat(f"{name}/k")).metadata) == {"by": name}
            with pytest.raises(NotFound) as info:
                await store.read(f"{name}/missing")
            shown = " ".join([repr(store), str(manager.snapshot()), str(info.value)])
            assert KEY not in shown and signature not in shown and sas not in shown
            assert store.health.healthy, store.health


async def test_secrets_stay_out_of_logs_and_errors(
    azure_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """With the SDK's loggers at DEBUG no record holds the key, and the filter scrubs what
    would; a wrong key is reported (probe, then refused put) without showing it."""
    wrong = base64.b64encode(b"not the right key, but long enough").decode()
    caplog.set_level(logging.DEBUG)
    async with StoreManager(azure_config(account_key=wrong)) as manager:
        store = manager["azure"]
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info(
            "header x-test: %s", wrong
        )
        assert "403" in str(store.health) and wrong not in str(store.health)
        with pytest.raises(StoreAddDisabled) as info:
            await store.put("k", b"x")
        assert "403" in str(info.value) and wrong not in str(info.value)
        assert wrong not in repr(store) and wrong not in str(manager.snapshot())
    assert "header x-test: ***" in caplog.text
    assert wrong not in caplog.text


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        ({"sas_token": "sv=1&sig=abcdefgh"}, "sas_token", "give one of"),
        ({"container": "Bad_Name"}, "container", "lowercase letters"),
        ({"account_name": None, "account_key": KEY}, "account_key", "needs account_name"),
        ({"block_size": 0}, "block_size", "between 1 and"),
        ({"max_attempts": 0}, "max_attempts", "≥ 1"),
    ],
)
def test_bad_options(
    azure_config: ConfigFactory, options: dict[str, object], option: str, message: str
) -> None:
    """Each mistake names the store and the option, and never shows a secret."""
    config = azure_config()
    table = config["stores"]["azure"]
    for name, value in options.items():
        if value is None:
            table.pop(name, None)
        else:
            table[name] = value
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager(config)
    assert info.value.option == option and info.value.store == "azure"
    assert message in str(info.value) and KEY not in str(info.value)


async def test_read_only_store_never_writes_and_missing_container(
    azure_config: ConfigFactory, admin: BlobServiceClient, container: str
) -> None:
    """A read-only store's probes write nothing; a missing container is reported by the probe
    (READ_ACCESS revoked) and created at start with ``create_container``."""
    async with StoreManager(azure_config(read_only=True)) as manager:
        for _ in range(3):
            assert (await manager["azure"].probe()).healthy
    assert blobs(admin, container, uncommitted=True) == []
    async with StoreManager(azure_config(container="t-never-created")) as manager:
        store = manager["azure"]
        assert Capability.READ_ACCESS not in store.capabilities
        assert "container does not exist" in str(store.health)
    async with StoreManager(
        azure_config(container="t-created-at-start", create_container=True)
    ) as m:
        try:
            assert m["azure"].health.healthy
            await m["azure"].put("k", b"v")
        finally:
            admin.delete_container("t-created-at-start")


def test_missing_extra_names_it(
    azure_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its backend library the store fails to build, naming the extra to install."""
    assert_missing_extra_is_named(azure_config(), "azure.storage.blob", "azure", monkeypatch)


async def test_a_retried_create_only_put_recognises_its_own_lost_success(
    azure_config: ConfigFactory, azurite: Azurite
) -> None:
    """Azure stores a create-only put but its answer is lost (503): the retry meets 409, finds
    its own put token on the blob and succeeds (Put Blob and block-list commit alike); another
    put's blob still makes a put Duplicate."""
    async with LossyProxy(azurite.url.rsplit("/", 1)[0]) as proxy:
        config = azure_config(account_url=f"{proxy.url}/{ACCOUNT}")
        async with StoreManager(config) as manager:
            store = manager["azure"]
            for key, data in (("single", b"one request"), ("staged", blob(2 * BLOCK + 3))):
                proxy.lose_puts = 1
                await store.put(key, pieces(data) if len(data) > BLOCK else data)
                assert proxy.lose_puts == 0
                assert await store.read(key) == data
            assert proxy.lost == 2
            with pytest.raises(Duplicate):
                await store.put("single", b"someone else's")
            assert await store.read("single") == b"one request"
