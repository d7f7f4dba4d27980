"""Fixtures: the served tree, the aiohttp test server, raw TCP servers, an "other host"."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from .support import (
    BIG_SIZE,
    HELLO,
    MTIME,
    ConnectionCounter,
    RawHandler,
    RawServer,
    WebServer,
)


@pytest.fixture
def site_root(tmp_path: Path) -> Path:
    """The served tree: ``data/`` holds the store's objects; ``secret.txt`` lies outside it."""
    root = tmp_path / "site"
    data = root / "data"
    (data / "with space").mkdir(parents=True)
    (data / "dir").mkdir()
    (data / "hello.txt").write_bytes(HELLO)
    (data / "big.bin").write_bytes(random.Random(7).randbytes(BIG_SIZE))
    (data / "empty.bin").write_bytes(b"")
    (data / "with space" / "ünï?#.txt").write_bytes(b"unicode key")
    (data / "dir" / "nested.txt").write_bytes(b"nested")
    # A compressed sibling that a gzip-accepting client would be given instead of doc.txt.
    (data / "doc.txt").write_bytes(b"the plain document\n")
    (data / "doc.txt.gz").write_bytes(gzip.compress(b"something else entirely\n"))
    (root / "secret.txt").write_bytes(b"outside the store")
    os.utime(data / "hello.txt", (MTIME, MTIME))
    return root


@pytest.fixture
async def server(site_root: Path) -> AsyncIterator[WebServer]:
    srv = WebServer(site_root)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def other_host() -> AsyncIterator[ConnectionCounter]:
    counter = ConnectionCounter("127.0.0.2")
    await counter.start()
    try:
        yield counter
    finally:
        await counter.stop()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[RawServer]]]:
    """A factory: ``await raw_server(handler)`` starts one; all are stopped at teardown."""
    started: list[RawServer] = []

    async def start(handler: RawHandler) -> RawServer:
        srv = RawServer(handler)
        await srv.start()
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            await srv.stop()


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
async def tls_server(site_root: Path, tls_context: ssl.SSLContext) -> AsyncIterator[WebServer]:
    """The same server over https."""
    srv = WebServer(site_root, ssl_context=tls_context)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()
