"""One Swift session: an aiohttp client on one event loop, its token, and every operation.

Retries: a read's GET and every resumption of its body share one attempt budget; every other
request (each segment, the manifest, each listing page) has a budget of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import aiohttp

from ...errors import Duplicate
from ...sdk import (
    Attempts,
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
from ._auth import Token, authenticate
from ._errors import SwiftStatus, errors
from ._reader import SwiftReader, encode_metadata, full_size, info_from_headers

if TYPE_CHECKING:
    from . import SwiftDriver

__all__ = ["SwiftSession"]

#: Where the probe writes its scratch object (under the store's prefix).
PROBE_AREA: Final = ".aiostore-probe/"
PROBE_BODY: Final = b"aiostore swift probe"
#: On a Static Large Object's manifest: the prefix of its segments in the segment container.
SEGMENTS_HEADER: Final = "X-Object-Meta-Aiostore-Segments"
#: Objects per listing page.
PAGE: Final = 1000
#: The MD5 of nothing: RGW lists a Static Large Object's manifest with it and the manifest's
#: own size, so such entries are asked for their real size.
_EMPTY_MD5: Final = hashlib.md5(b"").hexdigest()

Body = bytes | AsyncIterator[bytes] | None


class SwiftSession(DriverSession):
    """Owns one ``aiohttp.ClientSession``; the token is refreshed once on a 401."""

    def __init__(self, driver: SwiftDriver) -> None:
        o = driver.options
        self._driver = driver
        self._o = o
        self._policy = driver.policy
        self._loop = asyncio.get_running_loop()
        self._token: Token | None = None
        self._auth_lock = asyncio.Lock()
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=o.connect_timeout, sock_read=o.read_timeout
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        #: Create-only puts of one key wait for each other here (see ``put``).
        self._claims: dict[str, _Claim] = {}
        self._segments_ready = False

    def __repr__(self) -> str:
        return f"<SwiftSession store={self._driver.store!r} container={self._o.container!r}>"

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def is_broken(self) -> bool:
        return self._client.closed or self._loop.is_closed()

    async def aclose(self) -> None:
        if not self._client.closed:
            await self._client.close()
        self._token = None

    # -- requests -------------------------------------------------------------------------------
    async def _auth(self, stale: Token | None = None) -> Token:
        """The current token; a fresh one when there is none, it expired, or it is ``stale``."""
        async with self._auth_lock:
            token = self._token
            if token is None or token is stale or token.expired:
                token = self._token = await authenticate(self._client, self._o)
            return token

    def _url(self, token: Token, container: str, name: str | None = None) -> str:
        url = f"{token.storage_url}/{quote(container, safe='')}"
        return url if name is None else f"{url}/{quote(name, safe='/')}"

    async def _request(
        self,
        method: str,
        container: str,
        name: str | None,
        *,
        ok: frozenset[int] | set[int],
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        replayable: Callable[[], bool] = lambda: True,
    ) -> aiohttp.ClientResponse:
        """One request (a 401 refreshes the token and repeats it once, when the body allows).

        Returns the response (the caller releases it); other statuses raise SwiftStatus.
        """
        what = f"{method} {container}" + (f"/{name}" if name is not None else "")
        token = await self._auth()
        for attempt in (1, 2):
            hdrs = {"X-Auth-Token": token.value, **(headers or {})}
            resp = await self._client.request(
                method,
                self._url(token, container, name),
                headers=hdrs,
                params=params,
                data=body,
                allow_redirects=False,
                expect100=not isinstance(body, bytes | None),
            )
            if resp.status == 401 and attempt == 1 and replayable():
                resp.release()
                token = await self._auth(stale=token)
                continue
            if resp.status not in ok:
                reason = resp.reason or ""
                resp.release()
                raise SwiftStatus(resp.status, what, reason)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(
        self,
        budget: Attempts | None,
        method: str,
        container: str,
        name: str | None,
        *,
        ok: frozenset[int] | set[int],
        **kw: Any,
    ) -> aiohttp.ClientResponse:
        """:meth:`_request` with retries from ``budget`` (bytes or no body only); the caller
        releases the response."""
        resp: aiohttp.ClientResponse = await self._retried(
            budget, method, container, name, ok, kw, read=False
        )
        return resp

    async def _simple(
        self,
        budget: Attempts | None,
        method: str,
        container: str,
        name: str | None,
        *,
        ok: frozenset[int] | set[int],
        **kw: Any,
    ) -> tuple[Mapping[str, str], bytes]:
        """A request whose body is read whole (inside the retried step): (headers, body)."""
        answer: tuple[Mapping[str, str], bytes] = await self._retried(
            budget, method, container, name, ok, kw, read=True
        )
        return answer

    async def _retried(
        self,
        budget: Attempts | None,
        method: str,
        container: str,
        name: str | None,
        ok: frozenset[int] | set[int],
        kw: Mapping[str, Any],
        *,
        read: bool,
    ) -> Any:
        async def once() -> Any:
            resp = await self._request(method, container, name, ok=ok, **kw)
            if not read:
                return resp
            async with resp:
                return resp.headers.copy(), await resp.read()

        return await self._policy.call(
            once, budget=budget, what=f"Swift {method} {container}/{name or ''}"
        )

    async def create_containers(self) -> None:
        """PUT the container and its segment container (201 created, 202 already there)."""
        with errors.mapping(operation="create container"):
            for container in (self._o.container, self._o.segment_container):
                await self._simple(None, "PUT", container, None, ok={201, 202})
        self._segments_ready = True

    async def _segment_container(self, budget: Attempts | None) -> None:
        if not self._segments_ready:
            await self._simple(budget, "PUT", self._o.segment_container, None, ok={201, 202})
            self._segments_ready = True

    # -- names ------------------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        return self._o.prefix + key

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
        with errors.mapping(key=key, operation="put"):
            if overwrite or self._driver.conditional_put:
                await self._put(key, stream, size, overwrite, metadata)
                return
            # If-None-Match: * makes create-only atomic on Swift. Ceph RGW's Swift API ignores
            # it (the probe finds out: ``conditional_put``), so until a probe has shown that the
            # server honours it, a HEAD checks first and create-only puts of one key in this
            # session (one event loop) wait for each other: atomic within the session only.
            claim = self._claims.setdefault(key, _Claim())
            claim.users += 1
            try:
                async with claim.lock:
                    await self._put(key, stream, size, overwrite, metadata)
            finally:
                claim.users -= 1
                if claim.users == 0:
                    del self._claims[key]

    async def _put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        o = self._o
        name = self._name(key)
        headers = encode_metadata(metadata)
        old_segments: list[str] = []
        if overwrite:
            old_segments = await self._segments_of(name, None)
        else:
            headers["If-None-Match"] = "*"
            if not self._driver.conditional_put:  # the server may ignore it: check first
                await self._refuse_existing(key, name)
        if size is not None and size <= o.large_object_size:
            await self._put_streamed(name, stream, size, headers)
        else:
            pieces = rechunk(stream, o.segment_size)
            first = await anext(pieces, None)
            if first is None or (size is None and len(first) < o.segment_size):
                # The whole (unsized) object fitted in one segment: one plain PUT.
                headers["Content-Length"] = str(len(first or b""))
                resp = await self._call(None, "PUT", o.container, name, ok={201},
                                        headers=headers, body=first or b"")  # fmt: skip
                resp.release()
            else:
                if not overwrite and self._driver.conditional_put:
                    await self._refuse_existing(key, name)  # before uploading segments
                await self._put_large(name, _prepend(first, pieces), headers, None)
        if old_segments:
            await shielded(self._delete_paths(old_segments))

    async def _put_streamed(
        self, name: str, stream: AsyncIterator[bytes], size: int, headers: dict[str, str]
    ) -> None:
        """One PUT whose body streams from ``stream``; a failure of the input is re-raised as
        it is (aiohttp would wrap it), and the server drops the incomplete upload."""
        failed: list[BaseException] = []
        started = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal started
            started = True
            try:
                async for chunk in stream:
                    yield chunk
            except BaseException as exc:
                failed.append(exc)
                raise

        headers["Content-Length"] = str(size)
        try:
            resp = await self._request(
                "PUT", self._o.container, name, ok={201}, headers=headers,
                body=body() if size else b"", replayable=lambda: not started,
            )  # fmt: skip
        except Exception:
            if failed:
                raise failed[0] from None
            raise
        resp.release()
        if failed:  # pragma: no cover - the server answered although the body broke
            raise failed[0]

    async def _put_large(
        self,
        name: str,
        pieces: AsyncIterator[bytes],
        headers: dict[str, str],
        budget: Attempts | None,
    ) -> None:
        """A Static Large Object: segments in ``<container>_segments`` (up to ``max_concurrency``
        at once), then the manifest. Any failure or cancellation deletes every segment sent."""
        o = self._o
        base = f"{hashlib.sha256(name.encode()).hexdigest()[:32]}/{uuid.uuid4().hex}/"
        sent: list[str] = []
        manifest: dict[int, dict[str, Any]] = {}
        pending: set[asyncio.Task[None]] = set()
        await self._segment_container(None)

        async def upload(index: int, piece: bytes) -> None:
            seg = f"{base}{index:08d}"
            sent.append(f"/{o.segment_container}/{seg}")
            hdrs = {"Content-Length": str(len(piece))}
            resp = await self._call(None, "PUT", o.segment_container, seg, ok={201},
                                    headers=hdrs, body=piece)  # fmt: skip
            resp.release()
            manifest[index] = {
                "path": f"/{o.segment_container}/{seg}",
                "etag": (resp.headers.get("ETag") or "").strip('"') or None,
                "size_bytes": len(piece),
            }

        async def settle() -> None:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.discard(task)
                task.result()

        headers = {**headers, SEGMENTS_HEADER: base}
        try:
            index = 0
            async for piece in pieces:
                while len(pending) >= o.max_concurrency:
                    await settle()
                pending.add(asyncio.create_task(upload(index, piece)))
                index += 1
            while pending:
                await settle()
            body = json.dumps([manifest[i] for i in range(index)]).encode()
            resp = await self._call(
                None, "PUT", o.container, name, ok={201}, headers=headers, body=body,
                params={"multipart-manifest": "put"},
            )  # fmt: skip
            resp.release()
        except BaseException:
            for task in pending:
                task.cancel()
            await shielded(self._abandon(pending, sent))
            raise

    async def _abandon(self, pending: set[asyncio.Task[None]], paths: list[str]) -> None:
        if pending:
            await asyncio.wait(pending)
            for task in pending:
                if not task.cancelled():
                    task.exception()
        await self._delete_paths(paths)

    async def _delete_paths(self, paths: list[str]) -> None:
        """Delete segments (``/container/name``) best-effort, a few at a time."""
        sem = asyncio.Semaphore(self._o.max_concurrency)

        async def one(path: str) -> None:
            container, _, seg = path.lstrip("/").partition("/")
            async with sem:
                try:
                    await self._simple(None, "DELETE", container, seg, ok={204, 404})
                except Exception:
                    pass  # best effort: a later overwrite or delete cannot find it either

        await asyncio.gather(*(one(p) for p in paths))

    async def _refuse_existing(self, key: str, name: str) -> None:
        if await self._exists(name, None):
            raise Duplicate("an object already exists under this key", key=key)

    async def _exists(self, name: str, budget: Attempts | None) -> bool:
        try:
            await self._simple(budget, "HEAD", self._o.container, name, ok={200, 204})
        except SwiftStatus as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _segments_of(self, name: str, budget: Attempts | None) -> list[str]:
        """The segment paths of ``name`` when it is a Static Large Object this driver wrote (its
        ``X-Object-Meta-Aiostore-Segments`` names them: RGW does not return manifests), else []."""
        try:
            headers, _ = await self._simple(budget, "HEAD", self._o.container, name, ok={200, 204})
        except SwiftStatus as exc:
            if exc.status == 404:
                return []
            raise
        base = headers.get(SEGMENTS_HEADER)
        if not base:
            return []
        container = self._o.segment_container
        names = [n async for n in self._names(container, base, None)]
        return [f"/{container}/{n}" for n in names]

    async def _names(
        self, container: str, prefix: str, budget: Attempts | None
    ) -> AsyncIterator[str]:
        """Every object name under ``prefix`` in ``container``, page by page (``marker``)."""
        marker = ""
        while True:
            params = {"format": "json", "prefix": prefix, "limit": str(PAGE)}
            if marker:
                params["marker"] = marker
            _, body = await self._simple(None, "GET", container, None, ok={200, 204},
                                         params=params)  # fmt: skip
            page = json.loads(body) if body.strip() else []
            names = [e["name"] for e in page if isinstance(e, dict) and "name" in e]
            for n in names:
                yield n
            if len(page) < PAGE or not names:
                return
            marker = names[-1]

    # -- read -----------------------------------------------------------------------------------
    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        name = self._name(key)
        budget = self._policy.attempts()
        with errors.mapping(key=key, operation="read"):
            if length == 0:
                return await self._empty_reader(key, name, budget)
            end = "" if length is None else str(offset + length - 1)
            headers = {"Range": f"bytes={offset}-{end}"} if offset or length is not None else {}
            try:
                resp = await self._call(budget, "GET", self._o.container, name, ok={200, 206},
                                        headers=headers)  # fmt: skip
            except SwiftStatus as exc:
                if exc.status == 416:  # at or past the end (or an empty object)
                    return await self._empty_reader(key, name, budget)
                raise
            try:
                total = full_size(resp)
                info = info_from_headers(key, resp.headers, total)
                slo = resp.headers.get("X-Static-Large-Object", "").lower() == "true"
                if resp.status == 200 and offset:  # the server ignored the Range
                    raise SwiftStatus(200, f"GET {name}", "without the range asked for")
            except BaseException:
                resp.close()
                raise
            size = max(0, (total if length is None else min(total, offset + length)) - offset)
            etag = resp.headers.get("ETag", "")

            async def refetch(pos: int, left: Attempts) -> aiohttp.ClientResponse:
                last = offset + size - 1
                hdrs = {"Range": f"bytes={pos}-{last}"}
                if not slo and etag:
                    hdrs["If-Match"] = etag  # RGW compares SLO ETags wrongly: checked below
                again = await self._call(left, "GET", self._o.container, name, ok={206},
                                         headers=hdrs)  # fmt: skip
                if again.headers.get("ETag", "") != etag:
                    again.close()
                    raise SwiftStatus(412, f"GET {name}", "the object changed while being read")
                return again

            return SwiftReader(
                resp, info=info, offset=offset, size=size, refetch=refetch, budget=budget
            )

    async def _empty_reader(self, key: str, name: str, budget: Attempts) -> DriverReader:
        info = await self._stat(key, name, budget)
        return SwiftReader(None, info=info, offset=0, size=0, refetch=_never, budget=budget)

    # -- stat, delete, list ---------------------------------------------------------------------
    async def stat(self, key: str) -> ObjectInfo:
        with errors.mapping(key=key, operation="stat"):
            return await self._stat(key, self._name(key), self._policy.attempts())

    async def _stat(self, key: str, name: str, budget: Attempts) -> ObjectInfo:
        headers, _ = await self._simple(budget, "HEAD", self._o.container, name, ok={200, 204})
        return info_from_headers(key, headers, int(headers.get("Content-Length", "0")))

    async def delete(self, key: str) -> None:
        name = self._name(key)
        with errors.mapping(key=key, operation="delete"):
            segments = await self._segments_of(name, None)
            await self._simple(None, "DELETE", self._o.container, name, ok={204})
            if segments:
                await shielded(self._delete_paths(segments))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        o = self._o
        full = o.prefix + prefix
        marker = ""
        while True:
            params = {"format": "json", "prefix": full, "limit": str(PAGE)}
            if marker:
                params["marker"] = marker
            with errors.mapping(operation="list"):
                _, body = await self._simple(None, "GET", o.container, None, ok={200, 204},
                                             params=params)  # fmt: skip
                page = json.loads(body) if body.strip() else []
            if not isinstance(page, list):
                page = []
            for entry in page:
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or not name.startswith(o.prefix):
                    continue
                key = name[len(o.prefix) :]
                if key.startswith(PROBE_AREA):
                    continue
                yield await self._listed(key, name, entry)
            if len(page) < PAGE:
                return
            marker = page[-1]["name"]

    async def _listed(self, key: str, name: str, entry: Mapping[str, Any]) -> ObjectInfo:
        size = int(entry.get("bytes", 0))
        ctype = str(entry.get("content_type", ""))
        if "swift_bytes=" in ctype:  # OpenStack Swift lists a large object's total this way
            size = int(ctype.rsplit("swift_bytes=", 1)[1].split(";")[0])
        elif entry.get("hash") == _EMPTY_MD5 and size > 0:  # RGW: a manifest; ask its size
            with errors.mapping(key=key, operation="list"):
                try:
                    return await self._stat(key, name, self._policy.attempts())
                except SwiftStatus as exc:
                    if exc.status != 404:
                        raise
        modified = None
        stamp = entry.get("last_modified")
        if isinstance(stamp, str):
            from datetime import datetime

            try:
                when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                modified = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
            except ValueError:
                modified = None
        etag = entry.get("hash")
        return ObjectInfo(key, size, modified, {}, etag if isinstance(etag, str) else None)

    # -- write (not supported: Swift objects are immutable) -----------------------------------

    # -- probe ----------------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        """Auth, HEAD of the container (READ_ACCESS); with ``probe_write`` a tiny PUT, a ranged
        GET and a DELETE (WRITE_ACCESS, READ_RANDOM). One attempt each."""
        o = self._o
        started = time.monotonic()
        verdicts: dict[Capability, Verdict] = {}

        async def step(operation: str, fn: Callable[[], Awaitable[Any]]) -> str | None:
            try:
                with errors.mapping(operation=operation):
                    await fn()
            except Exception as exc:
                return f"{operation}: {getattr(exc, 'detail', exc)}"
            return None

        failed = await step("auth", self._auth)
        if failed is None:
            failed = await step(
                "probe", lambda: self._simple(None, "HEAD", o.container, None, ok={200, 204})
            )
        verdicts[Capability.READ_ACCESS] = Verdict.fail(failed) if failed else Verdict.ok()
        if failed:
            verdicts[Capability.READ_RANDOM] = Verdict.fail(failed)
        if not self._driver.probe_writes:
            pass  # configured read-only: never write
        elif o.probe_write and not failed:
            name = f"{o.prefix}{PROBE_AREA}{uuid.uuid4().hex}"

            async def put() -> None:
                (await self._request("PUT", o.container, name, ok={201}, body=PROBE_BODY)).release()

            async def ranged() -> None:
                _, body = await self._simple(None, "GET", o.container, name, ok={206},
                                             headers={"Range": "bytes=3-8"})  # fmt: skip
                if body != PROBE_BODY[3:9]:
                    raise SwiftStatus(206, "GET probe", "returned other bytes than the range")

            async def conditional() -> None:
                resp = await self._request(
                    "PUT",
                    o.container,
                    name,
                    ok={201, 412},
                    headers={"If-None-Match": "*"},
                    body=PROBE_BODY,
                )
                resp.release()
                self._driver.conditional_put = resp.status == 412

            failed_write = await step("put", put)
            if failed_write is None and self._driver.conditional_put is None:
                failed_write = await step("put", conditional)
            if failed_write is None:
                bad_range = await step("probe", ranged)
                verdicts[Capability.READ_RANDOM] = (
                    Verdict.fail(bad_range) if bad_range else Verdict.ok()
                )
                failed_write = await step(
                    "delete", lambda: self._simple(None, "DELETE", o.container, name, ok={204})
                )
            verdicts[Capability.WRITE_ACCESS] = (
                Verdict.fail(failed_write) if failed_write else Verdict.ok()
            )
        else:
            verdicts[Capability.WRITE_ACCESS] = (
                Verdict.fail(failed) if failed else Verdict.ok("not written (probe_write = false)")
            )
        elapsed = time.monotonic() - started
        limit = o.degraded_latency
        if limit is not None and elapsed > limit and not failed:
            verdicts[Capability.READ_RANDOM] = Verdict.fail(
                f"degraded: probe took {elapsed:.1f} s > {limit:g} s"
            )
        verdicts.setdefault(Capability.READ_RANDOM, Verdict.ok())
        return verdicts


class _Claim:
    """Create-only puts of one key in progress: they take turns."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


async def _never(pos: int, budget: Attempts) -> aiohttp.ClientResponse:
    raise AssertionError("an empty reader never fetches")  # pragma: no cover


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for piece in rest:
        yield piece
