"""Issue 15, defect 1: a streaming multipart put cancelled in any way — two or three native
``task.cancel()`` calls, a timeout, a timeout and a cancel, a task group — leaves no multipart
upload and no object behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from aiostore import BackendUnavailable, Store, StoreManager
from tests.support.faultproxy import FaultProxy

from .conftest import PART, ConfigFactory, Moto, all_objects, uploads

MiB = 1 << 20
#: 40 MiB in 1 MiB chunks (eight 5 MiB parts); the put is cancelled after about 12 MiB, while
#: parts are in flight.
TOTAL = 40 * MiB
CANCEL_AFTER = 12


class Slow:
    """A slow 40 MiB source; ``reached`` is set once ``CANCEL_AFTER`` chunks were taken."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def __call__(self) -> AsyncIterator[bytes]:
        for n in range(TOTAL // MiB):
            yield bytes(MiB)
            if n + 1 == CANCEL_AFTER:
                self.reached.set()
            await asyncio.sleep(0.01)


async def cancel_twice(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()


async def cancel_twice_later(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()


async def cancel_three_times(task: asyncio.Task[Any]) -> None:
    for _ in range(3):
        task.cancel()
        await asyncio.sleep(0)


async def cancel_once(task: asyncio.Task[Any]) -> None:
    task.cancel()


PATTERNS: dict[str, Callable[[asyncio.Task[Any]], Awaitable[None]]] = {
    "once": cancel_once,
    "twice": cancel_twice,
    "twice-50ms-apart": cancel_twice_later,
    "three-times": cancel_three_times,
}


async def settle(admin: Any, bucket: str) -> None:
    """Let anything the put left running finish (nothing may happen later)."""
    await asyncio.sleep(0.3)
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []


@pytest.mark.parametrize("pattern", list(PATTERNS))
async def test_native_cancels_leave_no_upload(
    store: Store, admin: Any, bucket: str, pattern: str
) -> None:
    """``task.cancel()`` once, twice (at once or 50 ms apart) or three times, while parts are
    in flight: no upload and no object is left, and the task ends cancelled."""
    for _ in range(2):
        source = Slow()
        task = asyncio.create_task(store.put("k", source(), overwrite=True))
        await asyncio.wait_for(source.reached.wait(), 30)
        await PATTERNS[pattern](task)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await settle(admin, bucket)


async def test_timeout_then_cancel_leaves_no_upload(store: Store, admin: Any, bucket: str) -> None:
    """``asyncio.timeout`` expires mid-upload, and the task is cancelled again while it cleans
    up: no upload left."""
    source = Slow()

    async def put() -> None:
        async with asyncio.timeout(None) as deadline:
            waiter = asyncio.ensure_future(source.reached.wait())
            waiter.add_done_callback(
                lambda _: deadline.reschedule(asyncio.get_running_loop().time())
            )
            await store.put("k", source(), overwrite=True)

    task = asyncio.create_task(put())
    await asyncio.wait_for(source.reached.wait(), 30)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises((asyncio.CancelledError, TimeoutError)):
        await asyncio.wait_for(task, 30)
    await settle(admin, bucket)


async def test_timeout_leaves_no_upload(store: Store, admin: Any, bucket: str) -> None:
    """A plain ``asyncio.timeout`` around the put."""
    source = Slow()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as deadline:
            waiter = asyncio.ensure_future(source.reached.wait())
            waiter.add_done_callback(
                lambda _: deadline.reschedule(asyncio.get_running_loop().time())
            )
            await store.put("k", source(), overwrite=True)
    await settle(admin, bucket)


async def test_task_group_cancellation_leaves_no_upload(
    store: Store, admin: Any, bucket: str
) -> None:
    """A sibling fails in an ``asyncio.TaskGroup`` (which cancels the put), then the group's
    parent is cancelled too while the put cleans up."""
    source = Slow()

    class Boom(Exception):
        pass

    async def sibling() -> None:
        await source.reached.wait()
        raise Boom

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(store.put("k", source(), overwrite=True))
            tg.create_task(sibling())

    task = asyncio.create_task(group())
    await asyncio.wait_for(source.reached.wait(), 30)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises((asyncio.CancelledError, BaseExceptionGroup)):
        await asyncio.wait_for(task, 30)
    await settle(admin, bucket)


async def test_anyio_scope_cancellation_leaves_no_upload(
    store: Store, admin: Any, bucket: str
) -> None:
    """An anyio task group cancelled by its scope while the put streams, then a native cancel
    of the enclosing task."""
    source = Slow()

    async def group() -> None:
        async with anyio.create_task_group() as tg:

            async def put() -> None:
                await store.put("k", source(), overwrite=True)

            tg.start_soon(put)
            await source.reached.wait()
            tg.cancel_scope.cancel()

    task = asyncio.create_task(group())
    await asyncio.wait_for(source.reached.wait(), 30)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    await settle(admin, bucket)


# -- aborts that cannot reach the server are retried later --------------------------------------

#: Probes only when a test asks; verdicts act at once.
MANUAL_PROBE = {
    "enabled": False,
    "timeout": 10.0,
    "failures_to_revoke": 1,
    "successes_to_restore": 1,
}


def outage_source(proxy: FaultProxy, admin: Any, bucket: str) -> AsyncIterator[bytes]:
    """40 MiB; once the multipart upload exists, the server starts answering 503 to everything
    (so the parts fail, and so does the abort)."""

    async def source() -> AsyncIterator[bytes]:
        for n in range(TOTAL // MiB):
            yield bytes(MiB)
            if n + 1 == CANCEL_AFTER:
                for _ in range(500):
                    if uploads(admin, bucket):
                        break
                    await asyncio.sleep(0.01)
                proxy.set_mode("503")

    return source()


@pytest.fixture
async def outage_manager(
    s3_config: ConfigFactory, proxy: FaultProxy
) -> AsyncIterator[StoreManager]:
    config = s3_config(endpoint_url=proxy.url, max_attempts=2, probe=dict(MANUAL_PROBE))
    async with StoreManager(config) as manager:
        yield manager


async def strand_cancelled_put(store: Store, proxy: FaultProxy, admin: Any, bucket: str) -> None:
    """A put cancelled twice during an outage (503 to everything): its abort fails, its upload
    is left (stranded, for a later abort)."""
    task = asyncio.create_task(store.put("k", outage_source(proxy, admin, bucket), overwrite=True))
    for _ in range(1000):
        if proxy.mode.kind == "503" and proxy.counts["503"] >= 1:
            break
        await asyncio.sleep(0.01)
    await cancel_twice(task)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert [u["Key"] for u in uploads(admin, bucket)] == ["k"]


async def vanish_mid_body(proxy: FaultProxy, moto: Moto, bucket: str) -> None:
    """A write whose client goes away halfway through the body, after the proxy forwarded its
    head to the server: on the wire, a part upload cancelled while it was being sent."""
    started = moto.writes.started
    _reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    writer.write(
        f"PUT /{bucket}/cut HTTP/1.1\r\nHost: {proxy.host}:{proxy.port}\r\n"
        f"Content-Length: {PART}\r\n\r\n".encode()
    )
    writer.write(bytes(PART // 2))
    await writer.drain()
    for _ in range(3000):  # the server is handling it (reading its body)
        if moto.writes.started > started:
            break
        await asyncio.sleep(0.01)
    assert moto.writes.started > started
    writer.close()
    await writer.wait_closed()


async def test_failed_abort_is_retried_after_a_good_probe(
    outage_manager: StoreManager, proxy: FaultProxy, admin: Any, bucket: str
) -> None:
    """The parts and the abort of a put fail during an outage: the upload is left, and the
    driver remembers it; once the server is back, the next successful probe aborts it."""
    store = outage_manager["s3"]
    with pytest.raises(BackendUnavailable):
        await store.put("k", outage_source(proxy, admin, bucket), overwrite=True)
    assert [u["Key"] for u in uploads(admin, bucket)] == ["k"]
    assert not (await store.probe()).healthy  # still down: nothing aborted
    assert len(uploads(admin, bucket)) == 1
    proxy.pass_through()
    assert (await store.probe()).healthy
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []


async def test_failed_abort_of_a_cancelled_put_is_retried_at_close(
    s3_config: ConfigFactory, proxy: FaultProxy, admin: Any, bucket: str
) -> None:
    """A put cancelled twice during an outage cannot abort its upload; the server comes back
    and the manager closes: closing aborts it."""
    config = s3_config(endpoint_url=proxy.url, max_attempts=2, probe=dict(MANUAL_PROBE))
    async with StoreManager(config) as manager:
        await strand_cancelled_put(manager["s3"], proxy, admin, bucket)
        proxy.pass_through()
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []


async def test_a_write_cut_mid_body_does_not_hold_up_the_abort_at_close(
    s3_config: ConfigFactory, proxy: FaultProxy, moto: Moto, admin: Any, bucket: str
) -> None:
    """The flake of the test above, made deterministic: when the outage began while a part was
    being sent, that part's request was cut mid-body by the cancellation. The server must still
    answer the abort sent at close (as S3 does: one stalled upload holds up no other request)."""
    config = s3_config(endpoint_url=proxy.url, max_attempts=2, probe=dict(MANUAL_PROBE))
    async with StoreManager(config) as manager:
        await strand_cancelled_put(manager["s3"], proxy, admin, bucket)
        proxy.pass_through()
        await vanish_mid_body(proxy, moto, bucket)
    assert uploads(admin, bucket) == []
    assert all_objects(admin, bucket) == []


async def test_failed_abort_is_retried_after_a_successful_write(
    outage_manager: StoreManager, proxy: FaultProxy, admin: Any, bucket: str
) -> None:
    """A put cancelled during an outage revokes nothing, and a busy store may go without
    probes (traffic proves its health): the first successful write after the outage aborts the
    stranded upload."""
    store = outage_manager["s3"]
    await strand_cancelled_put(store, proxy, admin, bucket)
    proxy.pass_through()
    await store.put("other", b"x")
    for _ in range(500):
        if not uploads(admin, bucket):
            break
        await asyncio.sleep(0.01)
    assert uploads(admin, bucket) == []
    assert [o["Key"] for o in all_objects(admin, bucket)] == ["other"]
