"""One S3 session: an aiobotocore client bound to the event loop that opened it, and every
operation as the S3 requests it takes.

Every request goes through :meth:`S3Session.call`: the driver's one :class:`RetryPolicy` (a
logical operation shares one attempt budget among its requests) and the driver's one error
table, applied at this edge. Only idempotent steps are retried: GET/HEAD/LIST/DELETE, part
uploads, completion and abort of a multipart upload, and a single PUT, whose body is bytes in
memory. A retried create-only write can meet its own earlier, lost success (412 on the retry):
every put carries a random token in ``x-amz-meta-aiostore-put``, checked before a 412 after a
retry is reported as ``Duplicate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import botocore.exceptions

from ...errors import Duplicate, NotFound, StoreError
from ...sdk import (
    Attempts,
    BytesReader,
    DriverReader,
    DriverSession,
    Metadata,
    ObjectInfo,
    ProbeResult,
)
from ._body import Body
from ._errors import client_error, operation
from ._metadata import META_KEY, TOKEN_KEY, encode_metadata
from ._multipart import put_multipart, reap_stranded
from ._options import CLOSE_ABORT_TIMEOUT, PROBE_AREA
from ._probe import probe
from ._reader import S3Reader, byte_range, info_of

if TYPE_CHECKING:
    from ._driver import S3Driver

__all__ = ["S3Session"]

T = TypeVar("T")


class S3Session(DriverSession):
    """One aiobotocore client, bound to the event loop that opened it."""

    def __init__(self, driver: S3Driver, client: Any, stack: contextlib.AsyncExitStack) -> None:
        self.driver = driver
        self.options = driver.options
        self.store = driver.store
        self.bucket = driver.options.bucket
        self.prefix = driver.prefix
        self.retry = driver.retry
        self.uploads = driver.uploads
        self.scrub = driver.scrub
        self._errors = driver.errors
        self._client = client
        self._stack = stack
        self._loop = asyncio.get_running_loop()
        self._closed = False
        #: Aborts stranded uploads after a successful write (the backend is back).
        self._reaper: asyncio.Task[int] | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<S3Session store={self.store!r} bucket={self.bucket!r} {state}>"

    # -- session state --------------------------------------------------------------------------
    @property
    def is_broken(self) -> bool:
        """True once closed, when its loop is closed, or when asked from another running loop."""
        if self._closed or self._loop.is_closed():
            return True
        try:
            return asyncio.get_running_loop() is not self._loop
        except RuntimeError:
            return False

    async def aclose(self) -> None:
        """Abort the uploads stranded by failed aborts (bounded), then close the client."""
        if self._closed:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            # From another loop the client's connections cannot be closed; they die with it.
            self._closed = True
            return
        try:
            reaper, self._reaper = self._reaper, None
            if reaper is not None and not reaper.done():
                reaper.cancel()
                await asyncio.wait([reaper])
            if self.uploads.stranded():
                with anyio.move_on_after(CLOSE_ABORT_TIMEOUT):
                    await reap_stranded(self, limit=1_000)
        finally:
            self._closed = True
            await self._stack.aclose()

    @property
    def client(self) -> Any:
        if self._closed:
            raise StoreError("the S3 session is closed", store=self.store, session_broken=True)
        return self._client

    def name(self, key: str) -> str:
        """The S3 key of a store key."""
        return self.prefix + key

    # -- requests: retries and the error table ---------------------------------------------------
    async def call(
        self,
        op: str,
        fn: Callable[[], Awaitable[T]],
        *,
        key: str | None,
        write: bool,
        budget: Attempts | None = None,
        retryable: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """``await fn()`` (one S3 request) under the retry policy, charged to ``budget`` (a new
        one when not given); what fails leaves translated."""
        budget = budget if budget is not None else self.retry.attempts()
        what = f"store {self.store!r}: S3 {op}" + (f" {key!r}" if key is not None else "")
        try:
            return await self.retry.call(fn, budget=budget, what=what, retryable=retryable)
        except Exception as exc:
            err = self.fail(exc, op, key=key, write=write, attempts=budget.made)
            if err is exc:
                raise
            raise err from exc

    def fail(
        self, exc: BaseException, op: str, *, key: str | None, write: bool, attempts: int = 1
    ) -> BaseException:
        """The aiostore error for ``exc`` (chained), or ``exc`` when the table has no entry."""
        return self._errors(write).translate(exc, key=key, operation=operation(op, attempts))

    # -- small steps ----------------------------------------------------------------------------
    async def head(
        self, key: str, *, write: bool = False, budget: Attempts | None = None
    ) -> dict[str, Any]:
        head = functools.partial(self.client.head_object, Bucket=self.bucket, Key=self.name(key))
        result: dict[str, Any] = await self.call(
            "HeadObject", head, key=key, write=write, budget=budget
        )
        return result

    async def exists(self, key: str, *, write: bool = False) -> bool:
        try:
            await self.head(key, write=write)
        except NotFound:
            return False
        return True

    async def is_own_write(self, key: str, token: str) -> bool:
        """After a retried write: is the object there the one this put wrote?"""
        try:
            head = await self.head(key, write=True)
        except NotFound:
            return False
        return bool((head.get("Metadata") or {}).get(TOKEN_KEY) == token)

    async def create_bucket(self) -> None:
        """Create the bucket unless it exists (the driver's ``create_bucket`` option)."""
        args: dict[str, Any] = {"Bucket": self.bucket}
        if self.options.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.options.region}

        async def create() -> None:
            try:
                await self.client.create_bucket(**args)
            except botocore.exceptions.ClientError as exc:
                if client_error(exc)[0] != "BucketAlreadyOwnedByYou":
                    raise

        await self.call("CreateBucket", create, key=None, write=True)

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
        token = uuid.uuid4().hex
        meta = {TOKEN_KEY: token}
        if metadata:
            meta[META_KEY] = encode_metadata(metadata, key)
        threshold = self.options.multipart_threshold
        head: list[bytes] = []
        if size is None or size <= threshold:
            # Buffer up to the threshold: a small object goes in one PUT.
            total = 0
            async for chunk in stream:
                head.append(chunk)
                total += len(chunk)
                if total > threshold:
                    break
            else:
                body = head[0] if len(head) == 1 else b"".join(head)
                await self._put_single(key, body, meta, token, overwrite)
                self._written()
                return
        await put_multipart(self, key, head, stream, size, meta, token, overwrite)
        self._written()

    def _written(self) -> None:
        """A write succeeded: the backend takes writes, so abort what stranded meanwhile (in
        the background: the put is done; a busy store may go without probes for long)."""
        if not self.uploads.stranded() or (self._reaper is not None and not self._reaper.done()):
            return
        self._reaper = asyncio.get_running_loop().create_task(reap_stranded(self))
        self._reaper.add_done_callback(_retrieve)

    async def _put_single(
        self, key: str, body: bytes, meta: dict[str, str], token: str, overwrite: bool
    ) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.name(key), "Metadata": meta}
        if not overwrite:
            args["IfNoneMatch"] = "*"
        budget = self.retry.attempts()

        async def put() -> Any:
            # A fresh body per attempt (each reads from the start); see _body for why not bytes.
            return await self.client.put_object(Body=Body(body), **args)

        try:
            await self.call("PutObject", put, key=key, write=True, budget=budget)
        except Duplicate:
            # A 412 after a retry may answer our own first attempt, whose reply was lost.
            if budget.made > 1 and await self.is_own_write(key, token):
                return
            raise

    # -- reads ----------------------------------------------------------------------------------
    async def get(
        self,
        key: str,
        byte_range: str | None,
        *,
        budget: Attempts,
        if_match: str | None = None,
    ) -> dict[str, Any] | None:
        """GetObject; None when the range starts at or beyond the end (416)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.name(key)}
        if byte_range is not None:
            args["Range"] = byte_range
        if if_match is not None:
            args["IfMatch"] = if_match

        async def get() -> dict[str, Any] | None:
            try:
                result: dict[str, Any] = await self.client.get_object(**args)
            except botocore.exceptions.ClientError as exc:
                if client_error(exc)[1] == 416:
                    return None
                raise
            return result

        return await self.call("GetObject", get, key=key, write=False, budget=budget)

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        budget = self.retry.attempts()
        if length != 0:
            response = await self.get(key, byte_range(offset, length), budget=budget)
            if response is not None:
                return S3Reader(self, key, response, offset, budget)
        # Nothing to read (no bytes asked, or the range starts at or past the end): one HEAD
        # describes the object (NotFound for a missing key, like every other read).
        head = await self.head(key, budget=budget)
        return BytesReader(b"", info=info_of(key, head))

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        if length == 0:
            await self.head(key)
            return b""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.name(key)}
        byte_range_ = byte_range(offset, length)
        if byte_range_ is not None:
            args["Range"] = byte_range_

        async def get() -> bytes:
            # Request and body together: a failure while reading the body retries both.
            client = self.client
            read_object = getattr(client, "read_object", None)  # the lean transport
            try:
                if read_object is not None:
                    whole: bytes = await read_object(**args)
                    return whole
                response = await client.get_object(**args)
            except botocore.exceptions.ClientError as exc:
                if client_error(exc)[1] == 416:
                    return b""
                raise
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data

        return await self.call("GetObject", get, key=key, write=False)

    async def stat(self, key: str) -> ObjectInfo:
        return info_of(key, await self.head(key))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        cut = len(self.prefix)
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        while True:
            page = await self.call(
                "ListObjectsV2",
                functools.partial(self.client.list_objects_v2, **args),
                key=None,
                write=False,
            )
            for item in page.get("Contents", ()):
                rel = item["Key"][cut:]
                if rel.startswith(PROBE_AREA):
                    continue
                yield ObjectInfo(
                    rel, int(item["Size"]), item["LastModified"].timestamp(), etag=item.get("ETag")
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            args["ContinuationToken"] = token

    # -- delete ---------------------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        # S3 deletes a missing key silently; the contract wants NotFound, so look first. Two
        # concurrent deletes of one key may both succeed (the HEAD and the DELETE are two steps).
        budget = self.retry.attempts()
        await self.head(key, write=True, budget=budget)
        delete = functools.partial(
            self.client.delete_object, Bucket=self.bucket, Key=self.name(key)
        )
        await self.call("DeleteObject", delete, key=key, write=True, budget=budget)

    # -- probe ----------------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        return await probe(self)


def _retrieve(task: asyncio.Task[int]) -> None:
    if not task.cancelled():
        task.exception()  # reap_stranded logs its failures itself
