"""The ``http`` driver and its session: requests, redirects, the probe, reads and stat."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, NoReturn
from urllib.parse import quote

import aiohttp
from yarl import URL

from ...errors import (
    BackendUnavailable,
    BadStoreConfiguration,
    CapabilityError,
    MaxRedirectsExceeded,
    StoreAddDisabled,
    StoreDeleteNotSupported,
    StoreError,
    StoreGetNotSupported,
    StoreWriteNotSupported,
)
from ...sdk import (
    Attempts,
    Capability,
    Driver,
    DriverSession,
    Metadata,
    ObjectInfo,
    ProbeResult,
    RetryPolicy,
    Verdict,
    parse_options,
    validate_key,
)
from ._errors import ERRORS, BadStatus, describe, retryable, shown
from ._options import HTTPOptions
from ._reader import (
    CONTENT_RANGE,
    UNSATISFIED_RANGE,
    HTTPReader,
    Resume,
    check_range,
    content_length,
    info_from,
    strong_etag,
)

__all__ = ["ATTEMPTS", "HTTPDriver", "HTTPSession"]

#: Requests one read (resumes included), stat or exists may make in all.
ATTEMPTS: Final = 3
_POLICY: Final = RetryPolicy(
    max_attempts=ATTEMPTS, retryable=retryable, base_delay=0.05, max_delay=1.0, describe=describe
)
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_GONE: Final = frozenset({404, 410})
_PROBE_RANGE: Final = MappingProxyType({"Range": "bytes=0-0"})
_READ_RANDOM: Final = Capability.READ_RANDOM
_READ_ACCESS: Final = Capability.READ_ACCESS
#: A character ``quote(key, safe="/")`` would escape: a key without any is its own URL path.
_UNQUOTED: Final = re.compile(r"[^A-Za-z0-9_.~/-]")


def url_path(key: str) -> str:
    """``quote(key, safe="/")``: a key with nothing to escape (the common one) is its own path."""
    return key if _UNQUOTED.search(key) is None else quote(key, safe="/")


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
        headers = dict(opts.headers or {})
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
        return URL(self._base + url_path(key), encoded=True)

    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        key: str | None,
        retryable: bool = True,
    ) -> aiohttp.ClientResponse:
        """One request, redirects followed by hand; returns the first non-redirect response.

        Failures are raised as they are (the caller's edge translates them). With
        ``retryable``, a 5xx/429 answer raises :class:`BadStatus` (what the policy retries);
        other statuses are the caller's.
        """
        redirects = 0
        while True:
            async with asyncio.timeout(self._header_deadline):
                resp = await self._client.request(
                    method, url, headers=headers, allow_redirects=False
                )
            status = resp.status
            if status not in _REDIRECTS:
                if retryable and (status >= 500 or status == 429):
                    resp.release()
                    raise BadStatus(status, resp.reason)
                return resp
            resp.release()
            location = resp.headers.get("Location")
            if not location:
                raise StoreError(
                    f"{method} {shown(url)}: HTTP {resp.status} redirect without a Location",
                    key=key,
                )
            target = self._redirect_target(url, location, key)
            redirects += 1
            if redirects > self._max_redirects:
                raise MaxRedirectsExceeded(
                    f"more than {self._max_redirects} redirects (last to {shown(target)})",
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
                f"refused a redirect to {shown(target.origin()) if target.host else location!r}:"
                f" only the configured origin {shown(self._origin)} is ever contacted",
                key=key,
            )
        return target.with_fragment(None)

    # -- probe ----------------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        url = self._probe_url
        started = time.monotonic()
        try:
            resp = await self._exchange("GET", url, _PROBE_RANGE, None, retryable=False)
        except Exception as exc:
            err = ERRORS.translate(exc, operation=f"GET {shown(url)}")
            if not isinstance(err, StoreError):
                raise
            return _both_fail(err.detail)
        try:
            status = resp.status
            if status >= 500:
                return _both_fail(f"GET {shown(url)}: HTTP {status} {resp.reason or ''}".rstrip())
            random: Verdict | None
            if status == 206:
                match = CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
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
        budget = _POLICY.attempts()
        try:
            if length == 0:
                # Nothing to fetch; still a read of an object that must exist.
                return HTTPReader(None, 0, key, info=await self._head(url, key, budget))
            ranged = offset != 0 or length is not None
            headers = None
            if ranged:
                end = "" if length is None else str(offset + length - 1)
                headers = {"Range": f"bytes={offset}-{end}"}
            resp = await _POLICY.call(
                lambda: self._exchange("GET", url, headers, key),
                budget=budget,
                what=f"HTTP GET {key!r}",
            )
        except Exception as exc:
            raise ERRORS.translate(exc, key=key, operation=f"GET {shown(url)}")
        try:
            return self._reader(resp, url, key, offset, length, budget)
        except BaseException:
            resp.close()
            raise

    def _reader(
        self,
        resp: aiohttp.ClientResponse,
        url: URL,
        key: str,
        offset: int,
        length: int | None,
        budget: Attempts,
    ) -> HTTPReader:
        status = resp.status
        if status == 200 and offset == 0 and length is None:
            total = content_length(resp)
            # No declared length (a chunked answer): the size is unknown until the end (-1).
            size = -1 if total is None else total
        elif status == 416:
            match = UNSATISFIED_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            total = None if match is None else int(match[1])
            if total is not None and total > offset:
                raise BackendUnavailable(
                    f"the server refused bytes from {offset} of a {total}-byte object (416)",
                    key=key,
                )
            resp.release()
            return HTTPReader(None, 0, key, info=info_from(key, total, resp.headers))
        elif status in (200, 206):
            size, total = check_range(resp, key, offset, length)
        else:
            raise ERRORS.translate(BadStatus(status, resp.reason), key=key)
        resume = None
        etag = strong_etag(resp.headers)
        if etag is not None and total is not None and size > 0:

            def refetch(headers: Mapping[str, str]) -> Any:
                return _POLICY.call(
                    lambda: self._exchange("GET", url, headers, key),
                    budget=budget,
                    what=f"HTTP GET {key!r} (resumed)",
                )

            resume = Resume(refetch, budget, etag, total, offset)
        return HTTPReader(resp, size, key, total=total, resume=resume)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        reader = await self.open(key, offset, length)
        try:
            return await reader.read_all()
        finally:
            await reader.aclose()

    async def _head(self, url: URL, key: str, budget: Attempts | None = None) -> ObjectInfo:
        """The object's version from a HEAD; NotFound (raw: BadStatus) when it is missing."""
        resp = await _POLICY.call(
            lambda: self._exchange("HEAD", url, None, key), budget=budget, what=f"HTTP HEAD {key!r}"
        )
        try:
            if resp.status != 200:
                raise BadStatus(resp.status, resp.reason)
            info = info_from(key, content_length(resp), resp.headers)
            if info is None:
                raise StoreError("the server's HEAD answer has no Content-Length", key=key)
            return info
        finally:
            resp.release()

    async def stat(self, key: str) -> ObjectInfo:
        url = self._url(key)
        try:
            return await self._head(url, key)
        except Exception as exc:
            raise ERRORS.translate(exc, key=key, operation=f"HEAD {shown(url)}")

    async def exists(self, key: str) -> bool:
        url = self._url(key)
        try:
            resp = await _POLICY.call(
                lambda: self._exchange("HEAD", url, None, key), what=f"HTTP HEAD {key!r}"
            )
        except Exception as exc:
            raise ERRORS.translate(exc, key=key, operation=f"HEAD {shown(url)}")
        try:
            if resp.status in _GONE:
                return False
            if resp.status != 200:
                raise ERRORS.translate(BadStatus(resp.status, resp.reason), key=key)
            return True
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


def _both_fail(reason: str) -> dict[Capability, Verdict]:
    return {_READ_ACCESS: Verdict.fail(reason), _READ_RANDOM: Verdict.fail(reason)}


def _read_only(error: type[CapabilityError], operation: str, key: str) -> NoReturn:
    raise error(
        f"{operation} needs WRITE_ACCESS: HTTP stores are read-only",
        key=key,
        operation=operation,
        required=Capability.WRITE_ACCESS,
        reason="HTTP stores are read-only",
        transient=False,
    )
