"""Multipart uploads: parts cut from the put stream, a bounded number in flight, and an abort
that happens whatever cancels the put.

- **Memory**: at most ``max_concurrency`` parts are in flight and one more is being filled, and
  nothing copies a part whole: a part is made of the source's own ``bytes`` chunks (or slices of
  them), only chunks under 64 KiB (or mutable ones) are copied, into blocks of up to 1 MiB
  (:class:`PartBuffer`); a part is sent as a :class:`~._body.Body` that botocore reads in
  bounded chunks and aiohttp writes in slices. Peak growth is about
  ``(max_concurrency + 2) × part_size``: 48 MiB with the defaults (8 MiB, 4), for a 256 MiB and
  a 2 GiB put alike (``python -m benchmarks.rss_s3``).
- **Nothing left behind**: any failure or cancellation (``task.cancel()`` once or repeatedly,
  ``asyncio.timeout``, anyio scopes, task groups) cancels the part uploads and aborts the upload
  inside :func:`~aiostore.sdk.shielded`, which holds against native cancellation. A cancellation
  that arrives while ``CreateMultipartUpload`` is answered waits (bounded) for the upload id and
  aborts that upload.
- **Aborts that fail** (the backend is unreachable) are not forgotten: the driver's
  :class:`UploadLedger` keeps every upload it started until it is completed or aborted, and the
  ones whose abort failed are aborted later — after the next successful probe or write (a busy
  store may go without probes), and when a session or the driver closes.
- **Retries**: each part, the creation, the completion and the abort has its own attempt budget.
  ``CreateMultipartUpload`` is retried only when the failure proves it had no effect. A retried
  conditional completion that meets its own earlier success (412, or ``NoSuchUpload``) checks the
  put's token before it reports ``Duplicate``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import anyio

from ...errors import Duplicate, StorageFull, StoreError
from ...sdk import Capability, shielded
from . import _options
from ._body import Body, Buffer, Data
from ._errors import error_code, unsent
from ._options import ABORT_TIMEOUT, MAX_PART_SIZE

if TYPE_CHECKING:
    from ._session import S3Session

__all__ = ["PartBuffer", "Upload", "UploadLedger", "put_multipart", "reap_stranded"]

log = logging.getLogger("aiostore.s3")

#: Stranded uploads aborted per probe (each is one request).
REAP_PER_PROBE: Final = 16


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload this driver started."""

    upload_id: str
    name: str  # the S3 key (prefix included)
    key: str  # the store's key


class UploadLedger:
    """The multipart uploads a driver started and has not finished (completed or aborted), and
    among them the *stranded* ones: their abort failed, so they wait for a later one."""

    def __init__(self) -> None:
        self._open: dict[str, Upload] = {}
        self._stranded: dict[str, Upload] = {}

    def started(self, upload: Upload) -> None:
        self._open[upload.upload_id] = upload

    def finished(self, upload_id: str) -> None:
        self._open.pop(upload_id, None)
        self._stranded.pop(upload_id, None)

    def strand(self, upload_id: str) -> None:
        upload = self._open.pop(upload_id, None)
        if upload is not None:
            self._stranded[upload_id] = upload

    def open(self) -> list[Upload]:
        """Uploads in progress (not stranded)."""
        return list(self._open.values())

    def stranded(self) -> list[Upload]:
        return list(self._stranded.values())


#: A part: a chunk of the source as it is, a slice of one, or a sequence of such pieces (see
#: :class:`PartBuffer`).
Part: TypeAlias = Data

#: ``bytes`` pieces from this size are kept by reference, smaller ones are copied into blocks.
KEEP: Final = 64 * 1024
#: Size of the blocks small pieces are copied into (at most what is left of the part).
BLOCK: Final = 1 << 20


class PartBuffer:
    """Cuts a stream of chunks into parts of ``size`` bytes, without copying large chunks.

    A part is a sequence of pieces: ``bytes`` chunks (immutable) of at least :data:`KEEP`
    bytes, or slices of them, are kept as they are; smaller or mutable chunks are copied into
    blocks of up to :data:`BLOCK` bytes. A part therefore holds about ``size`` bytes of the
    source (plus what is left of a chunk that straddles two parts), whatever the chunking, and
    a multipart put copies nothing when the source hands out ``bytes`` of ≥ 64 KiB.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = 0
        self._pieces: list[Buffer] = []
        self._block: bytearray | None = None
        self._used = 0

    def add(self, chunk: Buffer) -> list[Part]:
        """Take ``chunk``; return the parts it completed."""
        full: list[Part] = []
        view = memoryview(chunk).cast("B")
        keep = isinstance(chunk, bytes)
        size = self.size
        while len(view):
            n = min(size - self.filled, len(view))
            if keep and (n >= KEEP or n == size):
                self._close_block()
                # A chunk that is exactly one part is the part itself.
                self._pieces.append(chunk if n == len(chunk) else view[:n])
                self.filled += n
            else:
                self._copy(view[:n])
            view = view[n:]
            if self.filled == size:
                full.append(self.take())
        return full

    def _copy(self, piece: memoryview) -> None:
        while len(piece):
            if self._block is None:
                self._block = bytearray(min(BLOCK, self.size - self.filled))
                self._used = 0
            n = min(len(self._block) - self._used, len(piece))
            self._block[self._used : self._used + n] = piece[:n]
            self._used += n
            self.filled += n
            piece = piece[n:]
            if self._used == len(self._block):
                self._close_block()

    def _close_block(self) -> None:
        block, self._block = self._block, None
        if block is not None and self._used:
            self._pieces.append(
                block if self._used == len(block) else memoryview(block)[: self._used]
            )

    def take(self) -> Part:
        """Whatever is buffered, as one part (empty when nothing is)."""
        self._close_block()
        pieces, self._pieces, self.filled = self._pieces, [], 0
        if not pieces:
            return b""
        return pieces[0] if len(pieces) == 1 else tuple(pieces)


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


def _part_size(key: str, size: int | None, part_size: int) -> int:
    """The configured part size, grown so that a known ``size`` fits in S3's part limit."""
    if size is not None and size > part_size * _options.MAX_PARTS:
        part_size = -(-size // _options.MAX_PARTS)
        if part_size > MAX_PART_SIZE:
            raise StorageFull(
                f"{size} bytes exceed S3's largest object (10,000 parts of 5 GiB)",
                key=key,
                revokes=Capability.NONE,
            )
    return part_size


async def put_multipart(
    session: S3Session,
    key: str,
    head: list[bytes],
    stream: AsyncIterator[bytes],
    size: int | None,
    meta: dict[str, str],
    token: str,
    overwrite: bool,
) -> None:
    """Upload ``head`` then the rest of ``stream`` as the parts of one multipart upload."""
    part_size = _part_size(key, size, session.options.part_size)
    if not overwrite and await session.exists(key, write=True):
        # Fail early instead of after the upload; the conditional completion stays the atomic
        # check.
        raise Duplicate("an object with this key exists", key=key)
    upload = await _create(session, key, meta)
    inflight: set[asyncio.Task[None]] = set()
    #: What the completion lists for each part: its ETag, and its checksum when the
    #: transport sent one (the lean transport's SHA-256, see _lean).
    etags: dict[int, dict[str, Any]] = {}
    limit = session.options.max_concurrency
    client = session.client

    async def send(number: int, data: Part) -> None:
        async def part() -> Any:
            return await client.upload_part(
                Bucket=session.bucket,
                Key=upload.name,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=Body(data),  # a fresh one per attempt: each reads from the start
            )

        result = await session.call("UploadPart", part, key=key, write=True)
        done = {"ETag": result["ETag"], "PartNumber": number}
        if result.get("ChecksumSHA256"):
            done["ChecksumSHA256"] = result["ChecksumSHA256"]
        etags[number] = done

    number = 0

    async def submit(data: Part) -> None:
        nonlocal number
        number += 1
        if number > _options.MAX_PARTS:
            raise StorageFull(
                f"the object needs more than {_options.MAX_PARTS:,} parts of {part_size} bytes:"
                " raise part_size or give the size",
                key=key,
                revokes=Capability.NONE,
            )
        # At most `limit` parts in flight, plus the one being filled: bounded memory.
        await _settle(inflight, limit - 1)
        inflight.add(asyncio.create_task(send(number, data)))

    parts = PartBuffer(part_size)

    async def feed(chunk: Buffer) -> None:
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
        await _complete(session, upload, etags, token, overwrite)
    except BaseException:
        await shielded(_abort(session, upload, inflight))
        raise
    session.uploads.finished(upload.upload_id)


async def _create(session: S3Session, key: str, meta: dict[str, str]) -> Upload:
    name = session.name(key)
    create = asyncio.ensure_future(
        session.call(
            "CreateMultipartUpload",
            functools.partial(
                session.client.create_multipart_upload,
                Bucket=session.bucket,
                Key=name,
                Metadata=meta,
            ),
            key=key,
            write=True,
            retryable=unsent,
        )
    )
    try:
        created = await asyncio.shield(create)
    except asyncio.CancelledError:
        # The upload may exist already: learn its id (bounded) and abort it, whatever else
        # cancels us meanwhile.
        await shielded(_abort_created(session, key, name, create))
        raise
    upload = Upload(created["UploadId"], name, key)
    session.uploads.started(upload)
    return upload


async def _abort_created(
    session: S3Session, key: str, name: str, create: asyncio.Future[Any]
) -> None:
    created = None
    with anyio.move_on_after(ABORT_TIMEOUT):
        try:
            created = await create
        except StoreError:
            return  # nothing was created
    if created is None:
        create.cancel()
        log.warning(
            "store %r: creating a multipart upload of %r was cancelled and its answer did not"
            " come within %g s: an upload may be left",
            session.store,
            key,
            ABORT_TIMEOUT,
        )
        return
    upload = Upload(created["UploadId"], name, key)
    session.uploads.started(upload)
    await _abort(session, upload, set())


async def _complete(
    session: S3Session,
    upload: Upload,
    etags: dict[int, dict[str, Any]],
    token: str,
    overwrite: bool,
) -> None:
    args: dict[str, Any] = {
        "Bucket": session.bucket,
        "Key": upload.name,
        "UploadId": upload.upload_id,
        "MultipartUpload": {"Parts": [etags[n] for n in sorted(etags)]},
    }
    if not overwrite:
        args["IfNoneMatch"] = "*"
    budget = session.retry.attempts()
    complete = functools.partial(session.client.complete_multipart_upload, **args)
    try:
        await session.call(
            "CompleteMultipartUpload", complete, key=upload.key, write=True, budget=budget
        )
    except StoreError as exc:
        # A retry may meet our own completion: 412, or the upload is gone (NoSuchUpload).
        if (
            budget.made > 1
            and error_code(exc) in {"PreconditionFailed", "NoSuchUpload"}
            and await session.is_own_write(upload.key, token)
        ):
            return
        raise


async def _abort(session: S3Session, upload: Upload, inflight: set[asyncio.Task[None]]) -> None:
    """Cancel the part uploads and abort the upload (run it shielded). Bounded, never raising;
    an abort that fails leaves the upload stranded in the ledger, for a later abort."""
    for task in inflight:
        task.cancel()
    if inflight:
        await asyncio.gather(*inflight, return_exceptions=True)
    ledger = session.uploads
    failure = f"timed out after {ABORT_TIMEOUT:g} s"
    with anyio.move_on_after(ABORT_TIMEOUT):
        try:
            abort = functools.partial(
                session.client.abort_multipart_upload,
                Bucket=session.bucket,
                Key=upload.name,
                UploadId=upload.upload_id,
            )
            await session.call("AbortMultipartUpload", abort, key=upload.key, write=True)
        except StoreError as exc:
            if error_code(exc) == "NoSuchUpload":
                ledger.finished(upload.upload_id)
                return
            failure = str(exc)
        else:
            ledger.finished(upload.upload_id)
            return
    ledger.strand(upload.upload_id)
    log.warning(
        "store %r: could not abort multipart upload %s of %r (%s); will retry when the backend"
        " answers again",
        session.store,
        upload.upload_id,
        upload.key,
        failure,
    )


async def reap_stranded(session: S3Session, limit: int = REAP_PER_PROBE) -> int:
    """Abort stranded uploads (one attempt each) until one fails; the number aborted."""
    ledger = session.uploads
    done = 0
    for upload in ledger.stranded()[:limit]:
        try:
            await session.client.abort_multipart_upload(
                Bucket=session.bucket, Key=upload.name, UploadId=upload.upload_id
            )
        except Exception as exc:
            if error_code(exc) != "NoSuchUpload":
                log.debug("store %r: stranded upload %s: %s", session.store, upload.upload_id, exc)
                return done  # still unreachable: later
        ledger.finished(upload.upload_id)
        done += 1
        log.info(
            "store %r: aborted multipart upload %s of %r, stranded earlier",
            session.store,
            upload.upload_id,
            upload.key,
        )
    return done
