"""The lean transport: S3 requests signed with SigV4 and sent without botocore's generic request
pipeline: small exchanges whose answer is read whole (HEAD, DELETE, a PUT from memory up to
1 MiB, a GET read into memory) on HTTP/1.1 connections of the driver's own (:mod:`._wire`),
everything else (streaming GETs, multipart uploads, listings) on an aiohttp session.

:class:`LeanClient` offers the few client methods the driver calls (``get_object``,
``put_object``, ``upload_part``, …) with the same arguments and the same answers as an
aiobotocore client: dicts shaped like botocore's, ``botocore.exceptions.ClientError`` for an S3
error answer, aiohttp's exceptions for the network. So the session, the reader, multipart and
the probe, the one error table and the retry policy are the same for both transports.

- Signing: :class:`~._sigv4.SigV4`, botocore's ``S3SigV4Auth`` signature computed cheaply
  (tested byte-for-byte against it), with the payload hash computed here (SHA-256 of the
  body, in a worker thread for large ones), so the server checks every byte it receives.
  Multipart uploads are created with ``x-amz-checksum-algorithm: SHA256`` and each part carries
  that same hash as ``x-amz-checksum-sha256`` (listed again in the completion): S3 keeps a
  composite checksum of the object, at no cost to the client.
- Credentials: static ones from the options, else botocore's provider chain (environment,
  config files, web identity, IMDS, ...) through aiobotocore, refreshed when they expire.
- Addressing: path style, or virtual-hosted (``bucket.host``), chosen for
  ``addressing_style = "auto"`` as botocore does: virtual on AWS for a bucket name that is a DNS
  label, path style for an endpoint given in the options.
- Keys are percent-encoded once (everything but ``A-Za-z0-9-_.~`` and ``/``) and sent as encoded:
  spaces, ``+``, ``%``, unicode and ``~`` reach S3 as the same key.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote, unquote_plus, urlsplit
from xml.sax.saxutils import escape

import aiohttp
import botocore.exceptions
from yarl import URL

from ...sdk import run_blocking
from ._body import Body as RequestBody
from ._options import MAX_POOL_CONNECTIONS, S3Options
from ._sigv4 import EMPTY_SHA256, SigV4, canonical_host
from ._wire import MAX_BODY, WireAnswer, WirePool

__all__ = ["LeanClient"]

#: Bodies from this size are hashed in a worker thread (hashlib releases the GIL).
THREAD_HASH: Final = 256 * 1024
_NS: Final = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_DNS_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_META: Final = "x-amz-meta-"


class _StreamingBody:
    """The body of a GET answer, read like aiobotocore's StreamingBody."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def read(self, amt: int = -1) -> bytes:
        data: bytes = await self._response.content.read(amt)
        return data

    def close(self) -> None:
        self._response.close()

    async def __aenter__(self) -> _StreamingBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._response.release()


class LeanClient:
    """The S3 calls of the driver as signed aiohttp requests (see the module docstring)."""

    def __init__(self, options: S3Options, credentials: Any) -> None:
        self._o = options
        self._credentials = credentials
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=options.connect_timeout, sock_read=options.read_timeout
        )
        limit = max(MAX_POOL_CONNECTIONS, 2 * options.max_concurrency)
        connector = aiohttp.TCPConnector(limit=limit)
        self._http = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        )
        endpoint = options.endpoint_url or (
            "https://s3.amazonaws.com"
            if options.region == "us-east-1"
            else f"https://s3.{options.region}.amazonaws.com"
        )
        parts = urlsplit(endpoint)
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._base_path = parts.path.rstrip("/")
        self._virtual = self._use_virtual(options)
        self._hosts: dict[str, str] = {}
        self._signer = SigV4(options.region)
        #: Small exchanges (HEAD, DELETE, a PUT from memory, a GET read whole) skip aiohttp's
        #: client: see ._wire.
        self._wire = WirePool(
            parts.scheme,
            parts.port,
            limit=limit,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
        )

    @staticmethod
    def _use_virtual(options: S3Options) -> bool:
        # "auto" as botocore decides it: virtual-hosted on AWS for a bucket name that is a DNS
        # label, path style for any endpoint given in the options.
        if options.addressing_style != "auto":
            return options.addressing_style == "virtual"
        return options.endpoint_url is None and bool(_DNS_BUCKET.match(options.bucket))

    async def close(self) -> None:
        try:
            await self._wire.close()
        finally:
            await self._http.close()

    # -- requests -------------------------------------------------------------------------------
    def _target(
        self, bucket: str, name: str | None, query: Mapping[str, str] | None
    ) -> tuple[str, str, str, list[tuple[str, str]]]:
        """(url, host, encoded path, encoded query pairs) of a request."""
        path = self._base_path
        if self._virtual:
            netloc = f"{bucket}.{self._netloc}"
        else:
            netloc = self._netloc
            path += "/" + quote(bucket, safe="")
        if name is not None:
            path += "/" + _quote_key(name)
        elif not path:
            path = "/"
        host = self._hosts.get(netloc)
        if host is None:
            host = self._hosts[netloc] = canonical_host(f"{self._scheme}://{netloc}/")
        url = f"{self._scheme}://{netloc}{path}"
        pairs: list[tuple[str, str]] = []
        if query:
            pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query.items())
            url += "?" + "&".join(f"{k}={v}" for k, v in pairs)
        return url, host, path, pairs

    def _url(self, bucket: str, name: str | None, query: Mapping[str, str] | None) -> str:
        return self._target(bucket, name, query)[0]

    async def _payload_hash(self, body: bytes | RequestBody | None) -> str:
        if body is None:
            return EMPTY_SHA256
        if not isinstance(body, RequestBody):
            if len(body) < THREAD_HASH:
                return hashlib.sha256(body).hexdigest()
            views: list[memoryview] | list[bytes] = [body]
        else:
            views = body.views()
            if len(body) < THREAD_HASH:
                return _sha256(views)
        return await run_blocking(_sha256, views)

    async def _send(
        self,
        op: str,
        method: str,
        bucket: str,
        name: str | None = None,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | RequestBody | None = None,
        payload_hash: str | None = None,
    ) -> aiohttp.ClientResponse:
        """Sign and send; the response of a 2xx answer (else a ClientError)."""
        url, _, _, sent = await self._signed(
            method, bucket, name, query, headers, body, payload_hash
        )
        sent["Accept-Encoding"] = "identity"
        response = await self._http.request(
            method, URL(url, encoded=True), headers=sent, data=body, allow_redirects=False
        )
        if response.status >= 300:
            await self._raise(op, method, response)
        return response

    async def _signed(
        self,
        method: str,
        bucket: str,
        name: str | None,
        query: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        body: bytes | RequestBody | None,
        payload_hash: str | None,
    ) -> tuple[str, str, str, dict[str, str]]:
        """(url, host, encoded path, headers to send) of a signed request: both paths sign
        here."""
        url, host, path, pairs = self._target(bucket, name, query)
        credentials = await self._frozen_credentials()
        if payload_hash is None:
            payload_hash = await self._payload_hash(body)
        sent = self._signer.sign(
            credentials, method, host, path, pairs, headers or {}, payload_hash
        )
        return url, host, path, sent

    async def _exchange(
        self,
        op: str,
        method: str,
        bucket: str,
        name: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | RequestBody | None = None,
    ) -> WireAnswer:
        """Sign and send on the fast path (see ._wire); the answer of a 2xx (else a
        ClientError). Bodies up to ``MAX_BODY`` only."""
        _, host, path, sent = await self._signed(method, bucket, name, None, headers, body, None)
        pieces: bytes | list[memoryview] | None = None
        if body is not None:
            sent["Content-Type"] = "application/octet-stream"
            pieces = body.views() if isinstance(body, RequestBody) else body
        answer = await self._wire.exchange(method, host, path, sent, pieces)
        if answer.status >= 300:
            code, message = _error_of(b"" if method == "HEAD" else answer.body)
            raise _client_error(
                op, answer.status, code or str(answer.status), message, answer.headers
            )
        return answer

    async def _frozen_credentials(self) -> Any:
        credentials = self._credentials
        if credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        getter = getattr(credentials, "get_frozen_credentials", None)
        if getter is None:
            return credentials
        frozen = getter()  # aiobotocore's refreshable credentials: a coroutine
        return await frozen if inspect.isawaitable(frozen) else frozen

    async def _raise(self, op: str, method: str, response: aiohttp.ClientResponse) -> None:
        status = response.status
        try:
            text = b"" if method == "HEAD" else await response.read()
        finally:
            response.release()
        code, message = _error_of(text)
        raise _client_error(op, status, code or str(status), message, response.headers)

    async def _xml(self, op: str, response: aiohttp.ClientResponse) -> ET.Element:
        try:
            text = await response.read()
        finally:
            response.release()
        root = ET.fromstring(text)
        if _local(root.tag) == "Error":
            # S3 may answer 200 and an error body (CompleteMultipartUpload): a transient 500.
            code, message = _error_of(text)
            raise _client_error(op, 500, code or "InternalError", message, response.headers)
        return root

    # -- the client methods the driver calls ----------------------------------------------------
    async def head_bucket(self, *, Bucket: str) -> dict[str, Any]:
        await self._exchange("HeadBucket", "HEAD", Bucket)
        return {}

    async def create_bucket(
        self, *, Bucket: str, CreateBucketConfiguration: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        body = None
        if CreateBucketConfiguration:
            location = escape(CreateBucketConfiguration["LocationConstraint"])
            body = (
                f'<CreateBucketConfiguration xmlns="{_NS[1:-1]}"><LocationConstraint>'
                f"{location}</LocationConstraint></CreateBucketConfiguration>"
            ).encode()
        response = await self._send("CreateBucket", "PUT", Bucket, body=body)
        response.release()
        return {}

    async def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        answer = await self._exchange("HeadObject", "HEAD", Bucket, Key)
        return _object_headers(answer.headers)

    async def get_object(
        self, *, Bucket: str, Key: str, Range: str | None = None, IfMatch: str | None = None
    ) -> dict[str, Any]:
        headers = {}
        if Range is not None:
            headers["Range"] = Range
        if IfMatch is not None:
            headers["If-Match"] = IfMatch
        response = await self._send("GetObject", "GET", Bucket, Key, headers=headers)
        result = _object_headers(response.headers)
        result["Body"] = _StreamingBody(response)
        return result

    async def read_object(self, *, Bucket: str, Key: str, Range: str | None = None) -> bytes:
        """GetObject, the body read whole (the fast path: no streaming body to hand out)."""
        headers = {"Range": Range} if Range is not None else None
        answer = await self._exchange("GetObject", "GET", Bucket, Key, headers=headers)
        return answer.body

    async def put_object(
        self,
        *,
        Bucket: str,
        Key: str,
        Body: bytes | RequestBody,
        Metadata: Mapping[str, str] | None = None,
        IfNoneMatch: str | None = None,
    ) -> dict[str, Any]:
        headers = _meta_headers(Metadata)
        if IfNoneMatch is not None:
            headers["If-None-Match"] = IfNoneMatch
        if len(Body) <= MAX_BODY:
            answer = await self._exchange(
                "PutObject", "PUT", Bucket, Key, headers=headers, body=Body
            )
            return {"ETag": answer.headers.get("ETag")}
        response = await self._send("PutObject", "PUT", Bucket, Key, headers=headers, body=Body)
        response.release()
        return {"ETag": response.headers.get("ETag")}

    async def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        await self._exchange("DeleteObject", "DELETE", Bucket, Key)
        return {}

    async def list_objects_v2(
        self, *, Bucket: str, Prefix: str = "", ContinuationToken: str | None = None
    ) -> dict[str, Any]:
        query = {"list-type": "2", "encoding-type": "url", "prefix": Prefix}
        if ContinuationToken is not None:
            query["continuation-token"] = ContinuationToken
        root = await self._xml(
            "ListObjectsV2", await self._send("ListObjectsV2", "GET", Bucket, query=query)
        )
        contents = []
        for item in root.iter(f"{_NS}Contents"):
            contents.append(
                {
                    "Key": unquote_plus(_text(item, "Key")),
                    "Size": int(_text(item, "Size")),
                    "LastModified": datetime.fromisoformat(
                        _text(item, "LastModified").replace("Z", "+00:00")
                    ),
                    "ETag": _text(item, "ETag"),
                }
            )
        result: dict[str, Any] = {
            "Contents": contents,
            "IsTruncated": _text(root, "IsTruncated") == "true",
        }
        token = root.find(f"{_NS}NextContinuationToken")
        if token is not None and token.text:
            result["NextContinuationToken"] = token.text
        return result

    async def create_multipart_upload(
        self, *, Bucket: str, Key: str, Metadata: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        headers = _meta_headers(Metadata)
        # Every part carries its SHA-256 (computed for the signature anyway): S3 checks each
        # one and keeps a composite checksum; servers that know no checksums ignore it.
        headers["x-amz-checksum-algorithm"] = "SHA256"
        response = await self._send(
            "CreateMultipartUpload", "POST", Bucket, Key, query={"uploads": ""}, headers=headers
        )
        root = await self._xml("CreateMultipartUpload", response)
        return {"UploadId": _text(root, "UploadId")}

    async def upload_part(
        self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: RequestBody | bytes
    ) -> dict[str, Any]:
        query = {"partNumber": str(PartNumber), "uploadId": UploadId}
        digest = await self._payload_hash(Body)
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()
        response = await self._send(
            "UploadPart",
            "PUT",
            Bucket,
            Key,
            query=query,
            headers={"x-amz-checksum-sha256": checksum},
            body=Body,
            payload_hash=digest,
        )
        response.release()
        return {"ETag": response.headers.get("ETag"), "ChecksumSHA256": checksum}

    async def complete_multipart_upload(
        self,
        *,
        Bucket: str,
        Key: str,
        UploadId: str,
        MultipartUpload: Mapping[str, Any],
        IfNoneMatch: str | None = None,
    ) -> dict[str, Any]:
        parts = "".join(
            f"<Part><PartNumber>{p['PartNumber']}</PartNumber><ETag>{escape(p['ETag'])}</ETag>"
            + (
                f"<ChecksumSHA256>{escape(p['ChecksumSHA256'])}</ChecksumSHA256>"
                if p.get("ChecksumSHA256")
                else ""
            )
            + "</Part>"
            for p in MultipartUpload["Parts"]
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        headers = {"If-None-Match": IfNoneMatch} if IfNoneMatch is not None else {}
        response = await self._send(
            "CompleteMultipartUpload",
            "POST",
            Bucket,
            Key,
            query={"uploadId": UploadId},
            headers=headers,
            body=body,
        )
        root = await self._xml("CompleteMultipartUpload", response)
        return {"ETag": root.findtext(f"{_NS}ETag")}

    async def abort_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str
    ) -> dict[str, Any]:
        response = await self._send(
            "AbortMultipartUpload", "DELETE", Bucket, Key, query={"uploadId": UploadId}
        )
        response.release()
        return {}


# -- answers --------------------------------------------------------------------------------------


def _sha256(views: Sequence[bytes | memoryview]) -> str:
    digest = hashlib.sha256()
    for view in views:
        digest.update(view)
    return digest.hexdigest()


def _quote_key(name: str) -> str:
    """An S3 key percent-encoded for a URL path (``/`` and ``~`` kept)."""
    return quote(name, safe="/~")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text(element: ET.Element, name: str) -> str:
    found = element.find(f"{_NS}{name}")
    if found is None:
        found = element.find(name)
    return (found.text or "") if found is not None else ""


def _error_of(text: bytes) -> tuple[str, str]:
    """(code, message) of an S3 XML error body ("" when there is none)."""
    if not text:
        return "", ""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return "", text[:200].decode("utf-8", "replace")
    return root.findtext("Code") or "", root.findtext("Message") or ""


def _client_error(
    op: str, status: int, code: str, message: str, headers: Mapping[str, str]
) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": {k.lower(): v for k, v in headers.items()},
            },
        },
        op,
    )


def _meta_headers(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {f"{_META}{k}": v for k, v in (metadata or {}).items()}


def _object_headers(h: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ContentLength": int(h.get("Content-Length", "0")),
        "ETag": h.get("ETag"),
        "Metadata": {
            k[len(_META) :].lower(): v for k, v in h.items() if k.lower().startswith(_META)
        },
    }
    if "Content-Range" in h:
        result["ContentRange"] = h["Content-Range"]
    modified = h.get("Last-Modified")
    if modified:
        result["LastModified"] = parsedate_to_datetime(modified)
    return result
