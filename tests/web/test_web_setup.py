"""aiostore.web.setup(): the manager's lifetime follows the application's."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import aiostore.web
from aiostore import BadStoreConfiguration, StoreManager

CONFIG = {"stores": {"m": {"driver": "memory"}}}


async def test_manager_runs_with_the_app_and_closes_on_shutdown() -> None:
    """app[STORES] is the manager; it probes while the app runs and is closed at cleanup."""
    app = web.Application()
    manager = aiostore.web.setup(app, CONFIG)
    assert app[aiostore.web.STORES] is manager
    assert isinstance(aiostore.web.STORES, web.AppKey)
    app.add_routes(aiostore.web.object_routes())
    assert manager.snapshot()["running"] is False
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert manager.snapshot()["running"] is True
        assert manager["m"].health.probes == 1  # the start-up probe ran before serving
        assert (await client.get("/stores")).status == 200
    assert manager.snapshot()["running"] is False


async def test_app_runner_and_a_toml_file(tmp_path: Path) -> None:
    """setup() takes a TOML path; the app works under a plain AppRunner on 127.0.0.1."""
    config = tmp_path / "stores.toml"
    config.write_text('[stores.m]\ndriver = "memory"\n')
    app = aiostore.web.create_app(config)
    manager = app[aiostore.web.STORES]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session:
            async with session.put(f"http://{host}:{port}/stores/m/objects/k", data=b"v") as r:
                assert r.status == 201
            async with session.get(f"http://{host}:{port}/stores/m/objects/k") as r:
                assert await r.read() == b"v"
        assert manager.snapshot()["running"] is True
    finally:
        await runner.cleanup()
    assert manager.snapshot()["running"] is False


async def test_routes_in_a_sub_application() -> None:
    """Routes mounted in a sub-app find the manager set up on the parent (config_dict), and the
    dashboard's relative links resolve under the prefix."""
    app = web.Application()
    aiostore.web.setup(app, StoreManager(CONFIG))
    sub = web.Application()
    sub.add_routes(aiostore.web.object_routes())
    app.add_subapp("/storage/", sub)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.put("/storage/stores/m/objects/k", data=b"v")).status == 201
        assert await (await client.get("/storage/stores/m/objects/k")).read() == b"v"
        page = await (await client.get("/storage/")).text()
        assert 'src="dashboard/dashboard.js"' in page
        assert (await client.get("/storage/dashboard/dashboard.js")).status == 200
        assert (await client.get("/storage/dashboard/nope.js")).status == 404


def test_bad_configuration_fails_at_setup() -> None:
    """A bad configuration raises BadStoreConfiguration from setup(), before the app starts."""
    with pytest.raises(BadStoreConfiguration, match="nope"):
        aiostore.web.setup(web.Application(), {"stores": {"x": {"driver": "nope"}}})


def test_setup_twice_is_an_error() -> None:
    """One manager per application."""
    app = web.Application()
    aiostore.web.setup(app, CONFIG)
    with pytest.raises(RuntimeError, match="already"):
        aiostore.web.setup(app, CONFIG)


async def test_routes_without_setup_fail_clearly() -> None:
    """Forgetting setup() is a 500 whose log names the fix."""
    app = web.Application()
    app.add_routes(aiostore.web.object_routes(dashboard=False))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/stores")).status == 500
        assert (await client.get("/")).status == 404


def test_heartbeat_must_be_positive() -> None:
    """A zero heartbeat would spin."""
    with pytest.raises(ValueError, match="heartbeat"):
        aiostore.web.object_routes(heartbeat=0)


def test_binds_nothing_but_loopback() -> None:
    """The test servers of this suite listen on 127.0.0.1 only (TestServer's default host is
    what we pass explicitly)."""
    server = TestServer(web.Application(), host="127.0.0.1")
    assert server.host == "127.0.0.1"
    assert socket.inet_aton(server.host)
