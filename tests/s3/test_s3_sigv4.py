"""The lean transport's SigV4 signer gives byte-for-byte botocore's ``S3SigV4Auth`` signature,
on randomized requests and on what the client really sends over the wire."""

from __future__ import annotations

import datetime
import hashlib
import random
from typing import Any
from urllib.parse import quote

import botocore.auth
import pytest
from aiohttp import web
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials

from aiostore.drivers.s3 import S3Options
from aiostore.drivers.s3._lean import LeanClient
from aiostore.drivers.s3._sigv4 import UNSIGNED_PAYLOAD, Keys, SigV4, canonical_host

#: Characters keys and query values are drawn from: the odd ones included.
ALPHABET = "aZ09-_.~ +%/=&?#!*'()[]:@$,;\t" + "éü€中𝄞\u00a0"
ENDPOINTS = (
    "https://s3.amazonaws.com",
    "https://s3.eu-west-1.amazonaws.com:443",
    "http://127.0.0.1:9000",
    "http://Minio.Example:80",
    "https://[::1]:8443",
    "http://localhost:8080/base",
)


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def _botocore(
    keys: Keys,
    region: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    unsigned: bool,
    when: datetime.datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: when)
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    if unsigned:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    credentials = ReadOnlyCredentials(keys.access_key, keys.secret_key, keys.token)
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("seed", range(8))
def test_randomized_requests_sign_as_botocore(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        region = rng.choice(("us-east-1", "eu-west-1", "ap-southeast-2", "default"))
        endpoint = rng.choice(ENDPOINTS)
        scheme, _, rest = endpoint.partition("://")
        netloc, _, base = rest.partition("/")
        base = f"/{base}" if base else ""
        bucket = rng.choice(("b-1", "bucket.with.dots", "x" * 63))
        if rng.random() < 0.5:
            netloc = f"{bucket}.{netloc}"  # virtual-hosted
            path = base
        else:
            path = f"{base}/{bucket}"
        if rng.random() < 0.85:
            path += "/" + quote(_text(rng, rng.randint(1, 40)), safe="/~")
        path = path or "/"
        query: list[tuple[str, str]] = []
        for name in rng.sample(
            [
                "uploadId",
                "partNumber",
                "uploads",
                "list-type",
                "prefix",
                "continuation-token",
                "encoding-type",
            ],
            rng.randint(0, 3),
        ):
            value = "" if name == "uploads" else _text(rng, rng.randint(0, 20))
            query.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
        url = f"{scheme}://{netloc}{path}"
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query)
        headers: dict[str, str] = {}
        if rng.random() < 0.4:
            headers["Range"] = f"bytes={rng.randint(0, 99)}-{rng.randint(100, 999)}"
        if rng.random() < 0.3:
            headers["If-Match"] = '"' + hashlib.md5(bytes([seed])).hexdigest() + '"'
        if rng.random() < 0.3:
            headers["If-None-Match"] = "*"
        for i in range(rng.randint(0, 3)):
            headers[f"x-amz-meta-K{i}"] = rng.choice(("  a   b  ", "v\t x", "plain", ""))
        if rng.random() < 0.2:
            headers["User-Agent"] = "not signed"
        method = rng.choice(("GET", "PUT", "HEAD", "DELETE", "POST"))
        body = rng.randbytes(rng.randint(0, 300)) if method in ("PUT", "POST") else None
        unsigned = rng.random() < 0.25
        digest = UNSIGNED_PAYLOAD if unsigned else hashlib.sha256(body or b"").hexdigest()
        keys = Keys(
            _text(rng, 5).strip() or "AK",
            "secret/" + str(rng.random()),
            rng.choice((None, "", "token/+=" + str(rng.random()))),
        )
        when = datetime.datetime(
            2026,
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
        )
        expected = _botocore(keys, region, method, url, headers, body, unsigned, when, monkeypatch)
        now = when.replace(tzinfo=datetime.UTC).timestamp()
        signer = SigV4(region)
        host = canonical_host(url)
        got = signer.sign(keys, method, host, path, query, headers, digest, now=now)
        assert got.pop("Host") == host
        assert got == expected, url
        # The cached signing key and stamp give the same answer again.
        again = signer.sign(keys, method, host, path, query, headers, digest, now=now)
        again.pop("Host")
        assert again == expected


def test_signing_key_follows_the_date_and_the_secret() -> None:
    """A new day, or refreshed credentials, derive a new signing key."""
    signer = SigV4("us-east-1")
    a = Keys("AK", "one")
    first = signer.sign(a, "GET", "h", "/b/k", [], {}, UNSIGNED_PAYLOAD, now=86_400 * 20_000)
    next_day = signer.sign(a, "GET", "h", "/b/k", [], {}, UNSIGNED_PAYLOAD, now=86_400 * 20_001)
    other = signer.sign(
        Keys("AK", "two"), "GET", "h", "/b/k", [], {}, UNSIGNED_PAYLOAD, now=86_400 * 20_001
    )
    back = signer.sign(a, "GET", "h", "/b/k", [], {}, UNSIGNED_PAYLOAD, now=86_400 * 20_000)
    assert len({first["Authorization"], next_day["Authorization"], other["Authorization"]}) == 3
    assert back == first


async def _echo_server() -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        if request.method == "POST" and "uploads" in request.query:
            return web.Response(
                text="<InitiateMultipartUploadResult><UploadId>u+1/=</UploadId>"
                "</InitiateMultipartUploadResult>",
                content_type="application/xml",
            )
        if request.method == "GET" and "list-type" in request.query:
            return web.Response(
                text="<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
                content_type="application/xml",
            )
        return web.Response(body=b"x", headers={"ETag": '"e"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


@pytest.mark.parametrize("token", [None, "session/token+="])
async def test_what_the_client_sends_verifies_with_botocore(
    token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request the lean client sends, as the server receives it (method, raw path and
    query, headers, body), signs to the same Authorization with botocore's signer."""
    runner, url, seen = await _echo_server()
    keys = Keys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    client = LeanClient(S3Options(bucket="b-1", endpoint_url=url, transport="lean"), keys)
    odd = "dir/a b+c%d~e é€𝄞 &?=#"
    try:
        await client.put_object(Bucket="b-1", Key=odd, Body=b"data", Metadata={"m": "a  b"})
        await client.put_object(Bucket="b-1", Key=odd, Body=b"", IfNoneMatch="*")
        response = await client.get_object(Bucket="b-1", Key=odd, Range="bytes=0-1", IfMatch='"e"')
        async with response["Body"] as body:
            await body.read()
        await client.head_object(Bucket="b-1", Key=odd)
        await client.delete_object(Bucket="b-1", Key=odd)
        await client.list_objects_v2(Bucket="b-1", Prefix="p +%é", ContinuationToken="t+/=")
        created = await client.create_multipart_upload(Bucket="b-1", Key=odd)
        await client.upload_part(
            Bucket="b-1", Key=odd, UploadId=created["UploadId"], PartNumber=3, Body=b"p" * 1000
        )
        await client.abort_multipart_upload(Bucket="b-1", Key=odd, UploadId=created["UploadId"])
    finally:
        await client.close()
        await runner.cleanup()
    assert len(seen) == 9
    for request in seen:
        headers = request["headers"]
        stamp = headers["X-Amz-Date"]
        when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
        unsigned = headers["X-Amz-Content-SHA256"] == UNSIGNED_PAYLOAD
        if not unsigned:
            assert headers["X-Amz-Content-SHA256"] == hashlib.sha256(request["body"]).hexdigest()
        # Only the headers the client signed are given to botocore (aiohttp adds others).
        signed_names = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0]
        names = signed_names.split(";")
        assert "host" in names and "x-amz-date" in names and "x-amz-content-sha256" in names
        assert ("x-amz-security-token" in names) == bool(token)
        given = {
            k: v
            for k, v in headers.items()
            if k.lower() in names
            and k.lower() not in ("x-amz-date", "x-amz-content-sha256")
            and k.lower() != "x-amz-security-token"
        }
        expected = _botocore(
            keys,
            "us-east-1",
            request["method"],
            url + request["raw_path"],
            given,
            request["body"] or None,
            unsigned,
            when,
            monkeypatch,
        )
        assert headers["Authorization"] == expected["Authorization"]
        if token:
            assert headers["X-Amz-Security-Token"] == token
