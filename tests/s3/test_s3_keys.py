"""Every valid key, odd characters included, on both transports: what is stored under a key is
read, listed, ranged, replaced and deleted under exactly that key (and the S3 key is the store
key itself, so other S3 tools see the same name)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from aiostore import NotFound, Store, StoreManager

from .conftest import PART, ConfigFactory

#: Keys whose characters need percent-encoding in a URL, or that encodings confuse.
ODD_KEYS = (
    "with space",
    "plus+sign",
    "per%cent",
    "pct%20encoded%2Fslash",
    "tilde~x",
    "ünïcödé/日本語/😀",
    "mixed a+b%c~d/é f",
    "q?mark&amp=x;semi",
    "hash#frag",
    "quote'dq\"",
    "star*(paren)[br]{ce}",
    "comma,dollar$at@",
    "caret^`pipe|<lt>",
    "x/.hidden/..dots",
)
TRANSPORTS = ("lean", "botocore")


async def check_keys(store: Store, prefix: str, part: int) -> list[str]:
    """Round-trips every odd key (one of them as a multipart put); the S3 keys stored."""
    stored = {}
    for i, name in enumerate(ODD_KEYS):
        key = f"{prefix}{name}"
        data = os.urandom(part + 3 if i == 0 else 100 + i)
        await store.put(key, data, metadata={"k": name})
        stored[key] = data
    listed = {info.key: info.size async for info in store.list(prefix)}
    assert listed == {k: len(v) for k, v in stored.items()}
    for key, data in stored.items():
        assert await store.read(key) == data, key
        assert await store.read(key, offset=7, length=20) == data[7:27], key
        info = await store.stat(key)
        assert (info.size, info.metadata) == (len(data), {"k": key[len(prefix) :]}), key
        async with store.open(key, offset=1) as reader:
            assert b"".join([c async for c in reader]) == data[1:], key
    first = next(iter(stored))
    await store.put(first, b"replaced", overwrite=True)
    assert await store.read(first) == b"replaced"
    for key in stored:
        await store.delete(key)
        with pytest.raises(NotFound):
            await store.stat(key)
    assert [i async for i in store.list(prefix)] == []
    return list(stored)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_odd_keys(s3_config: ConfigFactory, admin: Any, bucket: str, transport: str) -> None:
    """Odd keys round-trip on moto, and S3 sees them under their own names."""
    async with StoreManager(s3_config(transport=transport)) as manager:
        store = manager["s3"]
        key = "raw key+%~é"
        await store.put(key, b"v")
        assert admin.get_object(Bucket=bucket, Key=key)["Body"].read() == b"v"
        await store.delete(key)
        await check_keys(store, "p re+fix%/", PART)
