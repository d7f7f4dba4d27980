"""S3 driver (aiobotocore): streaming multipart puts, ranged reads, atomic create-only puts.

One aiobotocore client per session, held by an ``AsyncExitStack``; the driver holds
DRIVER_REUSABLE, so the core shares one session (one client, one connection pool) per event loop
and retires it when its loop is closed or another loop asks (:attr:`S3Session.is_broken`).

Retries: botocore's own retries are off (``total_max_attempts=1``) so that ``max_attempts`` is an
exact count of *all* attempts, the first included (botocore's ``max_attempts`` excludes it). Each
step is tried once on the fast path; a transient failure (throttling, 5xx, connection errors,
timeouts) hands it to tenacity for the remaining attempts with full-jitter exponential back-off.
Only idempotent steps are retried that way: GET/HEAD/LIST/DELETE, part uploads, the completion
and abort of a multipart upload, and a single PUT, whose body is always bytes buffered in memory.
``CreateMultipartUpload`` is retried only when the failure proves the request had no effect.

A retried create-only write can meet its own earlier, lost success (412 on the retry, or
``NoSuchUpload`` on a completed upload). Every put therefore carries a random token in
``x-amz-meta-aiostore-put``; after a retry, a 412 is checked against the stored token before it is
reported as ``Duplicate``.

User metadata travels as one header, ``x-amz-meta-aiostore``: base64 of the compact UTF-8 JSON
(S3 metadata must be ASCII; AWS limits user metadata to 2 KB in total, so near the core's 2 KiB
JSON limit AWS answers ``MetadataTooLarge``, raised as ``InvalidMetadata``).

Puts up to ``multipart_threshold`` bytes are buffered and sent with one PUT; larger ones stream
as a multipart upload with at most ``max_concurrency`` parts in flight (memory about
``(max_concurrency + 1) × part_size``), aborted (shielded, bounded) on any failure and on
cancellation. Create-only puts send ``If-None-Match: *`` on the PUT and on the completion, so
S3 decides atomically; a multipart create-only put also looks first (HEAD) to fail early.

Known limits:

- ``delete`` must raise ``NotFound`` for a missing key, and S3 deletes silently: it sends a HEAD
  first, so two concurrent deletes of one key may both succeed.
- A put cancelled while ``CompleteMultipartUpload`` is in flight may still have completed.
- The probe writes under ``<prefix>.aiostore-probe/`` (never on a store configured
  ``read_only``). ``list`` hides that area, so user keys under it are not listed.
- Object operations see a HEAD 404 from a missing bucket as ``NotFound``; the probe reports the
  missing bucket.
- botocore logs signed request headers at DEBUG: while the manager runs (``start`` to
  ``aclose``) a filter on its loggers replaces the credentials with ``***``; a session used
  outside a running manager has no such filter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, Final, Literal, TypeVar

import aiohttp
import anyio
import botocore.exceptions
import botocore.loaders
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from .._redact import install_secret_filter
from .._types import Metadata, ObjectInfo
from ..capabilities.flags import Capability
from ..capabilities.probe import ProbeResult, Verdict
from ..errors import (
    BackendUnavailable,
    BadStoreConfiguration,
    ChecksumMismatch,
    Duplicate,
    InvalidMetadata,
    NotFound,
    OperationTimeout,
    StorageFull,
    StorageWriteDenied,
    StoreError,
)
from .base import BytesReader, Driver, DriverReader, DriverSession, map_os_error

__all__ = ["S3Driver", "S3Options", "S3Reader", "S3Session"]

log = logging.getLogger("aiostore.s3")

T = TypeVar("T")

MiB: Final = 1 << 20
#: S3's limits on multipart uploads.
MIN_PART_SIZE: Final = 5 * MiB
MAX_PART_SIZE: Final = 5 * 1024 * MiB
MAX_PARTS: Final = 10_000
#: Largest single PUT S3 accepts.
MAX_SINGLE_PUT: Final = 5 * 1024 * MiB
#: Bytes asked of the response body per read (aiohttp hands out what it has, up to this).
READ_CHUNK: Final = 1 * MiB
#: Connections per client (aiohttp pool); at least 2 × max_concurrency.
MAX_POOL_CONNECTIONS: Final = 64
#: Bound on aborting a failed or cancelled multipart upload (shielded from cancellation).
ABORT_TIMEOUT: Final = 30.0
#: Back-off between attempts: full jitter, up to ``BACKOFF_BASE * 2**n``, at most ``BACKOFF_MAX``.
BACKOFF_BASE: Final = 0.1
BACKOFF_MAX: Final = 5.0
#: Under the driver prefix: the probe's scratch objects (skipped by ``list``).
PROBE_AREA: Final = ".aiostore-probe/"
PROBE_BODY: Final = b"aiostore probe object\n"
META_KEY: Final = "aiostore"
TOKEN_KEY: Final = "aiostore-put"

_THROTTLED: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
    }
)
_TRANSIENT: Final = _THROTTLED | {
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
}
_NOT_FOUND: Final = frozenset({"NoSuchKey", "NotFound", "404"})
_PRECONDITION: Final = frozenset({"PreconditionFailed", "412"})
_CREDENTIALS: Final = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "RequestTimeTooSkewed",
    }
)
_DENIED: Final = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_FULL: Final = frozenset(
    {"QuotaExceeded", "UserQuotaExceeded", "InsufficientStorage", "XMinioStorageFull"}
)
_TOO_LARGE: Final = frozenset({"EntityTooLarge"})

#: Exceptions of the vendor libraries that the driver translates (anything else is a bug and
#: propagates as it is).
_VENDOR: Final = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
                  aiohttp.ClientError, OSError)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class S3Options:
    """Options of the ``s3`` driver (see CONTRACT.md section 5)."""

    #: The bucket (required).
    bucket: str
    #: Key prefix inside the bucket; a trailing ``/`` is added when missing.
    prefix: str = ""
    #: Endpoint of an S3-compatible server (``http://127.0.0.1:9000``); AWS when unset.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    #: Static credentials; when unset, botocore's default credential chain is used.
    access_key: str | None = dataclasses.field(default=None, repr=False, metadata={"secret": True})
    secret_key: str | None = dataclasses.field(default=None, repr=False, metadata={"secret": True})
    session_token: str | None = dataclasses.field(
        default=None, repr=False, metadata={"secret": True}
    )
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: Create the bucket at start-up when it does not exist.
    create_bucket: bool = False
    #: Objects larger than this are uploaded in parts; smaller ones with one PUT.
    multipart_threshold: int = 8 * MiB
    #: Part size (≥ 5 MiB; grown automatically when a known size needs more than 10,000 parts).
    part_size: int = 8 * MiB
    #: Parts in flight per multipart upload; memory is about (max_concurrency + 1) × part_size.
    max_concurrency: int = 4
    connect_timeout: float = 10.0
    #: Seconds without any byte from the server before a request fails (per socket read).
    read_timeout: float = 60.0
    #: Total attempts of a retryable step, the first included (botocore's own retries are off).
    max_attempts: int = 3
    #: Let the probe write, range-read and delete a tiny object under ``<prefix>.aiostore-probe/``.
    probe_write: bool = True
    #: A probe slower than this (seconds) revokes READ_RANDOM ("degraded"); None disables.
    degraded_latency: float | None = 1.0

    def __post_init__(self) -> None:
        if not self.bucket or "/" in self.bucket:
            raise ValueError(f"bucket must be a bucket name, not {self.bucket!r}")
        if self.prefix.startswith("/"):
            raise ValueError("prefix must not start with '/'")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                f"endpoint_url must be an http:// or https:// URL, not {self.endpoint_url!r}"
            )
        if not self.region:
            raise ValueError("region must not be empty")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key must be given together (or neither)")
        if self.session_token is not None and self.access_key is None:
            raise ValueError("session_token needs access_key and secret_key")
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ValueError(
                f"part_size must be between 5 MiB ({MIN_PART_SIZE}) and 5 GiB, not {self.part_size}"
            )
        if not 0 <= self.multipart_threshold <= MAX_SINGLE_PUT:
            raise ValueError(
                f"multipart_threshold must be between 0 and 5 GiB, not {self.multipart_threshold}"
            )
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be ≥ 1, not {self.max_concurrency}")
        if self.max_attempts < 1:
            raise ValueError(
                f"max_attempts must be ≥ 1 (it counts the first attempt), not {self.max_attempts}"
            )
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.degraded_latency is not None and not self.degraded_latency > 0:
            raise ValueError(
                f"degraded_latency must be positive seconds, not {self.degraded_latency!r}"
            )


class S3Driver(Driver[S3Options]):
    """Objects in an S3 bucket (AWS or any S3-compatible server), through aiobotocore.

    Native READ_RANDOM | WRITE_ACCESS | DRIVER_REUSABLE: ranged GETs give offset and chunk
    reads; objects cannot be patched in place.
    """

    name: ClassVar[str] = "s3"
    schemes: ClassVar[tuple[str, ...]] = ("s3",)
    native_capabilities: ClassVar[Capability] = (
        Capability.READ_RANDOM | Capability.WRITE_ACCESS | Capability.DRIVER_REUSABLE
    )
    Options: ClassVar[type[S3Options]] = S3Options
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: S3Options) -> None:
        super().__init__(store, options)
        prefix = options.prefix
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        # Bytes and file inputs arrive in part-sized chunks: a part is then one chunk, no copy.
        self.chunk_size = options.part_size
        # One botocore session per event loop (its credential refresh locks are loop-bound);
        # all of them share one loader of parsed service models (_data_loader).
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AioSession] = (
            weakref.WeakKeyDictionary()
        )
        o = options
        self._config = AioConfig(
            region_name=o.region,
            signature_version="s3v4",
            s3={"addressing_style": o.addressing_style},
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(MAX_POOL_CONNECTIONS, 2 * o.max_concurrency),
        )
        self._remove_filter: Callable[[], None] | None = None
        self._secrets = tuple(
            s for s in (o.access_key, o.secret_key, o.session_token) if s and len(s) >= 4
        )

    def location_prefix(self) -> str:
        return f"s3://{self.options.bucket}/{self.prefix}"

    def scrub(self, text: str) -> str:
        """``text`` with any credential replaced by ``***`` (for messages and logs)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _aio_session(self) -> AioSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            session = self._sessions[loop] = AioSession()
            session.register_component("data_loader", _data_loader())
        return session

    async def open_session(self) -> S3Session:
        o = self.options
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                self._aio_session().create_client(
                    "s3",
                    region_name=o.region,
                    endpoint_url=o.endpoint_url,
                    aws_access_key_id=o.access_key,
                    aws_secret_access_key=o.secret_key,
                    aws_session_token=o.session_token,
                    config=self._config,
                )
            )
        except BaseException as exc:
            await stack.aclose()
            if isinstance(exc, _VENDOR):
                raise BackendUnavailable(
                    f"cannot create the S3 client: {self.scrub(str(exc))}", store=self.store
                ) from exc
            if isinstance(exc, ValueError):
                raise BadStoreConfiguration(
                    f"cannot create the S3 client: {self.scrub(str(exc))}", store=self.store
                ) from exc
            raise
        return S3Session(self, client, stack, asyncio.get_running_loop())

    async def start(self) -> None:
        """Keep the credentials out of botocore's log records (until :meth:`aclose`); with
        ``create_bucket``, create the bucket unless it exists. Never raises for a backend that
        is merely down: the start-up probe reports it."""
        if self._remove_filter is None:
            o = self.options
            self._remove_filter = install_secret_filter(
                (o.access_key, o.secret_key, o.session_token)
            )
        if not self.options.create_bucket:
            return
        try:
            session = await self.open_session()
        except StoreError as exc:
            log.warning("store %r: cannot create the bucket: %s", self.store, exc)
            return
        try:
            await session.create_bucket()
        except StoreError as exc:
            log.warning("store %r: cannot create the bucket: %s", self.store, exc)
        finally:
            await session.aclose()

    async def aclose(self) -> None:
        remove, self._remove_filter = self._remove_filter, None
        if remove is not None:
            remove()


class S3Session(DriverSession):
    """One aiobotocore client, bound to the event loop that opened it."""

    def __init__(
        self,
        driver: S3Driver,
        client: Any,
        stack: contextlib.AsyncExitStack,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._driver = driver
        self._o = driver.options
        self._bucket = driver.options.bucket
        self._prefix = driver.prefix
        self._client = client
        self._stack = stack
        self._loop = loop
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<S3Session store={self._driver.store!r} bucket={self._bucket!r} {state}>"

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
        if self._closed:
            return
        self._closed = True
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            await self._stack.aclose()
        # From another loop the client's connections cannot be closed; they die with their loop.

    @property
    def client(self) -> Any:
        if self._closed:
            raise StoreError(
                "the S3 session is closed", store=self._driver.store, session_broken=True
            )
        return self._client

    def _name(self, key: str) -> str:
        return self._prefix + key

    # -- retries and error translation -----------------------------------------------------------
    async def _call(
        self,
        op: str,
        fn: Callable[[], Awaitable[T]],
        *,
        key: str | None,
        write: bool,
        retry: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """Run one S3 step: once, then (when ``retry`` says the failure is transient) through
        tenacity for the remaining attempts. Vendor errors leave translated."""
        retry = retry or _transient
        try:
            return await fn()
        except _VENDOR as exc:
            if self._o.max_attempts <= 1 or not retry(exc):
                raise self._error(exc, op, key=key, write=write) from exc
            first: BaseException | None = exc
        attempts = 1

        async def attempt() -> T:
            nonlocal first, attempts
            if first is not None:
                # Replay the failure of the fast path so that tenacity's first back-off follows it.
                exc, first = first, None
                raise exc
            attempts += 1
            return await fn()

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            failure = outcome.exception() if outcome is not None else None
            log.info(
                "store %r: S3 %s%s failed (attempt %d of %d: %s); retrying in %.2f s",
                self._driver.store,
                op,
                f" {key!r}" if key is not None else "",
                state.attempt_number,
                self._o.max_attempts,
                self._driver.scrub(_describe(failure)) if failure else "?",
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._o.max_attempts),
            wait=wait_random_exponential(multiplier=BACKOFF_BASE, max=BACKOFF_MAX),
            retry=retry_if_exception(retry),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except _VENDOR as exc:
            raise self._error(exc, op, key=key, write=write, attempts=attempts) from exc

    def _error(
        self,
        exc: BaseException,
        op: str,
        *,
        key: str | None,
        write: bool,
        attempts: int = 1,
    ) -> StoreError:
        """The contract's error for a vendor exception (the caller chains it)."""
        scrub = self._driver.scrub
        lost = Capability.WRITE_ACCESS if write else Capability.READ_ACCESS
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, botocore.exceptions.ClientError):
            code, status, message = _client_error(exc)
            said = scrub(f"S3 {op} answered {status} {code}{tried}: {message}".rstrip(": "))
            if code == "NoSuchBucket" or (op == "HeadBucket" and status == 404):
                return BackendUnavailable(
                    f"S3 {op}: the bucket {self._bucket!r} does not exist", key=key, revokes=lost
                )
            if code == "NoSuchUpload":
                return StoreError(f"{said} (the multipart upload was aborted elsewhere)", key=key)
            if code in _NOT_FOUND or (status == 404 and not code.startswith("NoSuch")):
                return NotFound("no such object", key=key)
            if code in _PRECONDITION or status == 412:
                if write:
                    return Duplicate("an object with this key exists", key=key)
                return ChecksumMismatch("the object changed while it was being read", key=key)
            if code in _TOO_LARGE:
                # One object too large for the backend: not a sign that the store is full.
                return StorageFull(said, key=key, revokes=Capability.NONE)
            if code in _FULL or status == 507:
                return StorageFull(said, key=key)
            if code == "MetadataTooLarge":
                return InvalidMetadata(said, key=key)
            if code in _CREDENTIALS:
                if write:
                    return StorageWriteDenied(said, key=key)
                return BackendUnavailable(said, key=key, revokes=lost)
            if code in _DENIED or status == 403:
                if write:
                    return StorageWriteDenied(said, key=key)
                # A denied read may concern one object only: no passive revoke.
                return BackendUnavailable(said, key=key)
            if _transient(exc):
                return BackendUnavailable(said, key=key, revokes=lost)
            return StoreError(said, key=key)
        if isinstance(exc, botocore.exceptions.ConnectTimeoutError):
            return BackendUnavailable(
                f"S3 {op}: cannot connect to {self._endpoint()}{tried}: timed out after"
                f" {self._o.connect_timeout:g} s",
                key=key,
                revokes=lost,
            )
        if isinstance(exc, botocore.exceptions.ReadTimeoutError | TimeoutError):
            return OperationTimeout(
                f"S3 {op}: no answer within read_timeout={self._o.read_timeout:g} s{tried}",
                key=key,
                revokes=lost,
            )
        if isinstance(exc, botocore.exceptions.ConnectionError | aiohttp.ClientConnectorError):
            return BackendUnavailable(
                f"S3 {op}: cannot connect to {self._endpoint()}{tried}: {scrub(_cause(exc))}",
                key=key,
                revokes=lost,
            )
        if isinstance(
            exc,
            botocore.exceptions.HTTPClientError
            | botocore.exceptions.IncompleteReadError
            | aiohttp.ClientError,
        ):
            return BackendUnavailable(
                f"S3 {op}: connection failed{tried}: {scrub(_cause(exc))}",
                key=key,
                revokes=lost,
            )
        if isinstance(exc, botocore.exceptions.FlexibleChecksumError):
            return ChecksumMismatch(f"S3 {op}: {scrub(str(exc))}", key=key)
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError
            | botocore.exceptions.PartialCredentialsError
            | botocore.exceptions.CredentialRetrievalError,
        ):
            return BackendUnavailable(
                f"S3 {op}: no usable AWS credentials: {scrub(str(exc))}", key=key, revokes=lost
            )
        if isinstance(exc, OSError):
            return map_os_error(exc, key=key, write=write, what=f"S3 {op}")
        return StoreError(f"S3 {op} failed: {scrub(_describe(exc))}", key=key)

    def _endpoint(self) -> str:
        return self._o.endpoint_url or f"S3 in {self._o.region}"

    # -- small steps ----------------------------------------------------------------------------
    async def _head(self, key: str, *, write: bool = False) -> dict[str, Any]:
        head = functools.partial(self.client.head_object, Bucket=self._bucket, Key=self._name(key))
        result: dict[str, Any] = await self._call("HeadObject", head, key=key, write=write)
        return result

    async def _exists(self, key: str, *, write: bool = False) -> bool:
        try:
            await self._head(key, write=write)
        except NotFound:
            return False
        return True

    async def _is_own_write(self, key: str, token: str) -> bool:
        """After a retried write: is the object there the one this put wrote?"""
        try:
            head = await self._head(key, write=True)
        except NotFound:
            return False
        return bool((head.get("Metadata") or {}).get(TOKEN_KEY) == token)

    async def create_bucket(self) -> None:
        """Create the bucket unless it exists (the driver's ``create_bucket`` option)."""
        args: dict[str, Any] = {"Bucket": self._bucket}
        if self._o.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self._o.region}

        async def create() -> None:
            try:
                await self.client.create_bucket(**args)
            except botocore.exceptions.ClientError as exc:
                if _client_error(exc)[0] != "BucketAlreadyOwnedByYou":
                    raise

        await self._call("CreateBucket", create, key=None, write=True)

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
            meta[META_KEY] = _encode_metadata(metadata)
        threshold = self._o.multipart_threshold
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
                return
        await self._put_multipart(key, head, stream, size, meta, token, overwrite)

    async def _put_single(
        self, key: str, body: bytes, meta: dict[str, str], token: str, overwrite: bool
    ) -> None:
        args: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._name(key),
            "Body": body,
            "Metadata": meta,
        }
        if not overwrite:
            args["IfNoneMatch"] = "*"
        calls = 0

        async def put() -> None:
            nonlocal calls
            calls += 1
            await self.client.put_object(**args)

        try:
            await self._call("PutObject", put, key=key, write=True)
        except Duplicate:
            # A 412 after a retry may answer our own first attempt, whose reply was lost.
            if calls > 1 and await self._is_own_write(key, token):
                return
            raise

    async def _put_multipart(
        self,
        key: str,
        head: list[bytes],
        stream: AsyncIterator[bytes],
        size: int | None,
        meta: dict[str, str],
        token: str,
        overwrite: bool,
    ) -> None:
        client = self.client
        name = self._name(key)
        part_size = self._o.part_size
        if size is not None and size > part_size * MAX_PARTS:
            part_size = -(-size // MAX_PARTS)
            if part_size > MAX_PART_SIZE:
                raise StorageFull(
                    f"{size} bytes exceed S3's largest object (10,000 parts of 5 GiB)",
                    key=key,
                    revokes=Capability.NONE,
                )
        if not overwrite and await self._exists(key, write=True):
            # Fail early instead of after the upload; the conditional completion stays the
            # atomic check.
            raise Duplicate("an object with this key exists", key=key)
        etags: dict[int, str] = {}
        inflight: set[asyncio.Task[None]] = set()
        create = asyncio.ensure_future(
            self._call(
                "CreateMultipartUpload",
                functools.partial(
                    client.create_multipart_upload, Bucket=self._bucket, Key=name, Metadata=meta
                ),
                key=key,
                write=True,
                retry=_unsent,
            )
        )
        try:
            created = await asyncio.shield(create)
        except asyncio.CancelledError:
            # The upload may exist already: learn its id (shielded, bounded) and abort it.
            orphan: str | None = None
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(ABORT_TIMEOUT),
                contextlib.suppress(StoreError),
            ):
                orphan = (await create)["UploadId"]
            create.cancel()
            if orphan is not None:
                await self._abort(key, orphan, inflight)
            raise
        upload_id: str = created["UploadId"]
        limit = self._o.max_concurrency

        async def upload(number: int, data: bytes) -> None:
            part = functools.partial(
                client.upload_part,
                Bucket=self._bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )
            result = await self._call("UploadPart", part, key=key, write=True)
            etags[number] = result["ETag"]

        number = 0

        async def submit(data: bytes) -> None:
            nonlocal number
            number += 1
            if number > MAX_PARTS:
                raise StorageFull(
                    f"the object needs more than {MAX_PARTS:,} parts of {part_size} bytes: raise"
                    " part_size or give the size",
                    key=key,
                    revokes=Capability.NONE,
                )
            # At most `limit` parts in flight, plus the one being filled: bounded memory.
            await _settle(inflight, limit - 1)
            inflight.add(asyncio.create_task(upload(number, data)))

        parts = _PartBuffer(part_size)

        async def feed(chunk: bytes) -> None:
            # A function, so that no local keeps a submitted part alive while the next fills.
            for data in parts.add(chunk):
                await submit(data)

        try:
            while head:
                await feed(head.pop(0))
            async for chunk in stream:
                await feed(chunk)
            if parts.filled or number == 0:
                await submit(parts.take())
            await _settle(inflight, 0)
            await self._complete(key, upload_id, etags, token, overwrite)
        except BaseException:
            await self._abort(key, upload_id, inflight)
            raise

    async def _complete(
        self, key: str, upload_id: str, etags: dict[int, str], token: str, overwrite: bool
    ) -> None:
        args: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._name(key),
            "UploadId": upload_id,
            "MultipartUpload": {
                "Parts": [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]
            },
        }
        if not overwrite:
            args["IfNoneMatch"] = "*"
        calls = 0

        async def complete() -> None:
            nonlocal calls
            calls += 1
            await self.client.complete_multipart_upload(**args)

        try:
            await self._call("CompleteMultipartUpload", complete, key=key, write=True)
        except StoreError as exc:
            # A retry may meet our own completion: 412, or the upload is gone (NoSuchUpload).
            if (
                calls > 1
                and isinstance(exc.__cause__, botocore.exceptions.ClientError)
                and _client_error(exc.__cause__)[0] in {"PreconditionFailed", "NoSuchUpload"}
                and await self._is_own_write(key, token)
            ):
                return
            raise

    async def _abort(self, key: str, upload_id: str, inflight: set[asyncio.Task[None]]) -> None:
        """Cancel the part uploads and abort the upload: shielded, bounded, never raising."""
        for task in inflight:
            task.cancel()
        with anyio.CancelScope(shield=True):
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            abort = functools.partial(
                self.client.abort_multipart_upload,
                Bucket=self._bucket,
                Key=self._name(key),
                UploadId=upload_id,
            )
            with anyio.move_on_after(ABORT_TIMEOUT) as scope:
                try:
                    await self._call("AbortMultipartUpload", abort, key=key, write=True)
                except StoreError as exc:
                    if not isinstance(exc.__cause__, botocore.exceptions.ClientError) or (
                        _client_error(exc.__cause__)[0] != "NoSuchUpload"
                    ):
                        log.warning(
                            "store %r: could not abort multipart upload %s of %r: %s",
                            self._driver.store,
                            upload_id,
                            key,
                            exc,
                        )
            if scope.cancelled_caught:
                log.warning(
                    "store %r: aborting multipart upload %s of %r timed out after %g s",
                    self._driver.store,
                    upload_id,
                    key,
                    ABORT_TIMEOUT,
                )

    # -- reads ----------------------------------------------------------------------------------
    async def _get(
        self, key: str, byte_range: str | None, if_match: str | None = None
    ) -> dict[str, Any] | None:
        """GetObject; None when the range starts at or beyond the end (416)."""
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": self._name(key)}
        if byte_range is not None:
            args["Range"] = byte_range
        if if_match is not None:
            args["IfMatch"] = if_match

        async def get() -> dict[str, Any] | None:
            try:
                result: dict[str, Any] = await self.client.get_object(**args)
            except botocore.exceptions.ClientError as exc:
                if _client_error(exc)[1] == 416:
                    return None
                raise
            return result

        return await self._call("GetObject", get, key=key, write=False)

    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        if length == 0:
            await self._head(key)  # NotFound for a missing key, like every other read
            return BytesReader(b"")
        response = await self._get(key, _byte_range(offset, length))
        if response is None:
            return BytesReader(b"")
        return S3Reader(self, key, response, offset)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        if length == 0:
            await self._head(key)
            return b""
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": self._name(key)}
        byte_range = _byte_range(offset, length)
        if byte_range is not None:
            args["Range"] = byte_range

        async def get() -> bytes:
            # Request and body together: a failure while reading the body retries both.
            try:
                response = await self.client.get_object(**args)
            except botocore.exceptions.ClientError as exc:
                if _client_error(exc)[1] == 416:
                    return b""
                raise
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data

        return await self._call("GetObject", get, key=key, write=False)

    async def stat(self, key: str) -> ObjectInfo:
        head = await self._head(key)
        return ObjectInfo(
            key,
            int(head["ContentLength"]),
            head["LastModified"].timestamp(),
            _decode_metadata(head.get("Metadata")),
        )

    async def exists(self, key: str) -> bool:
        return await self._exists(key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        cut = len(self._prefix)
        args: dict[str, Any] = {"Bucket": self._bucket, "Prefix": self._prefix + prefix}
        while True:
            page = await self._call(
                "ListObjectsV2",
                functools.partial(self.client.list_objects_v2, **args),
                key=None,
                write=False,
            )
            for item in page.get("Contents", ()):
                rel = item["Key"][cut:]
                if rel.startswith(PROBE_AREA):
                    continue
                yield ObjectInfo(rel, int(item["Size"]), item["LastModified"].timestamp())
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            args["ContinuationToken"] = token

    # -- delete ---------------------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        # S3 deletes a missing key silently; the contract wants NotFound, so look first. Two
        # concurrent deletes of one key may both succeed (the HEAD and the DELETE are two steps).
        await self._head(key, write=True)
        delete = functools.partial(
            self.client.delete_object, Bucket=self._bucket, Key=self._name(key)
        )
        await self._call("DeleteObject", delete, key=key, write=True)

    # -- probe ----------------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        """HeadBucket (READ_ACCESS); with ``probe_write`` a put, a ranged get and a delete of a
        tiny object (WRITE_ACCESS, READ_RANDOM), without it WRITE_ACCESS follows HeadBucket.
        One attempt each: the probe reports health as it is. A probe slower than
        ``degraded_latency`` revokes READ_RANDOM."""
        started = time.monotonic()
        verdicts: dict[Capability, Verdict] = {}
        client = self.client

        async def step(op: str, fn: Callable[[], Awaitable[Any]], write: bool) -> str | None:
            try:
                await fn()
            except _VENDOR as exc:
                return self._error(exc, op, key=None, write=write).detail
            return None

        failed = await step(
            "HeadBucket", functools.partial(client.head_bucket, Bucket=self._bucket), False
        )
        verdicts[Capability.READ_ACCESS] = Verdict.fail(failed) if failed else Verdict.ok()
        if failed:
            verdicts[Capability.READ_RANDOM] = Verdict.fail(failed)
        if not self._driver.probe_writes:
            pass  # configured read-only: never write, and WRITE_ACCESS is not ours to judge
        elif self._o.probe_write:
            name = f"{self._prefix}{PROBE_AREA}{uuid.uuid4().hex}"
            failed_write = await step(
                "PutObject",
                functools.partial(
                    client.put_object, Bucket=self._bucket, Key=name, Body=PROBE_BODY
                ),
                True,
            )
            if failed_write is None:
                if Capability.READ_RANDOM not in verdicts:
                    verdicts[Capability.READ_RANDOM] = await self._probe_range(name)
                failed_write = await step(
                    "DeleteObject",
                    functools.partial(client.delete_object, Bucket=self._bucket, Key=name),
                    True,
                )
            verdicts[Capability.WRITE_ACCESS] = (
                Verdict.fail(failed_write) if failed_write else Verdict.ok()
            )
        else:
            # Not written to: writes are as healthy as the bucket is reachable (so that a
            # WRITE_ACCESS revoked by a failed put comes back).
            verdicts[Capability.WRITE_ACCESS] = (
                Verdict.fail(failed) if failed else Verdict.ok("not written (probe_write = false)")
            )
        elapsed = time.monotonic() - started
        limit = self._o.degraded_latency
        if limit is not None and elapsed > limit and not failed:
            verdicts[Capability.READ_RANDOM] = Verdict.fail(
                f"degraded: probe took {elapsed:.1f} s > {limit:g} s"
            )
        verdicts.setdefault(Capability.READ_RANDOM, Verdict.ok())
        return verdicts

    async def _probe_range(self, name: str) -> Verdict:
        want = PROBE_BODY[3:9]
        try:
            response = await self.client.get_object(
                Bucket=self._bucket, Key=name, Range=f"bytes=3-{3 + len(want) - 1}"
            )
            async with response["Body"] as body:
                got = await body.read()
        except _VENDOR as exc:
            return Verdict.fail(self._error(exc, "GetObject", key=None, write=False).detail)
        if got != want:
            return Verdict.fail(f"ranged GET returned {len(got)} wrong bytes: ranges not honoured")
        return Verdict.ok()


class S3Reader(DriverReader):
    """The body of one GetObject, read in chunks. A transient failure mid-body resumes with a
    ranged GET from the current position, pinned to the object's ETag (``If-Match``)."""

    def __init__(self, session: S3Session, key: str, response: dict[str, Any], start: int) -> None:
        self._session = session
        self._key = key
        self._body: Any = response["Body"]
        self._etag: str | None = response.get("ETag")
        self._start = start
        self._pos = 0
        self._resumes = 0
        self.size = int(response["ContentLength"])

    async def read_chunk(self) -> bytes:
        while self._body is not None:
            try:
                chunk: bytes = await self._body.read(READ_CHUNK)
            except _VENDOR as exc:
                await self._resume(exc)
                continue
            self._pos += len(chunk)
            return chunk
        return b""

    async def _resume(self, exc: BaseException) -> None:
        session = self._session
        self._close_body()
        attempts = 1 + self._resumes
        if attempts >= session._o.max_attempts or not _transient(exc):
            raise session._error(
                exc, "GetObject", key=self._key, write=False, attempts=attempts
            ) from exc
        self._resumes += 1
        log.info(
            "store %r: S3 GetObject %r broke after %d of %d bytes (%s); resuming",
            session._driver.store,
            self._key,
            self._pos,
            self.size,
            session._driver.scrub(_describe(exc)),
        )
        remaining = self.size - self._pos
        first = self._start + self._pos
        response = await session._get(
            self._key, f"bytes={first}-{first + remaining - 1}", if_match=self._etag
        )
        if response is None or int(response["ContentLength"]) != remaining:
            raise ChecksumMismatch("the object changed while it was being read", key=self._key)
        self._body = response["Body"]

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    async def aclose(self) -> None:
        # Closing an unfinished body drops its connection instead of returning it to the pool.
        self._close_body()


# -- helpers ------------------------------------------------------------------------------------


@functools.cache
def _data_loader() -> Any:
    """botocore's loader of service models, shared by every session: parsing the S3 model costs
    ~70 ms and much garbage, and its result never changes (the cache is read-only)."""
    return botocore.loaders.create_loader()


class _PartBuffer:
    """Cuts a stream of chunks into parts of ``size`` bytes, copying each byte once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pieces: list[memoryview] = []
        self.filled = 0

    def add(self, chunk: bytes) -> list[bytes]:
        """Take ``chunk``; return the parts it completed."""
        full: list[bytes] = []
        view = memoryview(chunk)
        while len(view):
            need = self.size - self.filled
            if len(view) < need:
                self._pieces.append(view)
                self.filled += len(view)
                break
            self._pieces.append(view[:need])
            view = view[need:]
            full.append(self.take())
        return full

    def take(self) -> bytes:
        """Whatever is buffered, as one bytes object (empty when nothing is)."""
        pieces, self._pieces, self.filled = self._pieces, [], 0
        if (
            len(pieces) == 1
            and isinstance(pieces[0].obj, bytes)
            and len(pieces[0]) == len(pieces[0].obj)
        ):
            return pieces[0].obj  # a whole chunk is a whole part: no copy
        return b"".join(pieces)


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


def _byte_range(offset: int, length: int | None) -> str | None:
    if length is None:
        return f"bytes={offset}-" if offset else None
    return f"bytes={offset}-{offset + length - 1}"


def _client_error(exc: botocore.exceptions.ClientError) -> tuple[str, int, str]:
    """(code, HTTP status, message) of a ClientError."""
    response: Mapping[str, Any] = exc.response or {}
    error = response.get("Error") or {}
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    code = str(error.get("Code") or status or "Unknown")
    return code, status, str(error.get("Message") or "")


def _transient(exc: BaseException) -> bool:
    """Throttling, 5xx, connection failures and timeouts: worth another attempt."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status, _ = _client_error(exc)
        return status >= 500 or status == 429 or code in _TRANSIENT
    if isinstance(exc, botocore.exceptions.SSLError):
        return False
    return isinstance(
        exc,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.IncompleteReadError
        | aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | TimeoutError,
    )


def _unsent(exc: BaseException) -> bool:
    """Transient, and proven to have had no effect: the server answered with an error, or no
    connection was made. For steps that must not run twice (CreateMultipartUpload)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return _transient(exc)
    return isinstance(exc, botocore.exceptions.ConnectionError) and not isinstance(
        exc, botocore.exceptions.SSLError
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cause(exc: BaseException) -> str:
    """The low-level reason of a connection failure, without botocore's repetition of the URL:
    "Connection refused", "ServerDisconnectedError: Server disconnected"."""
    inner = (
        getattr(exc, "kwargs", {}).get("error")
        if isinstance(exc, botocore.exceptions.BotoCoreError)
        else None
    )
    if isinstance(inner, BaseException):
        os_error = getattr(inner, "os_error", None)
        if isinstance(os_error, OSError) and os_error.errno:
            return os.strerror(os_error.errno)
        return _describe(inner)
    return _describe(exc)


def _encode_metadata(metadata: Metadata) -> str:
    raw = json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode("ascii")


def _decode_metadata(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """Our metadata header decoded; for objects written by other tools, their own metadata."""
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
    return {k: v for k, v in raw.items() if k != TOKEN_KEY}
