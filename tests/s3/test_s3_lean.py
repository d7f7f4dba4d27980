"""The lean transport's own parts: addressing, key encoding, credentials from botocore's
provider chain, and S3 answers turned into the same errors as through aiobotocore."""

from __future__ import annotations

from typing import Any

import pytest

from aiostore import BackendUnavailable, Capability, NotFound, StoreManager
from aiostore.drivers.s3 import S3Options
from aiostore.drivers.s3._lean import LeanClient

from .conftest import ConfigFactory


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({}, "https://b-1.s3.amazonaws.com/a%20b%2Bc%25d~e/%C3%A9"),
        ({"region": "eu-west-1"}, "https://b-1.s3.eu-west-1.amazonaws.com/a%20b%2Bc%25d~e/%C3%A9"),
        ({"addressing_style": "path"}, "https://s3.amazonaws.com/b-1/a%20b%2Bc%25d~e/%C3%A9"),
        ({"bucket": "b.dots"}, "https://s3.amazonaws.com/b.dots/a%20b%2Bc%25d~e/%C3%A9"),
        (
            {"endpoint_url": "http://minio.example:9000"},
            "http://minio.example:9000/b-1/a%20b%2Bc%25d~e/%C3%A9",
        ),
        (
            {"endpoint_url": "http://minio.example:9000/", "addressing_style": "virtual"},
            "http://b-1.minio.example:9000/a%20b%2Bc%25d~e/%C3%A9",
        ),
    ],
)
async def test_addressing_and_key_encoding(options: dict[str, Any], url: str) -> None:
    """Virtual-hosted on AWS for DNS-label buckets, path style otherwise or for an endpoint
    given in the options; keys percent-encoded once, ``/`` and ``~`` kept."""
    o = S3Options(**{"bucket": "b-1", "transport": "lean", **options})
    client = LeanClient(o, None)
    try:
        assert client._url(o.bucket, "a b+c%d~e/é", None) == url
        query = client._url(o.bucket, None, {"uploadId": "a+b/c=", "partNumber": "2"})
        assert query.endswith("?partNumber=2&uploadId=a%2Bb%2Fc%3D")
    finally:
        await client.close()


async def test_credentials_from_the_provider_chain(
    s3_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without static credentials the lean transport takes them from botocore's chain (here
    the environment); with none anywhere, operations fail as BackendUnavailable saying so."""
    config = s3_config(transport="lean")
    store = config["stores"]["s3"]
    del store["access_key"], store["secret_key"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    async with StoreManager(config) as manager:
        await manager["s3"].put("k", b"v")
        assert await manager["s3"].read("k") == b"v"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    async with StoreManager(config) as manager:
        store_ = manager["s3"]
        assert Capability.READ_ACCESS not in store_.capabilities
        with pytest.raises(BackendUnavailable) as info:
            async with manager.session("s3") as session:
                await session.stat("k")
        assert "no usable AWS credentials" in str(info.value)


async def test_error_answers_are_client_errors(s3_config: ConfigFactory) -> None:
    """A missing key (404 on HEAD, NoSuchKey on GET), a missing bucket: the same errors as
    through aiobotocore."""
    async with StoreManager(s3_config(transport="lean")) as manager:
        store = manager["s3"]
        with pytest.raises(NotFound):
            await store.stat("missing")
        with pytest.raises(NotFound):
            await store.read("missing")
    config = s3_config(transport="lean", bucket="no-such-bucket-lean", probe={"interval": 3600})
    async with StoreManager(config) as manager:
        assert "does not exist" in manager["s3"].health.capabilities["READ_ACCESS"].reason
