"""Multipart uploads: bounded concurrency and memory, cancellation and failures leave no upload,
retries of lost replies are not mistaken for duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import botocore.exceptions
import pytest

from aiostore import (
    BackendUnavailable,
    Capability,
    Duplicate,
    StorageFull,
    Store,
    StoreError,
    StoreManager,
)
from aiostore.drivers.s3 import S3Session, _options
from aiostore.drivers.s3._body import Body
from aiostore.drivers.s3._multipart import KEEP, Part, PartBuffer

from .conftest import PART, ConfigFactory, all_objects, uploads

MiB = 1 << 20


async def client_of(manager: StoreManager) -> Any:
    """The client of the store's shared session (the one operations use)."""
    async with manager.session("s3") as session:
        assert isinstance(session, S3Session)
        return session.client


def wrap(client: Any, method: str, around: Callable[..., Awaitable[Any]]) -> None:
    """Replace ``client.<method>`` by ``around(real, **kwargs)`` (the store's client lives as
    long as the test's manager)."""
    real = getattr(client, method)

    async def wrapper(**kwargs: Any) -> Any:
        return await around(real, **kwargs)

    setattr(client, method, wrapper)


def client_error(code: str, status: int, op: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"injected {code}"},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        op,
    )  # fmt: skip


async def zeros(total: int, chunk: int = MiB, pause: float = 0.0) -> AsyncIterator[bytes]:
    for _ in range(total // chunk):
        yield bytes(chunk)
        if pause:
            await asyncio.sleep(pause)


async def test_parts_in_flight_and_memory_are_bounded(s3_config: ConfigFactory) -> None:
    """With max_concurrency=2 at most two parts are in flight, and the bytes read from the
    source but not yet uploaded stay within (max_concurrency + 1) parts plus one chunk."""
    async with StoreManager(s3_config(max_concurrency=2)) as manager:
        client = await client_of(manager)
        inflight = peak = uploaded = 0
        consumed = ahead = 0

        async def upload_part(real: Any, **kw: Any) -> Any:
            nonlocal inflight, peak, uploaded
            inflight += 1
            peak = max(peak, inflight)
            try:
                await asyncio.sleep(0.03)  # a slow server makes the source wait on the bound
                return await real(**kw)
            finally:
                inflight -= 1
                uploaded += len(kw["Body"])

        wrap(client, "upload_part", upload_part)

        async def source() -> AsyncIterator[bytes]:
            nonlocal consumed, ahead
            async for chunk in zeros(10 * PART):
                consumed += len(chunk)
                ahead = max(ahead, consumed - uploaded)
                yield chunk

        stored = await manager["s3"].put("big", source())
        assert stored.size == 10 * PART
        assert peak == 2
        assert ahead <= 3 * PART + MiB, ahead / PART
        assert (await manager["s3"].stat("big")).size == 10 * PART


async def test_cancel_mid_upload_leaves_nothing(store: Store, admin: Any, bucket: str) -> None:
    """Cancelling a put while parts stream leaves no object and no multipart upload."""
    started = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        n = 0
        async for chunk in zeros(100 * MiB, pause=0.01):
            yield chunk
            n += 1
            if n == 3 * PART // MiB:
                started.set()

    task = asyncio.create_task(store.put("cancelled", source()))
    await asyncio.wait_for(started.wait(), 10)
    for _ in range(200):
        if uploads(admin, bucket):
            break
        await asyncio.sleep(0.02)
    assert [u["Key"] for u in uploads(admin, bucket)] == ["cancelled"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []


async def test_cancel_while_parts_are_in_flight(
    manager: StoreManager, admin: Any, bucket: str
) -> None:
    """Cancelled while part uploads hang: they are cancelled and the upload is aborted."""
    client = await client_of(manager)
    hanging = asyncio.Event()

    async def upload_part(real: Any, **kw: Any) -> Any:
        if kw["PartNumber"] >= 2:
            hanging.set()
            await asyncio.sleep(60)
        return await real(**kw)

    wrap(client, "upload_part", upload_part)
    task = asyncio.create_task(manager["s3"].put("hang", zeros(4 * PART)))
    await asyncio.wait_for(hanging.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []


async def test_cancel_while_the_upload_is_being_created(
    manager: StoreManager, admin: Any, bucket: str
) -> None:
    """Cancelled while CreateMultipartUpload is answered: the upload it made is aborted."""
    client = await client_of(manager)
    created = asyncio.Event()

    async def create(real: Any, **kw: Any) -> Any:
        result = await real(**kw)
        created.set()
        await asyncio.sleep(0.2)  # the reply is slow to arrive
        return result

    wrap(client, "create_multipart_upload", create)
    task = asyncio.create_task(manager["s3"].put("early", zeros(3 * PART)))
    await asyncio.wait_for(created.wait(), 10)
    assert len(uploads(admin, bucket)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []


async def test_failed_part_aborts_the_upload(
    manager: StoreManager, admin: Any, bucket: str
) -> None:
    """A part refused for good fails the put (translated, chained) and aborts the upload."""
    client = await client_of(manager)

    async def upload_part(real: Any, **kw: Any) -> Any:
        if kw["PartNumber"] == 3:
            raise client_error("InvalidArgument", 400, "UploadPart")
        return await real(**kw)

    wrap(client, "upload_part", upload_part)
    with pytest.raises(StoreError) as info:
        await manager["s3"].put("fails", zeros(5 * PART))
    assert type(info.value) is StoreError
    assert "InvalidArgument" in str(info.value)
    assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []
    assert Capability.WRITE_ACCESS in manager["s3"].capabilities


async def test_throttled_parts_are_retried(manager: StoreManager) -> None:
    """Each part throttled once (503 SlowDown) still uploads: parts are retried."""
    client = await client_of(manager)
    seen: dict[int, int] = {}

    async def upload_part(real: Any, **kw: Any) -> Any:
        n = kw["PartNumber"]
        seen[n] = seen.get(n, 0) + 1
        if seen[n] == 1:
            raise client_error("SlowDown", 503, "UploadPart")
        return await real(**kw)

    wrap(client, "upload_part", upload_part)
    stored = await manager["s3"].put("retried", zeros(3 * PART + MiB))
    assert stored.size == 3 * PART + MiB
    assert seen == {1: 2, 2: 2, 3: 2, 4: 2}
    assert (await manager["s3"].stat("retried")).size == stored.size


async def test_lost_reply_of_a_create_only_put_is_not_a_duplicate(manager: StoreManager) -> None:
    """The first PUT succeeds but its reply is lost; the retry gets 412 from our own object.
    The put reports success, and a real second put still gets Duplicate."""
    client = await client_of(manager)
    calls = 0

    async def put_object(real: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        result = await real(**kw)
        if calls == 1:
            raise botocore.exceptions.ConnectionClosedError(endpoint_url="http://lost")
        return result

    wrap(client, "put_object", put_object)
    await manager["s3"].put("once", b"payload")
    assert calls == 2
    with pytest.raises(Duplicate):
        await manager["s3"].put("once", b"other")
    assert calls == 3  # a first-attempt 412 is final
    assert await manager["s3"].read("once") == b"payload"


async def test_lost_reply_of_a_completion_is_not_a_duplicate(
    manager: StoreManager, admin: Any, bucket: str
) -> None:
    """Same for CompleteMultipartUpload: the retry finds the upload completed by us."""
    client = await client_of(manager)
    calls = 0

    async def complete(real: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        result = await real(**kw)
        if calls == 1:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url="http://lost")
        return result

    wrap(client, "complete_multipart_upload", complete)
    stored = await manager["s3"].put("multi", zeros(3 * PART))
    assert calls == 2
    assert (await manager["s3"].stat("multi")).size == stored.size == 3 * PART
    assert uploads(admin, bucket) == []


async def test_create_multipart_upload_is_not_retried_after_an_ambiguous_failure(
    manager: StoreManager, admin: Any, bucket: str
) -> None:
    """CreateMultipartUpload is not idempotent: a connection lost after sending it is not
    retried (that could leave an orphan upload); a 503 answer is."""
    client = await client_of(manager)
    failures = [client_error("SlowDown", 503, "CreateMultipartUpload"), None]
    calls = 0

    async def create(real: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        failure = failures.pop(0) if failures else None
        if failure is not None:
            raise failure
        return await real(**kw)

    wrap(client, "create_multipart_upload", create)
    await manager["s3"].put("created", zeros(2 * PART))
    assert calls == 2
    failures[:] = [botocore.exceptions.ConnectionClosedError(endpoint_url="http://lost")]
    calls = 0
    with pytest.raises(BackendUnavailable):
        await manager["s3"].put("not-created", zeros(2 * PART))
    assert calls == 1
    assert uploads(admin, bucket) == []


async def test_part_size_grows_to_fit_the_part_limit(
    manager: StoreManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a known size, parts grow so the object fits in S3's part limit; with an unknown
    size, running out of parts fails cleanly (StorageFull that revokes nothing)."""
    monkeypatch.setattr(_options, "MAX_PARTS", 3)
    client = await client_of(manager)
    sizes: list[int] = []

    async def upload_part(real: Any, **kw: Any) -> Any:
        sizes.append(len(kw["Body"]))
        return await real(**kw)

    wrap(client, "upload_part", upload_part)
    total = 4 * PART
    await manager["s3"].put("fits", zeros(total), size=total)
    assert len(sizes) == 3 and sum(sizes) == total
    with pytest.raises(StorageFull) as info:
        await manager["s3"].put("too-many", zeros(total))
    assert info.value.revokes == Capability.NONE
    assert Capability.WRITE_ACCESS in manager["s3"].capabilities


def _joined(part: Part) -> bytes:
    return Body(part).read()


def test_part_buffer_cuts_exact_parts_and_copies_whole_chunks_not() -> None:
    """Parts are exactly ``size`` bytes whatever the chunking; a chunk that is exactly one part
    is handed on without a copy."""
    buf = PartBuffer(10)
    data = bytes(range(256)) * 2
    parts: list[Part] = []
    start = 0
    for n in [3, 7, 1, 25, 0, 9, 10, 400]:
        parts += buf.add(data[start : start + n])
        start += n
    parts.append(buf.take())
    assert [len(_joined(p)) for p in parts] == [10] * 45 + [5]
    assert b"".join(_joined(p) for p in parts) == data[:start]
    whole = bytes(10)
    assert buf.add(whole)[0] is whole
    assert buf.take() == b"" and buf.filled == 0


def test_part_buffer_keeps_large_bytes_chunks_by_reference() -> None:
    """Large ``bytes`` chunks become the pieces of a part as they are (no copy); small or
    mutable ones are copied into blocks; parts are exact whatever the mix."""
    size = 3 * KEEP
    buf = PartBuffer(size)
    big = [bytes([i]) * (2 * KEEP) for i in range(3)]
    small = [bytearray(b"s" * 100), b"t" * 50]
    chunks = (big[0], small[0], big[1], small[1], big[2])
    parts: list[Part] = []
    for chunk in chunks:
        parts += buf.add(chunk)
    parts.append(buf.take())
    source = b"".join(bytes(c) for c in chunks)
    assert b"".join(_joined(p) for p in parts) == source
    assert [len(_joined(p)) for p in parts] == [size, size, len(source) - 2 * size]
    first, second = parts[0], parts[1]
    assert isinstance(first, tuple) and isinstance(second, tuple)
    assert first[0] is big[0]  # kept, not copied
    assert isinstance(first[1], bytearray)  # the small chunk and a small slice: copied
    # Slices of large chunks are views of the chunks themselves.
    assert isinstance(second[0], memoryview) and second[0].obj is big[1]
    assert isinstance(second[2], memoryview) and second[2].obj is big[2]
