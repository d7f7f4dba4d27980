"""Read-only HTTP(S) driver (aiohttp): any web server that serves files under one base URL.

Objects are ``base_url + quote(key)``. Whether the server honours ``Range`` is discovered at run
time: the probe sends ``Range: bytes=0-0`` to ``probe_path`` (206 → READ_RANDOM healthy, 200 →
"server ignores Range"), and a read that asked for a range but got the whole object (200) raises
``StoreRandomGetNotSupported`` with ``revokes=READ_RANDOM`` instead of returning wrong bytes.

Decisions worth knowing:

- One ``aiohttp.ClientSession`` per event loop (DRIVER_REUSABLE): the core's SessionPool shares one
  driver session per loop, and each driver session owns one ClientSession.
- Bytes are the server's bytes: ``Accept-Encoding: identity`` and no automatic decompression, so a
  server that would gzip (or pick a ``.gz`` sibling) cannot change what a read returns or where a
  range starts.
- Redirects are followed by hand: only to http/https on base_url's own origin (scheme, host,
  port), at most ``max_redirects``. No request ever goes to another host.
- ``read_timeout`` bounds the wait for a response's headers as a *deadline* (so a server that
  trickles its headers byte by byte cannot hold a read forever) and a stalled body as an *idle*
  time. An overall deadline on a large body is the caller's scope (``asyncio.timeout``).
- Connection errors and 5xx/429 answers are retried with tenacity (bounded, jittered) for GET/HEAD,
  only before a reader is handed out, i.e. before any body byte is yielded. The first attempt runs
  without tenacity: building a retry controller costs more than a small GET's own client work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import re
import time
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, NoReturn
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from yarl import URL

from .._keys import validate_key
from .._types import Metadata, ObjectInfo
from ..capabilities.flags import Capability
from ..capabilities.probe import ProbeResult, Verdict
from ..errors import (
    BackendUnavailable,
    BadStoreConfiguration,
    CapabilityError,
    InvalidKey,
    MaxRedirectsExceeded,
    NotFound,
    OperationTimeout,
    StoreAddDisabled,
    StoreDeleteNotSupported,
    StoreError,
    StoreGetNotSupported,
    StoreRandomGetNotSupported,
    StoreWriteNotSupported,
)
from .base import Driver, DriverReader, DriverSession, parse_options

__all__ = ["HTTPDriver", "HTTPOptions", "HTTPReader", "HTTPSession"]

#: Attempts (the first included) for idempotent requests that fail with a connection error or a
#: 5xx/429 answer before any byte of a body was handed out.
ATTEMPTS: Final = 3
_WAIT: Final = wait_random_exponential(multiplier=0.05, max=1.0)
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_GONE: Final = frozenset({404, 410})
_CONTENT_RANGE: Final = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.ASCII | re.IGNORECASE)
_UNSATISFIED_RANGE: Final = re.compile(r"bytes\s+\*/(\d+)\s*", re.ASCII | re.IGNORECASE)
#: Headers the driver owns: a configured value would change which bytes a read returns.
_RESERVED_HEADERS: Final = frozenset({"range", "accept-encoding", "content-length"})
_PROBE_RANGE: Final = MappingProxyType({"Range": "bytes=0-0"})
_READ_RANDOM: Final = Capability.READ_RANDOM
_READ_ACCESS: Final = Capability.READ_ACCESS


@dataclasses.dataclass(frozen=True, slots=True)
class HTTPOptions:
    """Options of the ``http`` driver."""

    #: Where the objects are: ``http://`` or ``https://``, no credentials, query or fragment.
    #: Normalized to end with ``/``; object ``k`` is ``base_url + quote(k)``.
    base_url: str
    #: Extra request headers (e.g. ``Authorization``). Treated as secret as a whole: never shown
    #: in reprs, snapshots or errors.
    headers: Mapping[str, str] | None = dataclasses.field(
        default=None, repr=False, metadata={"secret": True}
    )
    #: Seconds to establish a connection.
    connect_timeout: float = 10.0
    #: Seconds a server may take to send a response's headers, and the longest a body may stall.
    read_timeout: float = 30.0
    #: Redirects (same origin only) followed before ``MaxRedirectsExceeded``.
    max_redirects: int = 5
    #: Verify TLS certificates (https).
    verify_tls: bool = True
    #: Object the probe asks ``bytes=0-0`` of, relative to base_url; "" is base_url itself. Name
    #: an object of at least one byte so the probe can tell whether the server honours Range.
    probe_path: str = ""
    #: A probe slower than this (seconds) reports READ_RANDOM unhealthy ("degraded"); None: off.
    degraded_latency: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _normalize_base_url(self.base_url))
        if self.headers is not None:
            object.__setattr__(self, "headers", _validate_headers(self.headers))
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise BadStoreConfiguration(
                    f"must be a positive number, not {value!r}", option=name
                )
        if isinstance(self.max_redirects, bool) or not isinstance(self.max_redirects, int):
            raise BadStoreConfiguration("must be a whole number", option="max_redirects")
        if self.max_redirects < 0:
            raise BadStoreConfiguration("must be ≥ 0", option="max_redirects")
        if self.degraded_latency is not None and not (
            isinstance(self.degraded_latency, int | float) and self.degraded_latency > 0
        ):
            raise BadStoreConfiguration(
                f"must be a positive number or unset, not {self.degraded_latency!r}",
                option="degraded_latency",
            )
        if self.probe_path:
            try:
                validate_key(self.probe_path)
            except InvalidKey as exc:
                raise BadStoreConfiguration(
                    f"must be a path relative to base_url: {exc.detail}", option="probe_path"
                ) from exc


def _normalize_base_url(value: object) -> str:
    def bad(why: str) -> BadStoreConfiguration:
        return BadStoreConfiguration(why, option="base_url")

    if not isinstance(value, str):
        raise bad(f"must be a string, not {type(value).__name__}")
    try:
        url = URL(value)
    except (ValueError, TypeError) as exc:
        raise bad(f"is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise bad(f"must be an http:// or https:// URL, not {url.scheme or 'a relative'!r} one")
    if not url.host:
        raise bad("has no host")
    if url.user is not None or url.password is not None:
        # Credentials in the URL would show in every location and snapshot: use headers.
        raise bad("must not hold credentials; set an Authorization header in 'headers' instead")
    if url.raw_query_string or url.raw_fragment:
        raise bad("must not have a query or fragment")
    text = str(url)
    return text if text.endswith("/") else text + "/"


def _validate_headers(headers: object) -> Mapping[str, str]:
    # Values may be secrets: no message here may show one.
    if not isinstance(headers, Mapping):
        raise BadStoreConfiguration("must be a table of strings", option="headers")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadStoreConfiguration("must be a table of strings", option="headers")
        if not name or any(c in name for c in ":\r\n\0 \t"):
            raise BadStoreConfiguration(f"{name!r} is not a valid header name", option="headers")
        if any(c in value for c in "\r\n\0"):
            raise BadStoreConfiguration(
                f"the value of {name!r} contains a line break or NUL", option="headers"
            )
        if name.lower() in _RESERVED_HEADERS:
            raise BadStoreConfiguration(
                f"{name!r} is set by the driver and cannot be configured", option="headers"
            )
        clean[name] = value
    return MappingProxyType(clean)


class HTTPDriver(Driver[HTTPOptions]):
    """Objects served by a web server under ``base_url``. Native READ_RANDOM | DRIVER_REUSABLE."""

    name: ClassVar[str] = "http"
    schemes: ClassVar[tuple[str, ...]] = ("http", "https")
    native_capabilities: ClassVar[Capability] = Capability.READ_RANDOM | Capability.DRIVER_REUSABLE
    Options: ClassVar[type[HTTPOptions]] = HTTPOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
    )

    def __init__(self, store: str, options: HTTPOptions) -> None:
        super().__init__(store, options)
        self.base = URL(options.base_url, encoded=True)
        path = options.probe_path
        self.probe_url = (
            URL(options.base_url + quote(path, safe="/"), encoded=True) if path else self.base
        )

    @classmethod
    def from_config(cls, store: str, config: Mapping[str, Any]) -> HTTPDriver:
        try:
            return cls(store, parse_options(store, HTTPOptions, config))
        except BadStoreConfiguration as exc:
            raise exc.with_context(store=store) from None

    def location_prefix(self) -> str:
        return self.options.base_url

    async def open_session(self) -> HTTPSession:
        return HTTPSession(self)


class HTTPSession(DriverSession):
    """One ``aiohttp.ClientSession`` on the event loop that opened it; closed by :meth:`aclose`."""

    def __init__(self, driver: HTTPDriver) -> None:
        opts = driver.options
        self._store = driver.store
        self._base = opts.base_url
        self._origin = driver.base.origin()
        self._probe_url = driver.probe_url
        self._max_redirects = opts.max_redirects
        self._degraded = opts.degraded_latency
        # Deadline for connect + response headers (a trickling server cannot stretch it); the
        # ClientTimeout below covers connect and body stalls.
        self._header_deadline = opts.connect_timeout + opts.read_timeout
        self._loop = asyncio.get_running_loop()
        headers = CIMultiDict(opts.headers or {})
        headers["Accept-Encoding"] = "identity"
        self._client = aiohttp.ClientSession(
            # limit=0: the caller bounds concurrency; waiting for a pool slot would eat the
            # header deadline and turn load into spurious timeouts.
            connector=aiohttp.TCPConnector(limit=0, ssl=opts.verify_tls),
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=None,
                sock_connect=opts.connect_timeout,
                sock_read=opts.read_timeout,
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            trust_env=False,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def is_broken(self) -> bool:
        if self._client.closed or self._loop.is_closed():
            return True
        try:
            return asyncio.get_running_loop() is not self._loop
        except RuntimeError:
            return False

    async def aclose(self) -> None:
        if not self._client.closed:
            await self._client.close()

    # -- requests -------------------------------------------------------------------------------
    def _url(self, key: str) -> URL:
        # Keys reaching a session are validated by the facade, but manager.session() hands this
        # object out directly: validate again (cached) so a URL can never leave base_url.
        validate_key(key, self._store)
        return URL(self._base + quote(key, safe="/"), encoded=True)

    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        key: str | None,
        retryable: bool = True,
    ) -> aiohttp.ClientResponse:
        """One request, redirects followed by hand; returns the first non-redirect response.

        Transport failures are translated. With ``retryable``, a 5xx/429 answer raises
        BackendUnavailable (what :meth:`_request` retries); other statuses are the caller's.
        """
        redirects = 0
        while True:
            try:
                async with asyncio.timeout(self._header_deadline):
                    resp = await self._client.request(
                        method, url, headers=headers, allow_redirects=False
                    )
            except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
                raise _transport_error(exc, key, f"{method} {_shown(url)}") from exc
            status = resp.status
            if status not in _REDIRECTS:
                if retryable and (status >= 500 or status == 429):
                    resp.release()
                    # 5xx proves a backend fault (a passive signal); 429 is the server pacing us.
                    raise BackendUnavailable(
                        f"{method} {_shown(url)}: HTTP {status} {resp.reason or ''}".rstrip(),
                        key=key,
                        revokes=_READ_ACCESS if status >= 500 else None,
                    )
                return resp
            resp.release()
            location = resp.headers.get("Location")
            if not location:
                raise StoreError(
                    f"{method} {_shown(url)}: HTTP {resp.status} redirect without a Location",
                    key=key,
                )
            target = self._redirect_target(url, location, key)
            redirects += 1
            if redirects > self._max_redirects:
                raise MaxRedirectsExceeded(
                    f"more than {self._max_redirects} redirects (last to {_shown(target)})",
                    key=key,
                )
            url = target

    def _redirect_target(self, url: URL, location: str, key: str | None) -> URL:
        try:
            target = url.join(URL(location))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"refused a redirect to an invalid URL {location!r}", key=key) from exc
        if target.scheme not in ("http", "https"):
            raise StoreError(
                f"refused a redirect to {target.scheme or 'a relative'!r} URL {location!r}:"
                " only http and https are followed",
                key=key,
            )
        if not target.host or target.origin() != self._origin:
            raise StoreError(
                f"refused a redirect to {_shown(target.origin()) if target.host else location!r}:"
                f" only the configured origin {_shown(self._origin)} is ever contacted",
                key=key,
            )
        return target.with_fragment(None)

    async def _request(
        self, method: str, url: URL, headers: Mapping[str, str] | None, key: str | None
    ) -> aiohttp.ClientResponse:
        """``_exchange`` with bounded, jittered retries of BackendUnavailable (GET/HEAD only)."""
        try:
            return await self._exchange(method, url, headers, key)
        except BackendUnavailable as exc:
            pending: BackendUnavailable | None = exc
        # The first attempt already failed: tenacity counts it, waits, and runs the rest.
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(ATTEMPTS),
            wait=_WAIT,
            retry=retry_if_exception_type(BackendUnavailable),
            reraise=True,
        ):
            with attempt:
                if pending is not None:
                    first, pending = pending, None
                    raise first
                return await self._exchange(method, url, headers, key)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    # -- probe ----------------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        url = self._probe_url
        started = time.monotonic()
        try:
            resp = await self._exchange("GET", url, _PROBE_RANGE, None, retryable=False)
        except StoreError as exc:
            return _both_fail(exc.detail)
        try:
            status = resp.status
            if status >= 500:
                return _both_fail(f"GET {_shown(url)}: HTTP {status} {resp.reason or ''}".rstrip())
            random: Verdict | None
            if status == 206:
                match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if match is None or int(match[1]) != 0:
                    random = Verdict.fail(
                        "server answers Range with a bad Content-Range "
                        f"{resp.headers.get('Content-Range')!r}"
                    )
                else:
                    random = Verdict.ok("server honours Range")
            elif status == 416:
                random = Verdict.ok("server honours Range (probe_path is empty)")
            elif status == 200:
                random = Verdict.fail("server ignores Range")
            else:
                # Reachable, but the probe object gives no evidence about Range either way.
                random = None
        finally:
            resp.close()
        access = Verdict.ok(f"server answers (HTTP {status})")
        elapsed = time.monotonic() - started
        if self._degraded is not None and elapsed > self._degraded:
            random = Verdict.fail(
                f"degraded: the probe took {elapsed:.3f}s (degraded_latency {self._degraded:g}s)"
            )
        if random is None:
            return {_READ_ACCESS: access}
        return {_READ_ACCESS: access, _READ_RANDOM: random}

    # -- reads ----------------------------------------------------------------------------------
    async def open(self, key: str, offset: int, length: int | None) -> HTTPReader:
        url = self._url(key)
        if length == 0:
            # Nothing to fetch; still a read of an object that must exist.
            await self.stat(key)
            return HTTPReader(None, 0, key)
        if offset == 0 and length is None:
            resp = await self._request("GET", url, None, key)
            try:
                return self._whole(resp, key)
            except BaseException:
                resp.close()
                raise
        end = "" if length is None else str(offset + length - 1)
        resp = await self._request("GET", url, {"Range": f"bytes={offset}-{end}"}, key)
        try:
            return self._ranged(resp, key, offset, length)
        except BaseException:
            resp.close()
            raise

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        reader = await self.open(key, offset, length)
        try:
            return await reader.read_all()
        finally:
            await reader.aclose()

    def _whole(self, resp: aiohttp.ClientResponse, key: str) -> HTTPReader:
        status = resp.status
        if status == 200:
            declared = _content_length(resp)
            # No declared length (a chunked answer): the size is unknown until the end (-1).
            return HTTPReader(resp, -1 if declared is None else declared, key)
        raise _status_error(resp, key)

    def _ranged(
        self, resp: aiohttp.ClientResponse, key: str, offset: int, length: int | None
    ) -> HTTPReader:
        status = resp.status
        headers = resp.headers
        if status == 206:
            content_range = headers.get("Content-Range", "")
            match = _CONTENT_RANGE.fullmatch(content_range)
            if match is None:
                raise BackendUnavailable(
                    f"the server answered a range request with Content-Range {content_range!r}"
                    f" ({headers.get('Content-Type', 'no Content-Type')}); expected"
                    f" 'bytes {offset}-…/…'",
                    key=key,
                )
            start, last, total_text = int(match[1]), int(match[2]), match[3]
            if start != offset or last < start:
                raise BackendUnavailable(
                    f"asked for bytes from {offset}, the server sent {content_range!r}", key=key
                )
            size = last - start + 1
            wanted = size if length is None else length
            if total_text != "*":
                # A range that stops short of what was asked while the object goes on would
                # pass for a read past the end: refuse it.
                total = int(total_text)
                expected = min(wanted, total - offset)
                if last >= total or size < expected:
                    raise BackendUnavailable(
                        f"asked for {wanted} bytes from {offset} of a {total}-byte object, the"
                        f" server sent {content_range!r}",
                        key=key,
                    )
            size = min(size, wanted)
            declared = _content_length(resp)
            if declared is not None and declared < size:
                raise BackendUnavailable(
                    f"Content-Range {content_range!r} promises {size} bytes, Content-Length"
                    f" {declared}",
                    key=key,
                )
            return HTTPReader(resp, size, key)
        if status == 200:
            # Taking bytes from the start of a whole-object answer would return wrong bytes.
            err = StoreRandomGetNotSupported(
                f"asked for bytes {offset}-{'' if length is None else offset + length - 1}, the"
                " server answered 200 with the whole object: it ignores Range",
                key=key,
                operation="read",
                required=_READ_RANDOM,
                reason="server ignores Range",
                transient=True,
            )
            err.revokes = _READ_RANDOM
            raise err
        if status == 416:
            match = _UNSATISFIED_RANGE.fullmatch(headers.get("Content-Range", ""))
            if match is not None and int(match[1]) > offset:
                raise BackendUnavailable(
                    f"the server refused bytes from {offset} of a {match[1]}-byte object (416)",
                    key=key,
                )
            resp.release()
            return HTTPReader(None, 0, key)  # offset at or beyond the end
        raise _status_error(resp, key)

    async def stat(self, key: str) -> ObjectInfo:
        resp = await self._request("HEAD", self._url(key), None, key)
        try:
            if resp.status != 200:
                raise _status_error(resp, key)
            size = _content_length(resp)
            if size is None:
                raise StoreError("the server's HEAD answer has no Content-Length", key=key)
            return ObjectInfo(key, size, _http_date(resp.headers.get("Last-Modified")))
        finally:
            resp.release()

    async def exists(self, key: str) -> bool:
        resp = await self._request("HEAD", self._url(key), None, key)
        try:
            if resp.status == 200:
                return True
            if resp.status in _GONE:
                return False
            raise _status_error(resp, key)
        finally:
            resp.release()

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        raise StoreGetNotSupported(
            "listing is not possible over plain HTTP: a web server has no standard way to"
            " enumerate objects",
            operation="list",
            required=_READ_ACCESS,
            reason="HTTP stores cannot list",
            transient=False,
        )

    # -- writes: never (defensive; the check routine refuses them first) ------------------------
    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        _read_only(StoreAddDisabled, "put", key)

    async def write(self, key: str, data: bytes, offset: int) -> int:
        _read_only(StoreWriteNotSupported, "write", key)

    async def delete(self, key: str) -> None:
        _read_only(StoreDeleteNotSupported, "delete", key)


class HTTPReader(DriverReader):
    """A response body, yielded as it arrives, never more than ``size`` bytes.

    ``size`` is -1 when the server declared no length (a chunked whole-object answer).
    """

    __slots__ = ("_content", "_key", "_remaining", "_resp", "size")

    def __init__(self, resp: aiohttp.ClientResponse | None, size: int, key: str) -> None:
        self._resp = resp
        self._content = resp.content if resp is not None else None
        self.size = size
        self._remaining = size  # -1: unknown, read to the end
        self._key = key

    async def read_chunk(self) -> bytes:
        remaining = self._remaining
        content = self._content
        if remaining == 0 or content is None:
            self._finish()
            return b""
        try:
            chunk = await content.readany()
        except (aiohttp.ClientError, OSError) as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self._abort()
            raise
        n = len(chunk)
        if not n:  # the body ended
            if remaining > 0:
                raise self._short(self.size - remaining)
            self._finish()
            return chunk
        if remaining < 0:
            return chunk
        if n >= remaining:
            if n > remaining:
                chunk = chunk[:remaining]  # the server sent more than it declared: drop it
            self._remaining = 0
            self._finish()
            return chunk
        self._remaining = remaining - n
        return chunk

    async def read_all(self) -> bytes:
        """Everything left, in one piece: the buffered read's path (one call, one join)."""
        remaining = self._remaining
        content = self._content
        if remaining <= 0 or content is None:  # unknown size, or nothing left
            parts = []
            while chunk := await self.read_chunk():
                parts.append(chunk)
            return b"".join(parts)
        try:
            data = await content.readexactly(remaining)
        except asyncio.IncompleteReadError as exc:
            raise self._short(self.size - remaining + len(exc.partial)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self._abort()
            raise
        self._remaining = 0
        self._finish()
        return data

    def _failed(self, exc: BaseException) -> StoreError:
        self._abort()
        return _transport_error(exc, self._key, "reading the response body")

    def _short(self, got: int) -> BackendUnavailable:
        self._abort()
        return BackendUnavailable(
            f"the response ended after {got} of {self.size} bytes", key=self._key
        )

    def _finish(self) -> None:
        # Back to the pool if the body is complete; aiohttp closes the connection otherwise.
        resp, self._resp, self._content = self._resp, None, None
        if resp is not None:
            resp.release()

    def _abort(self) -> None:
        resp, self._resp, self._content = self._resp, None, None
        if resp is not None:
            resp.close()

    async def aclose(self) -> None:
        self._remaining = 0
        self._abort()


# -- helpers ----------------------------------------------------------------------------------


def _shown(url: URL) -> str:
    """A URL for messages: never a query (it may carry a token)."""
    return str(url.with_query(None).with_fragment(None))


def _content_length(resp: aiohttp.ClientResponse) -> int | None:
    try:
        value = resp.content_length
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _both_fail(reason: str) -> dict[Capability, Verdict]:
    return {_READ_ACCESS: Verdict.fail(reason), _READ_RANDOM: Verdict.fail(reason)}


def _status_error(resp: aiohttp.ClientResponse, key: str | None) -> StoreError:
    status = resp.status
    what = f"HTTP {status} {resp.reason or ''}".rstrip()
    if status in _GONE:
        return NotFound(f"no such object ({what})", key=key)
    if status in (401, 403):
        return StoreError(f"the server refused access ({what}); check the store's headers", key=key)
    return StoreError(f"unexpected answer from the server ({what})", key=key)


def _transport_error(exc: BaseException, key: str | None, doing: str) -> StoreError:
    """Translate an aiohttp/OS/timeout failure (chain it with ``from exc``)."""
    if isinstance(exc, TimeoutError):  # before ClientConnectionError: timeouts subclass it too
        return OperationTimeout(f"{doing}: timed out", key=key)
    if isinstance(exc, aiohttp.ClientPayloadError):
        # The body broke off mid-way: the server may be fine; the probe will tell.
        return BackendUnavailable(f"{doing}: the response body broke off ({exc})", key=key)
    if isinstance(exc, aiohttp.ClientResponseError):
        return BackendUnavailable(f"{doing}: invalid HTTP response ({exc.message})", key=key)
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return BackendUnavailable(
            f"{doing}: {_describe(exc)}", key=key, revokes=Capability.READ_ACCESS
        )
    return StoreError(f"{doing}: {type(exc).__name__}: {exc}", key=key)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS failed ({exc}); verify_tls = false accepts any certificate"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return str(exc) or type(exc).__name__


def _read_only(error: type[CapabilityError], operation: str, key: str) -> NoReturn:
    raise error(
        f"{operation} needs WRITE_ACCESS: HTTP stores are read-only",
        key=key,
        operation=operation,
        required=Capability.WRITE_ACCESS,
        reason="HTTP stores are read-only",
        transient=False,
    )
