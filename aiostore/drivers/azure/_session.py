"""One session of the azure driver: an asyncio ``ContainerClient`` on its own aiohttp session.

Every request goes through :meth:`AzureSession._call`: the driver's :class:`RetryPolicy` (the
SDK's own retries are off, ``retry_total=0``) inside the driver's :class:`ErrorMap`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from ...errors import Duplicate, StoreError
from ...sdk import (
    Attempts,
    BytesReader,
    Capability,
    DriverReader,
    DriverSession,
    Metadata,
    ObjectInfo,
    ProbeResult,
    Verdict,
    rechunk,
    shielded,
)
from . import _names as names
from ._errors import retryable, status_of

if TYPE_CHECKING:
    from ._driver import AzureDriver

__all__ = ["AzureReader", "AzureSession", "open_client"]

T = TypeVar("T")

MiB: Final = 1 << 20
#: Bytes per GET of a read (the SDK's first and following range requests).
READ_CHUNK: Final = 4 * MiB
#: Under the driver prefix: the probe's scratch blobs (skipped by ``list``).
PROBE_AREA: Final = ".aiostore-probe/"
PROBE_BODY: Final = b"aiostore probe blob\n"
#: Blob metadata names: the user's metadata (base64 of compact JSON) and the put's token.
META_KEY: Final = "aiostore"
TOKEN_KEY: Final = "aiostoreput"
LIST_PAGE: Final = 1000


def open_client(driver: AzureDriver) -> BlobServiceClient:
    """A service client whose transport owns its aiohttp session (closed with the client)."""
    o = driver.options
    settings: dict[str, Any] = {
        # Timeouts belong to the transport: the client's own keywords do not reach a given one.
        "transport": AioHttpTransport(
            connection_timeout=o.connect_timeout, read_timeout=o.read_timeout
        ),
        "retry_total": 0,  # the driver's RetryPolicy retries
        "max_single_get_size": READ_CHUNK,
        "max_chunk_get_size": READ_CHUNK,
        "max_single_put_size": o.block_size,
        "max_block_size": o.block_size,
    }
    if o.connection_string is not None:
        return BlobServiceClient.from_connection_string(o.connection_string, **settings)
    credential: Any = None
    if o.account_key is not None:
        credential = {"account_name": o.account_name, "account_key": o.account_key}
    elif o.sas_token is not None:
        credential = o.sas_token.lstrip("?")
    return BlobServiceClient(driver.url or "", credential=credential, **settings)


class AzureSession(DriverSession):
    """One container client on one aiohttp session, bound to the loop that opened it."""

    def __init__(
        self,
        driver: AzureDriver,
        service: BlobServiceClient,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._driver = driver
        self._o = driver.options
        self._prefix = driver.prefix
        self._service = service
        self._container: ContainerClient = service.get_container_client(driver.options.container)
        self._loop = loop
        self._closed = False
        self._errors = driver.errors
        self._retry = driver.retry

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<AzureSession store={self._driver.store!r} container={self._o.container!r} {state}>"
        )

    @property
    def is_broken(self) -> bool:
        return self._closed or self._loop.is_closed()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._service.close()

    # -- the I/O edge ---------------------------------------------------------------------------
    def _blob(self, key: str) -> BlobClient:
        if self._closed:
            raise StoreError("the Azure session is closed", key=key, session_broken=True)
        return self._container.get_blob_client(self._prefix + names.encode(key))

    async def _call(
        self,
        operation: str,
        fn: Callable[[], Awaitable[T]],
        *,
        key: str | None = None,
        budget: Attempts | None = None,
        step: str | None = None,
    ) -> T:
        """One request, retried within ``budget`` (a fresh one when not given), mapped as part
        of ``operation`` ("put", "get", ...: it decides what a failure revokes); ``step``
        names the request in log records."""
        what = f"Azure {step or operation}" + (f" {key!r}" if key is not None else "")
        with self._errors.mapping(key=key, operation=operation):
            return await self._retry.call(fn, budget=budget or self._retry.attempts(), what=what)

    async def create_container(self) -> None:
        """Create the container unless it exists."""

        async def create() -> None:
            try:
                await self._container.create_container()
            except ResourceExistsError:
                pass

        await self._call("create container", create)

    # -- put ------------------------------------------------------------------------------------
    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        blob = self._blob(key)
        token = uuid.uuid4().hex
        headers = {TOKEN_KEY: token}
        if metadata:
            headers[META_KEY] = encode_metadata(metadata)
        pieces = rechunk(stream, self._o.block_size).__aiter__()
        first = await anext(pieces, b"")
        second = await anext(pieces, None)
        if second is None:
            # The whole object is one block: one Put Blob (If-None-Match: * when create-only).
            async def upload() -> None:
                await blob.upload_blob(
                    first, length=len(first), overwrite=overwrite, metadata=headers
                )

            try:
                await self._commit(key, blob, upload, token, overwrite)
                return
            except Duplicate:
                # The service may also refuse a create-only Put Blob when the name holds only
                # uncommitted blocks (an earlier put's, failed or cancelled): when no blob is
                # there, commit this one as a block list, which is conditional and atomic too.
                if overwrite or await self._visible(blob):
                    raise
            block_ids = await self._stage(key, blob, _prepend((first,), _nothing()), token)
        else:
            block_ids = await self._stage(key, blob, _prepend((first, second), pieces), token)
        condition: dict[str, Any] = (
            {} if overwrite else {"match_condition": MatchConditions.IfMissing}
        )

        async def commit() -> None:
            await blob.commit_block_list(
                [BlobBlock(block_id) for block_id in block_ids], metadata=headers, **condition
            )

        await self._commit(key, blob, commit, token, overwrite)

    async def _visible(self, blob: BlobClient) -> bool:
        """Whether a committed blob exists under this name."""
        return await self._look(blob) is not None

    async def _look(self, blob: BlobClient) -> Any:
        """The blob's properties, or None when there is none: a request made for a put, so
        that its failure counts against WRITE_ACCESS."""

        async def look() -> Any:
            try:
                return await blob.get_blob_properties()
            except ResourceNotFoundError:
                return None

        return await self._call("put", look, step="look")

    async def _stage(
        self, key: str, blob: BlobClient, pieces: AsyncIterator[bytes], token: str
    ) -> list[str]:
        """Stage every piece as a block, ``max_concurrency`` at a time; their ids in order.

        On any failure or cancellation the staged blocks stay uncommitted: nothing becomes
        visible, and the service discards uncommitted blocks by itself (after a week, or at
        the next commit of this blob name).
        """
        ids: list[str] = []
        running: set[asyncio.Task[None]] = set()
        limit = self._o.max_concurrency

        async def stage(block_id: str, data: bytes) -> None:
            await self._call(
                "put",
                lambda: blob.stage_block(block_id, data, length=len(data)),
                key=key,
                step="stage block",
            )

        try:
            async for piece in pieces:
                block_id = f"{token}-{len(ids):06d}"  # same length for every block of a blob
                ids.append(block_id)
                running.add(asyncio.ensure_future(stage(block_id, piece)))
                await _settle(running, limit - 1)
            await _settle(running, 0)
        finally:
            if running:
                for task in running:
                    task.cancel()
                await shielded(asyncio.gather(*running, return_exceptions=True))
        return ids

    async def _commit(
        self,
        key: str,
        blob: BlobClient,
        request: Callable[[], Awaitable[None]],
        token: str,
        overwrite: bool,
    ) -> None:
        """Send the request that makes the object visible. It is shielded: once sent, a
        cancellation waits for its answer, so nothing commits after the caller left. A
        create-only commit that was retried and finds the blob checks whether the blob is its
        own (an earlier attempt succeeded but its answer was lost)."""
        budget = self._retry.attempts()
        try:
            await shielded(self._call("put", request, key=key, budget=budget))
        except Duplicate:
            if overwrite or budget.made <= 1 or await self._token(blob) != token:
                raise

    async def _token(self, blob: BlobClient) -> str | None:
        """The put token of the blob now under this name (None when there is none)."""
        try:
            props = await self._look(blob)
        except StoreError:
            return None
        return None if props is None else (props.metadata or {}).get(TOKEN_KEY)

    # -- reads ----------------------------------------------------------------------------------
    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        blob = self._blob(key)
        if length == 0:
            return BytesReader(b"", info=await self.stat(key))
        budget = self._retry.attempts()
        downloader = await self._download(key, blob, offset, length, budget, etag=None)
        if downloader is None:
            return BytesReader(b"")
        return AzureReader(self, key, blob, downloader, offset, budget)

    async def _download(
        self,
        key: str,
        blob: BlobClient,
        offset: int,
        length: int | None,
        budget: Attempts,
        *,
        etag: str | None,
    ) -> Any:
        """A started download (its first range read), or None when ``offset`` is at or beyond
        the end. With ``etag``, only that version (If-Match)."""
        pinned: dict[str, Any] = (
            {} if etag is None else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        )

        async def get() -> Any:
            try:
                return await blob.download_blob(
                    offset=offset if offset or length is not None else None,
                    length=length,
                    max_concurrency=1,
                    **pinned,
                )
            except HttpResponseError as exc:
                if status_of(exc) == 416:
                    return None
                raise

        return await self._call("resume" if etag else "get", get, key=key, budget=budget)

    async def stat(self, key: str) -> ObjectInfo:
        blob = self._blob(key)
        props = await self._call("get properties", blob.get_blob_properties, key=key)
        return _info(key, props, int(props.size))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        cut = len(self._prefix)
        start = self._prefix + names.list_prefix(prefix)
        token: str | None = None
        while True:

            async def page(token: str | None = token) -> tuple[list[Any], str | None]:
                pages: Any = self._container.list_blobs(
                    name_starts_with=start, results_per_page=LIST_PAGE
                ).by_page(continuation_token=token)
                items = [item async for item in await anext(pages)]
                return items, pages.continuation_token

            items, token = await self._call("list", page)
            for item in items:
                rel = names.decode(item.name[cut:])
                if not rel.startswith(prefix) or rel.startswith(PROBE_AREA):
                    continue
                modified = item.last_modified.timestamp() if item.last_modified else None
                yield ObjectInfo(rel, int(item.size), modified, etag=item.etag)
            if not token:
                return

    async def delete(self, key: str) -> None:
        blob = self._blob(key)
        await self._call("delete", blob.delete_blob, key=key)

    # -- probe ----------------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        """A one-name listing of the container (READ_ACCESS); with ``probe_write`` a put, a
        ranged get and a delete of a tiny blob (WRITE_ACCESS, READ_RANDOM). One attempt per
        request: the probe reports health as it is. A probe slower than ``degraded_latency``
        revokes READ_RANDOM."""
        started = time.monotonic()
        verdicts: dict[Capability, Verdict] = {}
        failed = await self._step("list", self._list_one)
        verdicts[Capability.READ_ACCESS] = Verdict.fail(failed) if failed else Verdict.ok()
        if failed:
            verdicts[Capability.READ_RANDOM] = Verdict.fail(failed)
        if not self._driver.probe_writes:
            pass  # configured read-only: never write; WRITE_ACCESS is not ours to judge
        elif self._o.probe_write:
            blob = self._container.get_blob_client(f"{self._prefix}{PROBE_AREA}{uuid.uuid4().hex}")
            failed_write = await self._step(
                "put", lambda: blob.upload_blob(PROBE_BODY, overwrite=True), write=True
            )
            if failed_write is None:
                if Capability.READ_RANDOM not in verdicts:
                    verdicts[Capability.READ_RANDOM] = await self._probe_range(blob)
                failed_write = await self._step("delete", blob.delete_blob, write=True)
            verdicts[Capability.WRITE_ACCESS] = (
                Verdict.fail(failed_write) if failed_write else Verdict.ok()
            )
        else:
            verdicts[Capability.WRITE_ACCESS] = (
                Verdict.fail(failed) if failed else Verdict.ok("not written (probe_write = false)")
            )
        elapsed = time.monotonic() - started
        limit = self._o.degraded_latency
        if elapsed > limit and not failed:
            verdicts[Capability.READ_RANDOM] = Verdict.fail(
                f"degraded: probe took {elapsed:.1f} s > {limit:g} s"
            )
        verdicts.setdefault(Capability.READ_RANDOM, Verdict.ok())
        return verdicts

    async def _list_one(self) -> None:
        """One page of at most one name: needs only list permission (a container SAS has no
        right to the container's properties)."""
        pages: Any = self._container.list_blobs(
            name_starts_with=self._prefix, results_per_page=1
        ).by_page()
        async for _ in await anext(pages):
            pass

    async def _step(
        self, operation: str, fn: Callable[[], Awaitable[Any]], *, write: bool = False
    ) -> str | None:
        """Run one probe request once; the failure's text, or None."""
        if self._closed:
            return "the Azure session is closed"
        try:
            await fn()
        except Exception as exc:
            err = self._errors.translate(exc, operation=("put" if write else operation))
            return str(err) if isinstance(err, StoreError) else self._driver.scrub(repr(err))
        return None

    async def _probe_range(self, blob: BlobClient) -> Verdict:
        want = PROBE_BODY[3:9]
        got = b""

        async def get() -> None:
            nonlocal got
            downloader = await blob.download_blob(offset=3, length=len(want))
            got = await downloader.readall()

        failed = await self._step("ranged get", get)
        if failed:
            return Verdict.fail(failed)
        if got != want:
            return Verdict.fail(f"ranged GET returned {len(got)} wrong bytes: ranges not honoured")
        return Verdict.ok()


class AzureReader(DriverReader):
    """A blob read in ranges of :data:`READ_CHUNK` bytes (the SDK pins every range after the
    first to the first answer's ETag). A transient failure resumes from the current position
    with If-Match on that ETag, within the read's one retry budget."""

    def __init__(
        self,
        session: AzureSession,
        key: str,
        blob: BlobClient,
        downloader: Any,
        offset: int,
        budget: Attempts,
    ) -> None:
        props = downloader.properties
        self.size = int(downloader.size)
        self.info = _info(key, props, _total_size(props.content_range))
        self._session = session
        self._key = key
        self._blob = blob
        self._chunks: Any = downloader.chunks()
        self._start = offset
        self._pos = 0
        self._budget = budget
        self._etag: str = props.etag

    async def read_chunk(self) -> bytes:
        while self._chunks is not None and self._pos < self.size:
            try:
                chunk: bytes = await anext(self._chunks)
            except StopAsyncIteration:
                break
            except Exception as exc:
                await self._resume(exc)
                continue
            self._pos += len(chunk)
            return chunk
        return b""

    async def _resume(self, exc: Exception) -> None:
        session = self._session
        self._chunks = None
        if self._budget.left <= 0 or not retryable(exc):
            raise session._errors.translate(exc, key=self._key, operation="get") from exc
        downloader = await session._download(
            self._key,
            self._blob,
            self._start + self._pos,
            self.size - self._pos,
            self._budget,
            etag=self._etag,
        )
        if downloader is None or int(downloader.size) != self.size - self._pos:
            raise StoreError("the blob changed while it was being read", key=self._key)
        self._chunks = downloader.chunks()

    async def aclose(self) -> None:
        # Every range is read whole by the SDK: no response is left open.
        self._chunks = None


# -- helpers ------------------------------------------------------------------------------------


async def _prepend(heads: tuple[bytes, ...], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for head in heads:
        yield head
    async for piece in rest:
        yield piece


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an empty async generator


async def _settle(tasks: set[asyncio.Task[None]], keep: int) -> None:
    """Reap finished tasks (raising the first failure) until at most ``keep`` are running."""
    for task in [t for t in tasks if t.done()]:
        tasks.discard(task)
        task.result()
    while len(tasks) > keep:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            tasks.discard(task)
            task.result()


def _total_size(content_range: str | None) -> int:
    """The blob's full size from ``bytes a-b/total``."""
    if not content_range or "/" not in content_range:
        return 0
    with contextlib.suppress(ValueError):
        return int(content_range.rsplit("/", 1)[1])
    return 0


def _info(key: str, props: Any, size: int) -> ObjectInfo:
    modified = props.last_modified.timestamp() if props.last_modified else None
    return ObjectInfo(key, size, modified, decode_metadata(props.metadata), props.etag)


def encode_metadata(metadata: Metadata) -> str:
    """The user's metadata as one header-safe value: base64 of compact UTF-8 JSON."""
    raw = json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode("ascii")


def decode_metadata(raw: dict[str, str] | None) -> dict[str, Any]:
    """Our metadata value decoded; for blobs written by other tools, their own metadata."""
    if not raw:
        return {}
    encoded = raw.get(META_KEY)
    if encoded is not None:
        try:
            value = json.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            value = None
        if isinstance(value, dict):
            return value
    return {k: v for k, v in raw.items() if k not in (META_KEY, TOKEN_KEY)}
