"""One read is one version (issue 15 defect 2, REST part): while writers replace an object, every
GET's size, ETag, metadata and Content-Range describe the very bytes of its body."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from .support import HAS_FILE_DRIVER, serve, store_config

pytestmark = pytest.mark.skipif(not HAS_FILE_DRIVER, reason="aiostore.drivers.file is missing")

SIZES = (10, 700_000, 2_000_000)
BASE = bytes(range(251)) * (SIZES[-1] // 251 + 2)
DURATION = 3.0
PATH = "/stores/s/objects/k"
RANGES = (None, "bytes=0-99", "bytes=5-", "bytes=-50", "bytes=650000-750000", "bytes=1999990-")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")


def version(vid: int) -> bytes:
    """The body of version ``vid``: its size class and a shifted pattern name it."""
    start = vid % 251
    return BASE[start : start + SIZES[vid % len(SIZES)]]


class Checks:
    def __init__(self) -> None:
        self.gets = 0
        self.ranged = 0
        self.problems: list[str] = []
        self.etags: dict[str, int] = {}

    def check(self, status: int, headers: Any, body: bytes, rng: str | None) -> None:
        self.gets += 1
        if status == 416:  # a range past the end of a shorter version: fine, if well formed
            if re.match(r"bytes \*/(\d+)$", headers.get("Content-Range", "")) is None:
                self.problems.append(f"416 with Content-Range {headers.get('Content-Range')!r}")
            return
        meta = headers.get("X-Aiostore-Meta")
        if meta is None:
            self.problems.append(f"{status} without metadata")
            return
        vid = int(json.loads(meta)["v"])
        full = version(vid)
        etag = headers.get("ETag")
        if etag is not None and self.etags.setdefault(etag, vid) != vid:
            self.problems.append(f"ETag {etag} named versions {self.etags[etag]} and {vid}")
        if int(headers["Content-Length"]) != len(body):
            self.problems.append(f"Content-Length {headers['Content-Length']} != {len(body)}")
        if status == 200:
            if body != full:
                self.problems.append(
                    f"200: metadata says v{vid} ({len(full)} B), body {len(body)} B"
                )
        elif status == 206:
            self.ranged += 1
            match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
            if match is None:
                self.problems.append(f"206 with Content-Range {headers.get('Content-Range')!r}")
                return
            first, last, total = map(int, match.groups())
            if total != len(full) or not first <= last < total:
                self.problems.append(f"206 {match.group(0)} for v{vid} of {len(full)} B")
            elif body != full[first : last + 1]:
                self.problems.append(f"206 {match.group(0)}: body is not v{vid}'s bytes")
        else:
            self.problems.append(f"GET {rng}: status {status}")


async def writer(client: TestClient[Any, Any], first: int, stop: float) -> int:
    vid, n = first, 0
    while time.monotonic() < stop:
        resp = await client.put(
            PATH,
            data=version(vid),
            params={"overwrite": "true"},
            headers={"X-Aiostore-Meta": json.dumps({"v": str(vid)})},
        )
        assert resp.status == 201, await resp.text()
        vid += 2
        n += 1
    return n


async def reader(client: TestClient[Any, Any], index: int, stop: float, checks: Checks) -> None:
    i = index
    while time.monotonic() < stop:
        rng = RANGES[i % len(RANGES)]
        i += 1
        headers = {"Range": rng} if rng else {}
        async with client.get(PATH, headers=headers) as resp:
            body = await resp.read()
            checks.check(resp.status, resp.headers, body, rng)


async def test_get_headers_always_describe_the_body(tmp_path: Path) -> None:
    config = {"probe": {"enabled": False}, "stores": {"s": store_config("file", tmp_path)}}
    async with serve(config) as (client, _):
        resp = await client.put(
            PATH, data=version(0), headers={"X-Aiostore-Meta": json.dumps({"v": "0"})}
        )
        assert resp.status == 201
        checks = Checks()
        stop = time.monotonic() + DURATION
        async with asyncio.timeout(DURATION + 60):
            written = await asyncio.gather(
                writer(client, 1, stop),
                writer(client, 2, stop),
                *(reader(client, i, stop, checks) for i in range(4)),
            )
        assert sum(n for n in written if n) >= 6, written
        assert checks.gets >= 20 and checks.ranged >= 5, (checks.gets, checks.ranged)
        assert not checks.problems, (
            f"{len(checks.problems)} of {checks.gets} GETs mixed versions: {checks.problems[:5]}"
        )
