"""Odd keys on the real gateway, on both transports: RGW checks each request's signature, so a
key encoded differently in the URL and in the signature fails here (moto does not check)."""

from __future__ import annotations

import uuid

import pytest

from aiostore import StoreManager
from tests.s3.test_s3_keys import ODD_KEYS, TRANSPORTS, check_keys

from .ceph import RGWEndpoint
from .helpers import MiB, raw_client, rgw_store_config

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_odd_keys(rgw: RGWEndpoint, bucket: str, transport: str) -> None:
    """Every odd key round-trips (one as a multipart put), is listed under its own name and
    is stored in the bucket under exactly that name."""
    prefix = f"k-{uuid.uuid4().hex[:8]} +%~é/"
    config = rgw_store_config(rgw, bucket, transport=transport)
    async with StoreManager({"probe": {"interval": 3600.0}, "stores": {"rgw": config}}) as m:
        store = m["rgw"]
        key = prefix + "seen by others"
        await store.put(key, b"v")
        async with raw_client(rgw) as client:
            got = await client.get_object(Bucket=bucket, Key=key)
            async with got["Body"] as body:
                assert await body.read() == b"v"
        await store.delete(key)
        keys = await check_keys(store, prefix, 5 * MiB)
    assert len(keys) == len(ODD_KEYS)
