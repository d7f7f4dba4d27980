"""Sessions (one client per event loop), configuration, secrets and error translation."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import botocore.exceptions
import pytest

from aiostore import (
    BackendUnavailable,
    BadStoreConfiguration,
    Capability,
    ChecksumMismatch,
    Duplicate,
    InvalidMetadata,
    NotFound,
    OperationTimeout,
    StorageFull,
    StorageWriteDenied,
    StoreError,
    StoreManager,
)
from aiostore.drivers.s3 import S3Driver, S3Options, S3Session

from .conftest import ConfigFactory, all_objects

SECRET = "Sup3r-Secret-Value-0123456789abcdef"
TOKEN = "session-token-value-ABCDEFGHIJKLMNOP"


def test_two_event_loops_in_a_row(s3_config: ConfigFactory) -> None:
    """The same manager (and a new one with the same config) works in two ``asyncio.run``
    calls in a row: no client bound to the first, closed loop is reused."""
    config = s3_config()
    manager = StoreManager(config)

    async def use(m: StoreManager, value: bytes) -> dict[str, Any]:
        async with m:
            store = m["s3"]
            await store.put("k", value, overwrite=True)
            assert await store.read("k") == value
            assert await store.read("k", offset=1) == value[1:]
        return dict(store.statistics()["sessions"])

    first = asyncio.run(use(manager, b"first"))
    second = asyncio.run(use(manager, b"second"))
    third = asyncio.run(use(StoreManager(config), b"third"))
    assert first["open"] == second["open"] == third["open"] == 0
    assert second["opened"] == first["opened"] + 1  # a fresh client for the second loop


def test_session_is_broken_on_another_or_a_closed_loop(s3_config: ConfigFactory) -> None:
    """``is_broken`` is true from another running loop and once the session's loop is closed."""
    options = {k: v for k, v in s3_config()["stores"]["s3"].items() if k != "driver"}
    driver = S3Driver.from_config("s3", options)
    loop = asyncio.new_event_loop()
    session = loop.run_until_complete(driver.open_session())
    assert isinstance(session, S3Session)

    async def check() -> bool:
        return session.is_broken

    assert loop.run_until_complete(check()) is False
    assert asyncio.run(check()) is True
    loop.run_until_complete(session.aclose())
    assert loop.run_until_complete(check()) is True
    loop.close()
    assert session.is_broken


async def test_one_shared_session_per_loop(s3_config: ConfigFactory) -> None:
    """Fifty concurrent operations share one session, opened once."""
    async with StoreManager(s3_config()) as manager:
        store = manager["s3"]
        await store.put("k", b"v")
        results = await asyncio.gather(*(store.read("k") for _ in range(50)))
        assert results == [b"v"] * 50
        stats = store.statistics()["sessions"]
        assert stats["shared"] and stats["opened"] == 1 and stats["open"] == 1
    assert store.statistics()["sessions"]["open"] == 0


async def test_not_reusable_opens_a_client_per_use(s3_config: ConfigFactory) -> None:
    """With ``reusable = false`` each operation opens and closes its own client."""
    async with StoreManager(s3_config(reusable=False)) as manager:
        store = manager["s3"]
        assert Capability.DRIVER_REUSABLE not in store.capabilities
        opened = store.statistics()["sessions"]["opened"]
        await store.put("k", b"v")
        assert await store.read("k") == b"v"
        async with store.open("k") as reader:
            assert await reader.read() == b"v"
        stats = store.statistics()["sessions"]
        assert stats["opened"] - opened == 3 and stats["open"] == 0


async def test_create_bucket_at_start(s3_config: ConfigFactory, admin: Any) -> None:
    """``create_bucket`` creates a missing bucket at start-up (and tolerates an existing one)."""
    name = f"created-{uuid.uuid4().hex[:12]}"
    config = s3_config(bucket=name, create_bucket=True)
    for _ in range(2):
        async with StoreManager(config) as manager:
            store = manager["s3"]
            assert store.capabilities == store.configured_capabilities
            await store.put("k", b"v", overwrite=True)
    assert [o["Key"] for o in all_objects(admin, name)] == ["k"]
    admin.delete_object(Bucket=name, Key="k")
    admin.delete_bucket(Bucket=name)


async def test_secrets_never_show(
    s3_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials appear in no repr, snapshot, error message or log record."""
    caplog.set_level(logging.DEBUG)
    config = s3_config(access_key="AKIA-visible-id", secret_key=SECRET, session_token=TOKEN)
    async with StoreManager(config) as manager:
        store = manager["s3"]
        with pytest.raises(NotFound) as missing:
            await store.read("missing")
        session_repr = ""
        async with manager.session("s3") as session:
            assert isinstance(session, S3Session)
            session_repr = repr(session)
            mapped = session.fail(
                _client_error("SignatureDoesNotMatch", 403, f"bad signature for {SECRET}"),
                "PutObject",
                key="k",
                write=True,
            )
        texts = [
            repr(store.driver),
            repr(store.driver.options),
            str(store.driver.describe()),
            json.dumps(manager.snapshot()),
            str(missing.value),
            str(mapped),
            session_repr,
            "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("aiostore")),
        ]
        transport = store.driver.options.transport
    # botocore's own DEBUG records (signed headers) are filtered while the manager runs; the
    # lean transport's signer logs nothing.
    if transport == "botocore":
        assert "x-amz-security-token" in caplog.text.lower()
    texts.append(caplog.text)
    for text in texts:
        assert SECRET not in text and TOKEN not in text and "AKIA-visible-id" not in text, text
    assert isinstance(mapped, StorageWriteDenied) and "***" in str(mapped)
    with pytest.raises(BadStoreConfiguration) as bad:
        StoreManager(s3_config(secret_key=12345678))
    assert "12345678" not in str(bad.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"part_size": 1 << 20}, "part_size"),
        ({"multipart_threshold": -1}, "multipart_threshold"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"addressing_style": "sideways"}, "addressing_style"),
        ({"endpoint_url": "ftp://x"}, "endpoint_url"),
        ({"secret_key": None}, "access_key and secret_key"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"degraded_latency": -1.0}, "degraded_latency"),
        ({"bucket": ""}, "bucket"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options(s3_config: ConfigFactory, options: dict[str, Any], words: str) -> None:
    """Bad options raise BadStoreConfiguration naming the store and the option."""
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager(s3_config(**options))
    assert "'s3'" in str(info.value) and words in str(info.value)


def test_options_and_location() -> None:
    """Defaults, the prefix normalization and the location prefix."""
    driver = S3Driver("images", S3Options(bucket="b", prefix="photos/2024"))
    assert driver.location_prefix() == "s3://b/photos/2024/"
    assert driver.prefix == "photos/2024/"
    assert S3Driver("x", S3Options(bucket="b")).location_prefix() == "s3://b/"
    o = S3Options(bucket="b")
    assert (o.part_size, o.multipart_threshold, o.max_concurrency, o.max_attempts) == (
        8 << 20,
        8 << 20,
        4,
        3,
    )
    assert S3Driver.native_capabilities == (
        Capability.READ_RANDOM | Capability.WRITE_ACCESS | Capability.DRIVER_REUSABLE
    )


def _client_error(code: str, status: int, message: str = "m") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Op",
    )


R, W = Capability.READ_ACCESS, Capability.WRITE_ACCESS


@pytest.mark.parametrize(
    ("exc", "write", "kind", "revokes"),
    [
        (_client_error("NoSuchKey", 404), False, NotFound, Capability.NONE),
        (_client_error("404", 404), False, NotFound, Capability.NONE),
        (_client_error("NoSuchBucket", 404), True, BackendUnavailable, W),
        (_client_error("PreconditionFailed", 412), True, Duplicate, Capability.NONE),
        (_client_error("PreconditionFailed", 412), False, ChecksumMismatch, Capability.NONE),
        (_client_error("AccessDenied", 403), True, StorageWriteDenied, W),
        (_client_error("AccessDenied", 403), False, BackendUnavailable, Capability.NONE),
        (_client_error("InvalidAccessKeyId", 403), False, BackendUnavailable, R),
        (_client_error("QuotaExceeded", 403), True, StorageFull, W),
        (_client_error("EntityTooLarge", 400), True, StorageFull, Capability.NONE),
        (_client_error("MetadataTooLarge", 400), True, InvalidMetadata, Capability.NONE),
        (_client_error("SlowDown", 503), True, BackendUnavailable, W),
        (_client_error("InternalError", 500), False, BackendUnavailable, R),
        (_client_error("InvalidArgument", 400), True, StoreError, Capability.NONE),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="u"), False, OperationTimeout, R),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="u"), True, BackendUnavailable, W),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="u"),
            False,
            BackendUnavailable,
            R,
        ),
        (botocore.exceptions.ConnectionClosedError(endpoint_url="u"), True, BackendUnavailable, W),
        (botocore.exceptions.NoCredentialsError(), False, BackendUnavailable, R),
        (botocore.exceptions.ParamValidationError(report="bad"), True, StoreError, Capability.NONE),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_error_translation(
    exc: BaseException, write: bool, kind: type, revokes: Capability
) -> None:
    """Each vendor failure becomes the contract's error, with the passive signal it proves."""
    driver = S3Driver("s", S3Options(bucket="b"))
    err = driver.errors(write).translate(exc, key="k", operation="Op")
    assert err.__cause__ is exc
    assert isinstance(err, StoreError)
    assert type(err) is kind, err
    assert err.revokes == revokes
    assert err.key == "k"
