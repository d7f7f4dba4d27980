"""Read-only HTTP(S) driver (aiohttp): any web server that serves files under one base URL.

Objects are ``base_url + quote(key)``. Whether the server honours ``Range`` is discovered at run
time: the probe sends ``Range: bytes=0-0`` to ``probe_path`` (206 → READ_RANDOM healthy, 200 →
"server ignores Range"), and a read that asked for a range but got the whole object (200) raises
``StoreRandomGetNotSupported`` with ``revokes=READ_RANDOM`` instead of returning wrong bytes.

The package, one concern per module: ``_options`` (the validated options), ``_session`` (the
driver, requests and redirects, the probe, open/stat), ``_reader`` (one GET's body, resumed
reads, what an answer's headers say about the object), ``_errors`` (the one error table).

Decisions worth knowing:

- One ``aiohttp.ClientSession`` per event loop (DRIVER_REUSABLE): the core shares one driver
  session per loop, and each driver session owns one ClientSession.
- Bytes are the server's bytes: ``Accept-Encoding: identity`` and no automatic decompression, so a
  server that would gzip (or pick a ``.gz`` sibling) cannot change what a read returns or where a
  range starts.
- Redirects are followed by hand: only to http/https on base_url's own origin (scheme, host,
  port), at most ``max_redirects``. No request ever goes to another host.
- ``read_timeout`` bounds the wait for a response's headers as a *deadline* (so a server that
  trickles its headers byte by byte cannot hold a read forever) and a stalled body as an *idle*
  time. An overall deadline on a large body is the caller's scope (``asyncio.timeout``).
- One read = one version: a reader's ``info`` (full size, Last-Modified, ETag, metadata sent as
  ``X-Aiostore-Meta``) comes from its GET answer. A body that breaks off is resumed from where it
  stopped with ``If-Match``/``If-Range`` on that answer's strong ETag; another version (412, a
  different ETag or size) fails the read with ``ChecksumMismatch`` instead of splicing. Without a
  strong ETag a broken body is not resumed.
- Retries: connection errors, broken bodies and 5xx/429 answers are retried (bounded, jittered,
  ``RetryPolicy``); one logical operation — a read with all its resumes, a stat — makes at most
  :data:`ATTEMPTS` requests.
"""

from __future__ import annotations

from ._options import HTTPOptions as HTTPOptions
from ._reader import HTTPReader as HTTPReader
from ._session import ATTEMPTS as ATTEMPTS
from ._session import HTTPDriver as HTTPDriver
from ._session import HTTPSession as HTTPSession

__all__ = ["ATTEMPTS", "HTTPDriver", "HTTPOptions", "HTTPReader", "HTTPSession"]
