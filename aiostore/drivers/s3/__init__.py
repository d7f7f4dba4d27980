"""S3 driver: streaming multipart puts, ranged reads, atomic create-only puts.

Two transports (the ``transport`` option): ``"lean"`` (the default) signs each S3 request with
botocore's SigV4 signer and sends it straight on aiohttp; ``"botocore"`` sends it through
aiobotocore. Both give the session the same client methods, answers and exceptions, so
everything above the transport is shared.

One concern per module:

- ``_options``: :class:`S3Options` and S3's limits (no vendor import).
- ``_driver``: :class:`S3Driver` — what a store's sessions share: the client factory, the one
  retry policy, the one error table and the ledger of multipart uploads. Importing it imports
  no vendor library; building a driver without the ``s3`` extra is a ``BadStoreConfiguration``
  saying ``pip install 'aiostore[s3]'``.
- ``_client``: opens a session's client: a ``_lean.LeanClient``, or an aiobotocore client (one
  botocore session per event loop, one parsed model).
- ``_lean``: the lean transport.
- ``_body``: request bodies botocore reads and aiohttp sends without a whole copy.
- ``_errors``: the error table (S3 error codes, botocore and aiohttp exceptions → aiostore
  errors, with the passive signal each proves) and which failures are retried.
- ``_session``: :class:`S3Session` — every operation as the S3 requests it takes.
- ``_reader``: :class:`S3Reader` — one read is one version: ``info`` from the GET response,
  resumptions pinned with ``If-Match``, one attempt budget per read.
- ``_multipart``: multipart uploads, bounded in memory, aborted under any cancellation; aborts
  that fail are retried later.
- ``_probe``: the probe.
- ``_metadata``: user metadata in one ``x-amz-meta-aiostore`` header.

The driver holds DRIVER_REUSABLE: the core shares one session (one client, one connection pool)
per event loop. Retries: botocore's own are off, so ``max_attempts`` counts every request of a
logical step, the first included (one read, resumptions included, is one step).

User metadata travels as one header, ``x-amz-meta-aiostore``: base64 of the compact UTF-8 JSON
(S3 metadata must be ASCII; AWS limits user metadata to 2 KB in total, so near the core's 2 KiB
JSON limit AWS answers ``MetadataTooLarge``, raised as ``InvalidMetadata``).

Puts up to ``multipart_threshold`` bytes are buffered and sent with one PUT; larger ones stream
as a multipart upload (see ``_multipart``). Create-only puts send ``If-None-Match: *`` on the PUT
and on the completion, so S3 decides atomically; a multipart create-only put also looks first
(HEAD) to fail early.

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

from typing import TYPE_CHECKING, Any

from ._driver import S3Driver as S3Driver
from ._options import PROBE_AREA as PROBE_AREA
from ._options import READ_CHUNK as READ_CHUNK
from ._options import S3Options as S3Options

if TYPE_CHECKING:
    from ._reader import S3Reader as S3Reader
    from ._session import S3Session as S3Session

__all__ = ["PROBE_AREA", "READ_CHUNK", "S3Driver", "S3Options", "S3Reader", "S3Session"]


def __getattr__(name: str) -> Any:
    # The session and reader import aiobotocore: only when asked for.
    if name == "S3Session":
        from ._session import S3Session

        return S3Session
    if name == "S3Reader":
        from ._reader import S3Reader

        return S3Reader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
