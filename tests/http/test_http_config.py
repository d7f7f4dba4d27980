"""Options, secrets, locations, the read-only surface and the session's life cycle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from typing import Any

import pytest

from aiostore import (
    BadStoreConfiguration,
    Capability,
    StoreAddDisabled,
    StoreDeleteNotSupported,
    StoreError,
    StoreGetNotSupported,
    StoreManager,
    StoreWriteNotSupported,
)
from aiostore.drivers.http import HTTPDriver, HTTPOptions, HTTPSession

from .support import HELLO, WebServer, http_store, store_config

SECRET = "Bearer s3cr3t-t0ken-value"


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({}, "base_url", "is required"),
        ({"base_url": "ftp://127.0.0.1/x/"}, "base_url", "http:// or https://"),
        ({"base_url": "/relative/path"}, "base_url", "http:// or https://"),
        ({"base_url": "http:///nohost"}, "base_url", "has no host"),
        ({"base_url": "http://127.0.0.1/x?token=1"}, "base_url", "query or fragment"),
        ({"base_url": "http://127.0.0.1/x#frag"}, "base_url", "query or fragment"),
        ({"base_url": 42}, "base_url", "must be a string"),
        ({"base_url": "http://u:pw@127.0.0.1/"}, "base_url", "Authorization header"),
        ({"headers": {"X-A": 1}}, "headers", "table of strings"),
        ({"headers": "Authorization: x"}, "headers", "table of strings"),
        ({"headers": {"X-A": "v\r\nHost: evil"}}, "headers", "line break"),
        ({"headers": {"Bad Name": "v"}}, "headers", "not a valid header name"),
        ({"headers": {"Range": "bytes=0-"}}, "headers", "set by the driver"),
        ({"headers": {"accept-encoding": "gzip"}}, "headers", "set by the driver"),
        ({"connect_timeout": 0}, "connect_timeout", "positive"),
        ({"read_timeout": -1.0}, "read_timeout", "positive"),
        ({"read_timeout": "10"}, "read_timeout", "a number"),
        ({"max_redirects": -1}, "max_redirects", "≥ 0"),
        ({"max_redirects": 2.5}, "max_redirects", "whole number"),
        ({"verify_tls": "no"}, "verify_tls", "true or false"),
        ({"probe_path": "../up"}, "probe_path", "relative to base_url"),
        ({"probe_path": "/abs"}, "probe_path", "relative to base_url"),
        ({"degraded_latency": 0}, "degraded_latency", "positive"),
        ({"bucket": "x"}, "bucket", "unknown option"),
    ],
)
def test_bad_options_name_the_store_and_option(
    options: dict[str, Any], option: str, words: str
) -> None:
    """Every bad option is a BadStoreConfiguration naming store and option."""
    config = {"base_url": "http://127.0.0.1:9/data/", **options}
    if options == {}:
        del config["base_url"]
    with pytest.raises(BadStoreConfiguration) as err:
        StoreManager({"stores": {"web": {"driver": "http", **config}}})
    assert err.value.option == option
    assert err.value.store == "web"
    assert words in str(err.value)
    assert "pw" not in str(err.value) and "evil" not in str(err.value)


def test_base_url_is_normalized_and_locations_are_object_urls() -> None:
    """A trailing '/' is added; location(key) is the object's URL; resolve maps it back."""
    manager = StoreManager(store_config("HTTP://127.0.0.1:8123/files/my dir"))
    store = manager["web"]
    assert store.location_prefix == "http://127.0.0.1:8123/files/my%20dir/"
    location = store.location("a b/c.txt")
    assert location == "http://127.0.0.1:8123/files/my%20dir/a%20b/c.txt"
    assert manager.resolve(location) == (store, "a b/c.txt")
    options = store.driver.options
    assert isinstance(options, HTTPOptions)
    assert (options.max_redirects, options.verify_tls, options.probe_path) == (5, True, "")


def test_capabilities_are_read_only() -> None:
    """Native READ_RANDOM | DRIVER_REUSABLE; never a write capability, even configured."""
    store = StoreManager(store_config("http://127.0.0.1:9/"))["web"]
    expected = Capability.READ_RANDOM | Capability.DRIVER_REUSABLE
    assert store.native_capabilities == expected
    assert store.configured_capabilities == expected
    assert HTTPDriver.probe_capabilities == (Capability.READ_ACCESS, Capability.READ_RANDOM)
    assert HTTPDriver.schemes == ("http", "https")


async def test_headers_are_sent_but_never_shown(
    server: WebServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The configured header reaches the server; its value is in no repr, snapshot, error
    message or log record."""
    caplog.set_level(logging.DEBUG)
    config = store_config(
        server.base_url, probe_path="hello.txt", headers={"Authorization": SECRET}
    )
    async with StoreManager(config) as manager:
        store = manager["web"]
        assert await store.read("hello.txt") == HELLO
        with pytest.raises(StoreError) as err:
            await store.read("nope")
        shown = [
            repr(store.driver),
            repr(store.driver.options),
            json.dumps(manager.snapshot()),
            json.dumps(store.driver.describe()),
            str(err.value),
            repr(err.value),
        ]
    assert all(r.headers.get("Authorization") == SECRET for r in server.requests)
    assert manager.snapshot()["stores"]["web"]["options"]["headers"] == "***"
    for text in [*shown, caplog.text]:
        assert "s3cr3t" not in text


async def test_writes_are_refused_before_any_request(server: WebServer) -> None:
    """put/write/delete: the check routine's permanent errors; the input is never read."""
    consumed = []

    async def data() -> Any:
        consumed.append(True)
        yield b"x"

    async with http_store(server.base_url, probe_path="hello.txt") as store:
        before = len(server.requests)
        with pytest.raises(StoreAddDisabled) as put:
            await store.put("new.txt", data())
        with pytest.raises(StoreWriteNotSupported) as write:
            await store.write("hello.txt", b"x", offset=0)
        with pytest.raises(StoreDeleteNotSupported) as delete:
            await store.delete("hello.txt")
        for err in (put, write, delete):
            assert err.value.transient is False
        assert not consumed
        assert len(server.requests) == before


async def test_sessions_refuse_writes_too(server: WebServer) -> None:
    """Called directly (manager.session), the driver session raises the same errors."""

    async def nothing() -> Any:
        yield b""

    async with (
        StoreManager(store_config(server.base_url)) as manager,
        manager.session("web") as session,
    ):
        with pytest.raises(StoreAddDisabled) as put:
            await session.put("k", nothing(), size=None, overwrite=False, metadata={})
        with pytest.raises(StoreDeleteNotSupported) as delete:
            await session.delete("k")
        with pytest.raises(StoreWriteNotSupported):
            await session.write("k", b"x", 0)
        assert put.value.transient is False and delete.value.transient is False
        # A key that would leave base_url is refused here as well.
        with pytest.raises(StoreError):
            await session.read("../secret.txt", 0, None)


async def test_list_is_not_possible_over_http(server: WebServer) -> None:
    """Listing raises StoreGetNotSupported (permanent) saying why; nothing is requested."""
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        before = len(server.requests)
        with pytest.raises(StoreGetNotSupported) as err:
            async for _ in store.list():
                pass
        assert err.value.transient is False
        assert "not possible over plain HTTP" in str(err.value)
        assert err.value.store == "web"
        assert len(server.requests) == before
        # A permanent "cannot" is not a health fault.
        assert store.capabilities == store.configured_capabilities


async def test_one_client_session_per_loop_closed_with_the_manager(server: WebServer) -> None:
    """The shared driver session wraps one aiohttp ClientSession; leaving the manager closes
    it; a session used from another event loop reports itself broken."""
    config = store_config(server.base_url, probe_path="hello.txt")
    async with (
        StoreManager(config) as manager,
        manager.session("web") as a,
        manager.session("web") as b,
    ):
        assert a is b
        assert isinstance(a, HTTPSession)
        assert not a.is_broken
        client = a._client
        from_other_loop: list[bool] = []
        thread = threading.Thread(target=lambda: from_other_loop.append(asyncio.run(_is_broken(a))))
        thread.start()
        thread.join()
        assert from_other_loop == [True]
    assert client.closed
    assert a.is_broken
    await a.aclose()  # idempotent


async def _is_broken(session: HTTPSession) -> bool:
    return session.is_broken


async def test_a_driver_without_a_running_server_starts_and_reports_it() -> None:
    """Start-up never raises because the server is down: the probe revokes instead."""
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        config = store_config(f"http://127.0.0.1:{port}/data/")
        async with StoreManager(config) as manager:
            store = manager["web"]
            assert Capability.READ_ACCESS not in store.capabilities
            assert "cannot connect" in store.health.capabilities["READ_ACCESS"].reason
            with pytest.raises(StoreGetNotSupported) as err:
                await store.read("x")
            assert err.value.transient is True


async def test_https_verifies_certificates_unless_told_not_to(tls_server: WebServer) -> None:
    """A self-signed certificate: refused by default (READ_ACCESS revoked, the reason says
    TLS); accepted with verify_tls = false, Range included."""
    assert tls_server.base_url.startswith("https://")
    async with http_store(tls_server.base_url, probe_path="hello.txt") as store:
        assert Capability.READ_ACCESS not in store.capabilities
        assert "TLS failed" in store.health.capabilities["READ_ACCESS"].reason
    assert not tls_server.requests
    async with http_store(tls_server.base_url, probe_path="hello.txt", verify_tls=False) as store:
        assert store.is_capable(Capability.READ_RANDOM)
        assert await store.read("hello.txt", offset=7) == HELLO[7:]
