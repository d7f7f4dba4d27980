"""The S3 probe: what the bucket can do right now, one attempt per step.

HeadBucket decides READ_ACCESS. With ``probe_write`` a tiny object under
``<prefix>.aiostore-probe/`` is put, range-read and deleted (WRITE_ACCESS, READ_RANDOM); without
it WRITE_ACCESS follows HeadBucket. A store configured read-only is never written to. A probe
slower than ``degraded_latency`` revokes READ_RANDOM. After a probe that reached the bucket,
multipart uploads whose abort failed earlier are aborted (bounded, outside the timing).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from ...errors import StorageFull, StoreError
from ...sdk import Capability, ProbeResult, Verdict
from ._multipart import reap_stranded
from ._options import PROBE_AREA, PROBE_BODY

if TYPE_CHECKING:
    from ._session import S3Session

__all__ = ["probe"]

#: Time a probe may spend aborting stranded uploads.
REAP_TIMEOUT: Final = 2.0


async def _step(
    session: S3Session, op: str, fn: Callable[[], Awaitable[Any]], write: bool
) -> StoreError | None:
    """None when ``fn`` succeeds, else why it failed."""
    try:
        await fn()
    except Exception as exc:
        err = session.fail(exc, op, key=None, write=write)
        if not isinstance(err, StoreError):
            raise
        return err
    return None


def _verdict(err: StoreError | None) -> Verdict:
    if err is None:
        return Verdict.ok()
    if isinstance(err, StorageFull) and err.revokes:
        return Verdict.full(err.detail)
    return Verdict.fail(err.detail)


async def probe(session: S3Session) -> ProbeResult:
    started = time.monotonic()
    verdicts: dict[Capability, Verdict] = {}
    client = session.client
    bucket = session.bucket
    options = session.options

    async def head_bucket() -> None:
        await client.head_bucket(Bucket=bucket)

    failed = await _step(session, "HeadBucket", head_bucket, False)
    verdicts[Capability.READ_ACCESS] = _verdict(failed)
    if failed:
        verdicts[Capability.READ_RANDOM] = Verdict.fail(failed.detail)
    if not session.driver.probe_writes:
        pass  # configured read-only: never write, and WRITE_ACCESS is not ours to judge
    elif options.probe_write:
        name = f"{session.prefix}{PROBE_AREA}{uuid.uuid4().hex}"

        async def put() -> None:
            await client.put_object(Bucket=bucket, Key=name, Body=PROBE_BODY)

        async def delete() -> None:
            await client.delete_object(Bucket=bucket, Key=name)

        failed_write = await _step(session, "PutObject", put, True)
        if failed_write is None:
            if Capability.READ_RANDOM not in verdicts:
                verdicts[Capability.READ_RANDOM] = await _probe_range(session, name)
            failed_write = await _step(session, "DeleteObject", delete, True)
        verdicts[Capability.WRITE_ACCESS] = _verdict(failed_write)
    else:
        # Not written to: writes are as healthy as the bucket is reachable (so that a
        # WRITE_ACCESS revoked by a failed put comes back).
        verdicts[Capability.WRITE_ACCESS] = (
            Verdict.fail(failed.detail)
            if failed
            else Verdict.ok("not written (probe_write = false)")
        )
    elapsed = time.monotonic() - started
    limit = options.degraded_latency
    if limit is not None and elapsed > limit and not failed:
        verdicts[Capability.READ_RANDOM] = Verdict.fail(
            f"degraded: probe took {elapsed:.1f} s > {limit:g} s"
        )
    verdicts.setdefault(Capability.READ_RANDOM, Verdict.ok())
    writes = verdicts.get(Capability.WRITE_ACCESS)
    if not failed and (writes is None or writes.healthy) and session.uploads.stranded():
        with anyio.move_on_after(REAP_TIMEOUT):
            await reap_stranded(session)
    return verdicts


async def _probe_range(session: S3Session, name: str) -> Verdict:
    want = PROBE_BODY[3:9]
    try:
        response = await session.client.get_object(
            Bucket=session.bucket, Key=name, Range=f"bytes=3-{3 + len(want) - 1}"
        )
        async with response["Body"] as body:
            got = await body.read()
    except Exception as exc:
        err = session.fail(exc, "GetObject", key=None, write=False)
        if not isinstance(err, StoreError):
            raise
        return Verdict.fail(err.detail)
    if got != want:
        return Verdict.fail(f"ranged GET returned {len(got)} wrong bytes: ranges not honoured")
    return Verdict.ok()
