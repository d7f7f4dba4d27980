"""Fixtures of the S3 driver tests: a real S3 server (moto) on 127.0.0.1, a fresh bucket per test,
store configurations and a fault proxy in front of the server."""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from aiostore import Store, StoreManager
from tests.support.faultproxy import FaultProxy

MiB = 1 << 20
#: Small parts keep the multipart paths fast: S3's minimum part size.
PART = 5 * MiB
#: The sizes every shared behaviour runs at.
SIZES = (0, 1, PART - 1, PART, int(3.5 * PART))
CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}
#: The transport the tests use (``AIOSTORE_S3_TRANSPORT``; the driver's default when unset).
TRANSPORT = os.environ.get("AIOSTORE_S3_TRANSPORT", "")
#: Probes run only when a test asks (the start-up probe still runs).
QUIET_PROBE = {"interval": 3600.0, "timeout": 5.0}


class Writes:
    """Counts the write requests (PUT/POST/DELETE) moto has started to handle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = 0

    def start(self) -> None:
        with self._lock:
            self._started += 1

    @property
    def started(self) -> int:
        with self._lock:
            return self._started


@dataclass(frozen=True, slots=True)
class Moto:
    host: str
    port: int
    writes: Writes = field(default_factory=Writes)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _linearize_writes(server: ThreadedMotoServer, writes: Writes) -> None:
    """moto checks ``If-None-Match: *`` and then stores, in threads of its own with no lock, so
    two concurrent create-only puts can both win there, unlike on S3. Serialize moto's handling
    of writes so that the server is linearizable like S3 and the tests test the driver.

    A request's body is received before it takes the lock: a client that stalls or vanishes
    halfway through a body (a cancelled part upload, whose truncated request the fault proxy
    keeps open for a while) must not hold up every other write, as it would not on S3."""
    wsgi = server._server  # werkzeug's server; handlers read `.app` per request
    assert wsgi is not None
    inner = wsgi.app
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            writes.start()
            body = _body(environ)
            if body is None:  # the client went away mid-body: nothing to store
                start_response("400 Bad Request", [("Content-Length", "0")])
                return [b""]
            environ["wsgi.input"] = io.BytesIO(body)
            with lock:
                return inner(environ, start_response)
        return inner(environ, start_response)

    wsgi.app = app


def _body(environ: dict[str, Any]) -> bytes | None:
    """The whole body of a WSGI request (chunked ones come de-chunked), None when the client
    went away before sending all of it."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        data: bytes = stream.read()
        return data
    length = int(environ.get("CONTENT_LENGTH") or 0)
    parts: list[bytes] = []
    while length > 0:
        part = stream.read(min(length, 1 << 20))
        if not part:
            return None
        parts.append(part)
        length -= len(part)
    return b"".join(parts)


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    """A moto S3 server on 127.0.0.1 for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        writes = Writes()
        _linearize_writes(server, writes)
        host, port = server.get_host_and_port()
        yield Moto(host, port, writes)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def admin(moto: Moto) -> Any:
    """A plain (sync) boto3 client on the server, to set up and inspect buckets."""
    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(admin: Any) -> Iterator[str]:
    """A fresh bucket; emptied afterwards so moto's memory stays small."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    admin.create_bucket(Bucket=name)
    yield name
    for upload in admin.list_multipart_uploads(Bucket=name).get("Uploads", []):
        admin.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    keys = [o["Key"] for o in all_objects(admin, name)]
    for i in range(0, len(keys), 1000):
        admin.delete_objects(
            Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
        )


def all_objects(admin: Any, bucket: str) -> list[dict[str, Any]]:
    pages = admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o for page in pages for o in page.get("Contents", [])]


def uploads(admin: Any, bucket: str) -> list[dict[str, Any]]:
    """Multipart uploads still open in ``bucket``."""
    return list(admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


ConfigFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def s3_config(moto: Moto, bucket: str) -> ConfigFactory:
    """``s3_config(**options)``: a manager configuration with one ``s3`` store named "s3" on the
    server (5 MiB parts and threshold); ``probe=`` replaces the probe settings."""

    def make(*, probe: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
        store: dict[str, Any] = {
            "driver": "s3",
            "bucket": bucket,
            "endpoint_url": moto.url,
            "part_size": PART,
            "multipart_threshold": PART,
            **CREDENTIALS,
        }
        if TRANSPORT:
            store["transport"] = TRANSPORT
        store.update(options)
        return {"probe": probe or dict(QUIET_PROBE), "stores": {"s3": store}}

    return make


@pytest.fixture
async def manager(s3_config: ConfigFactory) -> AsyncIterator[StoreManager]:
    async with StoreManager(s3_config()) as m:
        yield m


@pytest.fixture
async def store(manager: StoreManager) -> Store:
    return manager["s3"]


@pytest.fixture
async def proxy(moto: Moto) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the server (``proxy.url`` is the endpoint to give the store)."""
    async with FaultProxy(moto.host, moto.port) as p:
        yield p
