"""The lean transport sends every multipart part with its SHA-256 checksum (the hash it signs
anyway): the server checks each part and keeps the object's composite checksum."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from aiostore import StoreManager

from .conftest import PART, ConfigFactory


async def test_multipart_parts_carry_their_sha256(
    s3_config: ConfigFactory, admin: Any, bucket: str
) -> None:
    data = os.urandom(2 * PART + 1234)
    config = s3_config(transport="lean", part_size=PART, multipart_threshold=PART)
    async with StoreManager(config) as manager:
        await manager["s3"].put("composite", data)
        assert await manager["s3"].read("composite") == data
    head = admin.head_object(Bucket=bucket, Key="composite", ChecksumMode="ENABLED")
    parts = [data[i : i + PART] for i in range(0, len(data), PART)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    expected = base64.b64encode(composite).decode()
    assert head["ChecksumSHA256"].partition("-")[0] == expected
    listed = admin.list_objects_v2(Bucket=bucket, Prefix="composite")["Contents"]
    assert listed[0]["Size"] == len(data)
