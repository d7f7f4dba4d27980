"""The REST object service through aiohttp's TestServer/TestClient, on real stores."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from aiostore import Capability, StoreManager

from .support import HAS_FILE_DRIVER, PROBE_INTERVAL, rest_config, serve

Rest = tuple[TestClient[Any, Any], StoreManager]
DATA = b"0123456789abcdefghij"  # 20 bytes
OBJ = "/stores/s/objects/dir/obj.bin"
RETRY_AFTER = str(int(PROBE_INTERVAL) + 1)


async def put(client: TestClient[Any, Any], path: str, data: Any, **kw: Any) -> Any:
    resp = await client.put(path, data=data, **kw)
    return resp.status, await resp.json()


async def test_put_get_head_delete_round_trip(rest: Rest) -> None:
    """PUT creates (201 + the stored object), GET and HEAD describe it, DELETE removes it."""
    client, manager = rest
    status, body = await put(client, OBJ, DATA)
    assert status == 201
    assert body["size"] == len(DATA)
    assert body["checksum"] == hashlib.md5(DATA).hexdigest()
    assert body["multihash"] == hashlib.sha256(DATA).hexdigest()
    assert body["location"] == manager["s"].location("dir/obj.bin")

    resp = await client.get(OBJ)
    assert resp.status == 200
    assert await resp.read() == DATA
    assert resp.headers["Content-Length"] == "20"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["ETag"].startswith('"')
    assert "GMT" in resp.headers["Last-Modified"]

    head = await client.head(OBJ)
    assert head.status == 200
    assert head.headers["Content-Length"] == "20"
    assert head.headers["ETag"] == resp.headers["ETag"]
    assert await head.read() == b""

    resp = await client.delete(OBJ)
    assert resp.status == 204
    resp = await client.get(OBJ)
    assert resp.status == 404
    assert (await resp.json())["error"] == "NotFound"
    resp = await client.delete(OBJ)
    assert resp.status == 404
    assert (await client.head(OBJ)).status == 404


async def test_empty_object_and_odd_keys(rest: Rest) -> None:
    """An empty body stores an empty object; keys with spaces and non-ASCII survive the URL."""
    client, manager = rest
    status, body = await put(client, "/stores/s/objects/empty", b"")
    assert (status, body["size"]) == (201, 0)
    resp = await client.get("/stores/s/objects/empty")
    assert (resp.status, await resp.read()) == (200, b"")
    status, body = await put(client, "/stores/s/objects/a dir/caf\u00e9 \u2615.txt", b"x")
    assert status == 201
    assert body["key"] == "a dir/caf\u00e9 \u2615.txt"
    assert await manager["s"].read("a dir/caf\u00e9 \u2615.txt") == b"x"


async def test_metadata_header_round_trip(rest: Rest) -> None:
    """X-Aiostore-Meta (JSON) is stored with the object and returned on GET and HEAD."""
    client, _ = rest
    meta = {"owner": "me", "tags": ["a", "b"], "name": "caf\u00e9"}
    status, body = await put(
        client, OBJ, DATA, headers={"X-Aiostore-Meta": json.dumps(meta, ensure_ascii=True)}
    )
    assert status == 201
    assert body["metadata"] == meta
    for method in ("GET", "HEAD"):
        resp = await client.request(method, OBJ)
        assert json.loads(resp.headers["X-Aiostore-Meta"]) == meta
    status, _ = await put(client, "/stores/s/objects/plain", DATA)
    assert "X-Aiostore-Meta" not in (await client.head("/stores/s/objects/plain")).headers


async def test_duplicate_409_and_overwrite(rest: Rest) -> None:
    """An existing key without ?overwrite is 409 and keeps the old bytes; ?overwrite=true
    replaces them."""
    client, _ = rest
    assert (await put(client, OBJ, DATA))[0] == 201
    status, body = await put(client, OBJ, b"other")
    assert status == 409
    assert body["error"] == "Duplicate"
    assert "dir/obj.bin" in body["message"]
    assert await (await client.get(OBJ)).read() == DATA
    status, body = await put(client, OBJ, b"other", params={"overwrite": "true"})
    assert (status, body["size"]) == (201, 5)
    assert await (await client.get(OBJ)).read() == b"other"
    status, body = await put(client, OBJ, b"x", params={"overwrite": "maybe"})
    assert status == 400
    assert body["error"] == "BadRequest"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=2-5", 2, 5),
        ("bytes=15-", 15, 19),
        ("bytes=-3", 17, 19),
        ("bytes=-50", 0, 19),
        ("bytes=0-", 0, 19),
        ("bytes=10-999", 10, 19),
        ("bytes=19-19", 19, 19),
        ("BYTES = 4 - 6", 4, 6),
    ],
)
async def test_single_range_206(rest: Rest, header: str, start: int, end: int) -> None:
    """One satisfiable range: 206, Content-Range, Content-Length and exactly those bytes."""
    client, _ = rest
    await put(client, OBJ, DATA)
    resp = await client.get(OBJ, headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/20"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert await resp.read() == DATA[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=20-", "bytes=100-200", "bytes=-0"])
async def test_unsatisfiable_range_416(rest: Rest, header: str) -> None:
    """A valid range that selects nothing: 416 with Content-Range: bytes */size."""
    client, _ = rest
    await put(client, OBJ, DATA)
    resp = await client.get(OBJ, headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == "bytes */20"
    assert (await resp.json())["error"] == "RangeNotSatisfiable"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "items=0-5",
        "bytes=5-2",
        "bytes=0-1,4-5",
        "bytes=",
        "bytes=--1",
        "bytes=\u0663-\u0664",
        "bytes=" + "9" * 5000 + "-",
    ],
)
async def test_malformed_or_multiple_ranges_are_ignored(rest: Rest, header: str) -> None:
    """Malformed Range headers and multi-range requests are ignored: 200 and the whole object
    (RFC 9110 section 14.2 lets a server ignore Range)."""
    client, _ = rest
    await put(client, OBJ, DATA)
    resp = await client.get(OBJ, headers={"Range": header})
    assert resp.status == 200
    assert "Content-Range" not in resp.headers
    assert await resp.read() == DATA


async def test_range_of_empty_object_is_416(rest: Rest) -> None:
    """No range of an empty object is satisfiable; without Range it is a plain 200."""
    client, _ = rest
    await put(client, "/stores/s/objects/empty", b"")
    for header in ("bytes=0-", "bytes=-5"):
        resp = await client.get("/stores/s/objects/empty", headers={"Range": header})
        assert resp.status == 416
        assert resp.headers["Content-Range"] == "bytes */0"


async def test_if_range(rest: Rest) -> None:
    """If-Range with our ETag serves the range; a stale or weak validator serves everything."""
    client, _ = rest
    await put(client, OBJ, DATA)
    etag = (await client.head(OBJ)).headers["ETag"]
    last_modified = (await client.head(OBJ)).headers["Last-Modified"]
    for validator, status in (
        (etag, 206),
        (last_modified, 206),
        ('"stale"', 200),
        ("W/" + etag, 200),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
    ):
        resp = await client.get(OBJ, headers={"Range": "bytes=0-3", "If-Range": validator})
        assert resp.status == status, validator
        assert await resp.read() == (DATA[:4] if status == 206 else DATA)


async def test_unknown_store_404(rest: Rest) -> None:
    """Every route of an unknown store is 404 UnknownStore."""
    client, _ = rest
    for method in ("GET", "PUT", "DELETE"):
        resp = await client.request(method, "/stores/nope/objects/k", data=b"x")
        assert resp.status == 404, method
        assert (await resp.json())["error"] == "UnknownStore"
    assert (await client.head("/stores/nope/objects/k")).status == 404
    assert (await client.get("/stores/nope")).status == 404
    assert (await client.get("/stores/nope/objects")).status == 404


@pytest.mark.parametrize("path", ["a/", "a%01b", "a%00b", "a%7F"])
async def test_invalid_key_400(rest: Rest, path: str) -> None:
    """Keys the contract refuses (empty segment, control characters) are 400 InvalidKey."""
    client, _ = rest
    status, body = await put(client, f"/stores/s/objects/{path}", b"x")
    assert status == 400
    assert body["error"] == "InvalidKey"
    assert (await client.get(f"/stores/s/objects/{path}")).status == 400


@pytest.mark.skipif(not HAS_FILE_DRIVER, reason="aiostore.drivers.file is missing")
async def test_a_key_shaped_like_the_drivers_own_files_is_an_ordinary_key(tmp_path: Path) -> None:
    """Every driver accepts the same keys (issue 15 #9): a name shaped like the file driver's
    own files (.aiostore- names) is stored and read back like any other."""
    async with serve(rest_config("file", tmp_path)) as (client, _):
        status, _ = await put(client, "/stores/s/objects/x/.a.aiostore-tmp-1", b"x")
        assert status == 201
        got = await client.get("/stores/s/objects/x/.a.aiostore-tmp-1")
        assert (got.status, await got.read()) == (200, b"x")


async def test_invalid_metadata_400(rest: Rest) -> None:
    """Metadata that is not JSON, or not str leaves, is 400 InvalidMetadata; nothing is stored."""
    client, _ = rest
    for header in ("{not json", json.dumps({"n": 1}), json.dumps(["a"])):
        status, body = await put(client, OBJ, DATA, headers={"X-Aiostore-Meta": header})
        assert status == 400, header
        assert body["error"] == "InvalidMetadata"
    assert (await client.head(OBJ)).status == 404


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(("declared", "parts"), [(20, [b"x" * 5, b"y" * 5]), (5, [b"x" * 10])])
async def test_size_mismatch_400(rest: Rest, declared: int, parts: list[bytes]) -> None:
    """A chunked body whose length differs from ?size= is 400 SizeMismatch, and nothing is
    stored."""
    client, _ = rest
    status, body = await put(client, OBJ, _chunks(*parts), params={"size": str(declared)})
    assert status == 400
    assert body["error"] == "SizeMismatch"
    assert (await client.head(OBJ)).status == 404


async def test_size_query_conflicting_with_content_length_400(rest: Rest) -> None:
    """?size= must agree with Content-Length."""
    client, _ = rest
    status, body = await put(client, OBJ, DATA, params={"size": "21"})
    assert (status, body["error"]) == (400, "SizeMismatch")
    status, body = await put(client, OBJ, DATA, params={"size": "-1"})
    assert (status, body["error"]) == (400, "BadRequest")
    status, body = await put(client, OBJ, DATA, params={"size": "20"})
    assert status == 201


async def test_short_body_with_content_length_stores_nothing(rest: Rest) -> None:
    """A client that promises 100 bytes, sends 50 and hangs up gets nothing stored (the put is
    all-or-nothing); the server keeps serving."""
    client, manager = rest
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"PUT /stores/s/objects/short HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
        + b"x" * 50
    )
    await writer.drain()
    await asyncio.sleep(0.1)  # the server is now inside store.put, waiting for more
    writer.close()
    assert await reader.read() == b""
    for _ in range(20):
        await asyncio.sleep(0.02)
        assert not await manager["s"].exists("short")
    assert (await put(client, "/stores/s/objects/short", DATA))[0] == 201


async def test_unknown_hash_algo_400(rest: Rest) -> None:
    """?hash_algo= picks the multihash; an unknown one is 400 UnknownHashingAlgo."""
    client, _ = rest
    status, body = await put(client, OBJ, DATA, params={"hash_algo": "sha512"})
    assert body["multihash"] == hashlib.sha512(DATA).hexdigest()
    status, body = await put(client, "/stores/s/objects/k2", DATA, params={"hash_algo": "nope"})
    assert (status, body["error"]) == (400, "UnknownHashingAlgo")


async def test_storage_full_507(rest: Rest) -> None:
    """A put beyond the store's space is 507 StorageFull."""
    client, _ = rest
    status, body = await put(client, "/stores/tiny/objects/k", b"x" * 32)
    assert (status, body["error"]) == (507, "StorageFull")


async def test_permanent_write_capability_405_with_allow(rest: Rest) -> None:
    """Writes to a store configured read-only are 405 with Allow: GET, HEAD."""
    client, _ = rest
    for method in ("PUT", "DELETE"):
        resp = await client.request(method, "/stores/ro/objects/k", data=b"x")
        assert resp.status == 405, method
        assert resp.headers["Allow"] == "GET, HEAD"
        body = await resp.json()
        assert body["transient"] is False
        assert body["error"] in ("StoreAddDisabled", "StoreDeleteNotSupported")


async def test_permanent_range_capability_501(rest: Rest) -> None:
    """A store that can never read ranges answers a partial range with 501; a range covering
    the whole object is still served (no ranged read needed); HEAD says Accept-Ranges: none."""
    client, _ = rest
    await put(client, "/stores/seq/objects/k", DATA)
    resp = await client.get("/stores/seq/objects/k", headers={"Range": "bytes=2-5"})
    assert resp.status == 501
    body = await resp.json()
    assert (body["error"], body["transient"]) == ("StoreRandomGetNotSupported", False)
    resp = await client.get("/stores/seq/objects/k", headers={"Range": "bytes=0-"})
    assert (resp.status, await resp.read()) == (206, DATA)
    assert (await client.head("/stores/seq/objects/k")).headers["Accept-Ranges"] == "none"


async def test_transient_write_revocation_503_with_retry_after(rest: Rest) -> None:
    """A backend turning read-only: the failing put is 503 (and revokes WRITE_ACCESS), later
    writes are a transient StoreAddDisabled 503 with Retry-After = ceil(probe interval); after
    recovery and a probe, writes work again."""
    client, manager = rest
    store = manager["s"]
    await put(client, "/stores/s/objects/keep", DATA)
    store.faults.read_only = True
    resp = await client.put(OBJ, data=DATA)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == RETRY_AFTER
    assert (await resp.json())["error"] == "StorageWriteDenied"
    assert Capability.WRITE_ACCESS not in store.capabilities

    resp = await client.put(OBJ, data=DATA)
    body = await resp.json()
    assert (resp.status, body["error"], body["transient"]) == (503, "StoreAddDisabled", True)
    assert resp.headers["Retry-After"] == RETRY_AFTER
    assert "WRITE_ACCESS" in body["message"]
    resp = await client.delete("/stores/s/objects/keep")
    assert (resp.status, (await resp.json())["error"]) == (503, "StoreDeleteNotSupported")
    assert (await client.get("/stores/s/objects/keep")).status == 200  # reads still work

    store.faults.clear()
    await store.probe()
    assert Capability.WRITE_ACCESS in store.capabilities
    assert (await put(client, OBJ, DATA))[0] == 201


async def test_transient_range_revocation_503(rest: Rest) -> None:
    """A backend that stops honouring ranges: ranged GETs are 503 (transient), whole GETs 200."""
    client, manager = rest
    await put(client, OBJ, DATA)
    manager["s"].faults.drop_random = True
    for _ in range(2):  # the failing read, then the check routine on the revoked capability
        resp = await client.get(OBJ, headers={"Range": "bytes=2-5"})
        body = await resp.json()
        assert (resp.status, body["error"]) == (503, "StoreRandomGetNotSupported")
        assert body["transient"] is True
        assert resp.headers["Retry-After"] == RETRY_AFTER
    assert Capability.READ_RANDOM not in manager["s"].capabilities
    resp = await client.get(OBJ)
    assert (resp.status, await resp.read()) == (200, DATA)
    assert (await client.head(OBJ)).headers["Accept-Ranges"] == "none"


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [(errno.EIO, 503, "BackendUnavailable"), (errno.ETIMEDOUT, 504, "OperationTimeout")],
)
async def test_backend_errors(rest: Rest, code: int, status: int, error: str) -> None:
    """BackendUnavailable is 503 with Retry-After; OperationTimeout is 504."""
    client, manager = rest
    manager["s"].faults.write_errno = code
    resp = await client.put(OBJ, data=DATA)
    assert resp.status == status
    assert (await resp.json())["error"] == error
    assert ("Retry-After" in resp.headers) == (status == 503)


async def test_snapshot_listing_and_probe_routes(rest: Rest) -> None:
    """GET /stores is manager.snapshot(); /stores/{s} one store; listing with prefix and limit;
    POST /stores/{s}/probe probes now."""
    client, manager = rest
    resp = await client.get("/stores")
    snap = await resp.json()
    assert snap["running"] is True
    assert snap["default"] == "s"
    assert list(snap["stores"]) == manager.names
    assert snap["stores"]["ro"]["configured"]["value"] == int(manager["ro"].configured_capabilities)
    one = await (await client.get("/stores/s")).json()
    assert one["driver"] == manager["s"].driver.name

    for key in ("a/1", "a/2", "a/3", "b/1"):
        await put(client, f"/stores/s/objects/{key}", key.encode())
    listing = await (await client.get("/stores/s/objects", params={"prefix": "a/"})).json()
    assert [o["key"] for o in listing["objects"]] == ["a/1", "a/2", "a/3"]
    assert listing["truncated"] is False
    listing = await (await client.get("/stores/s/objects", params={"limit": "2"})).json()
    assert (len(listing["objects"]), listing["truncated"]) == (2, True)
    assert (await client.get("/stores/s/objects", params={"limit": "0"})).status == 400

    probes = manager["s"].health.probes
    resp = await client.post("/stores/s/probe")
    assert resp.status == 200
    assert (await resp.json())["health"]["probes"] == probes + 1


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_expect_100_continue_rejects_before_the_body(rest: Rest) -> None:
    """With Expect: 100-continue a doomed PUT (read-only store, existing key, unknown store) is
    answered at once, so the client never uploads; a good one gets 100 Continue."""
    client, _ = rest
    assert client.port is not None
    await put(client, OBJ, DATA)

    def request(path: str) -> bytes:
        return (
            f"PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()

    for path, status in (
        ("/stores/ro/objects/k", b"405"),
        (OBJ, b"409"),
        ("/stores/nope/objects/k", b"404"),
        ("/stores/s/objects/a/", b"400"),
    ):
        head = await _raw(client.port, request(path))
        assert head.split(b" ", 2)[1] == status, path
    head = await _raw(client.port, request(OBJ + "?overwrite=true"))
    assert head.startswith(b"HTTP/1.1 100 Continue")
    head = await _raw(client.port, request("/stores/s/objects/new"))
    assert head.startswith(b"HTTP/1.1 100 Continue")
