"""Reads through the fault proxy: one read is one version (``info`` from the GET response,
resumptions pinned with ``If-Match``) and makes at most ``max_attempts`` GETs, resumptions
included."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiostore import BackendUnavailable, ChecksumMismatch, ObjectInfo, StoreManager
from aiostore.drivers.s3 import S3Reader
from tests.support.faultproxy import Fault, FaultProxy, ProxyConnection

from .conftest import PART, ConfigFactory

MANUAL_PROBE = {"enabled": False, "timeout": 5.0}
DATA = os.urandom(3 * PART + 123)


@pytest.fixture
async def manager(s3_config: ConfigFactory, proxy: FaultProxy) -> AsyncIterator[StoreManager]:
    """A store behind the fault proxy, 3 attempts per logical operation, ``big`` in it."""
    config = s3_config(
        endpoint_url=proxy.url, max_attempts=3, read_timeout=2.0, probe=dict(MANUAL_PROBE)
    )
    async with StoreManager(config) as m:
        await m["s3"].put("big", DATA, metadata={"v": "1"})
        yield m


def streaming_get(proxy: FaultProxy) -> ProxyConnection:
    """The proxy connection carrying the open GET."""
    (conn,) = [c for c in proxy.connections if c.last_request.startswith(b"GET ") and not c.closed]
    return conn


async def open_reader(manager: StoreManager, key: str, offset: int = 0) -> tuple[Any, S3Reader]:
    """A driver reader of ``key`` on the store's session (and the session's context)."""
    context = manager.session("s3")
    session = await context.__aenter__()
    reader = await session.open(key, offset, None)
    assert isinstance(reader, S3Reader)
    return context, reader


async def test_info_comes_from_the_get_response(
    manager: StoreManager, proxy: FaultProxy, admin: Any, bucket: str
) -> None:
    """``open`` makes one request (no HEAD), and the reader's ``info`` describes the object
    it reads: full size (from Content-Range on a ranged GET), modification time, metadata,
    ETag."""
    head = admin.head_object(Bucket=bucket, Key="big")
    async with manager.session("s3") as session:
        before = proxy.requests
        reader = await session.open("big", 10, 1000)
        assert proxy.requests - before == 1
        try:
            assert reader.size == 1000
            assert reader.info == ObjectInfo(
                "big", len(DATA), head["LastModified"].timestamp(), {"v": "1"}, head["ETag"]
            )
        finally:
            await reader.aclose()
        whole = await session.open("big", 0, None)
        await whole.aclose()
        assert whole.info is not None and whole.info.size == whole.size == len(DATA)
        empty = await session.open("big", len(DATA) + 5, None)
        assert empty.size == 0 and empty.info is not None and empty.info.size == len(DATA)


async def test_resumed_read_of_a_changed_object_fails(
    manager: StoreManager, proxy: FaultProxy, admin: Any, bucket: str
) -> None:
    """The object is overwritten while it is read, then the body breaks: the resumption,
    pinned to the first ETag with If-Match, fails with ChecksumMismatch instead of splicing the
    new version's bytes onto the old one's."""
    context, reader = await open_reader(manager, "big")
    try:
        first = await reader.read_chunk()
        assert first == DATA[: len(first)]
        admin.put_object(Bucket=bucket, Key="big", Body=os.urandom(len(DATA)))
        streaming_get(proxy).mode = Fault("reset")
        with pytest.raises(ChecksumMismatch) as info:
            while await reader.read_chunk():
                pass
        assert "changed while it was being read" in str(info.value)
    finally:
        await reader.aclose()
        await context.__aexit__(None, None, None)


async def test_resume_shares_the_reads_attempt_budget(
    manager: StoreManager, proxy: FaultProxy
) -> None:
    """The body breaks and every later request is refused with 503: one read makes
    max_attempts GETs in all (the first and two for its resumption), not max_attempts more per
    resumption, and fails with BackendUnavailable."""
    context, reader = await open_reader(manager, "big")
    try:
        before = proxy.requests - 1  # the open's GET
        await reader.read_chunk()
        streaming_get(proxy).mode = Fault("reset")
        proxy.set_mode("503")
        with pytest.raises(BackendUnavailable) as info:
            while await reader.read_chunk():
                pass
        assert proxy.requests - before == 3, proxy.requests - before
        assert "after 3 attempts" in str(info.value)
    finally:
        await reader.aclose()
        await context.__aexit__(None, None, None)


async def test_resumes_within_the_budget_succeed(manager: StoreManager, proxy: FaultProxy) -> None:
    """A break, one 503, then a good answer: exactly the object, in three GETs."""
    context, reader = await open_reader(manager, "big", offset=5)
    try:
        before = proxy.requests - 1
        got = [await reader.read_chunk()]
        streaming_get(proxy).mode = Fault("reset")
        proxy.set_mode("503", requests=1)
        while chunk := await reader.read_chunk():
            got.append(chunk)
        assert b"".join(got) == DATA[5:]
        assert proxy.requests - before == 3
    finally:
        await reader.aclose()
        await context.__aexit__(None, None, None)
