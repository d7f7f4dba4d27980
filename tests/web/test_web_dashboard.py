"""The dashboard in a real headless browser (Debian's chromium driven by playwright)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from aiostore import Capability, StorageWriteDenied
from aiostore.capabilities.flags import NAMED
from aiostore.web import ServerOptions

from .support import HAS_FILE_DRIVER, serve, store_config

CHROMIUM = os.environ.get("AIOSTORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SHOT = Path("/tmp/aiostore-dashboard.png")

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the environment
    async_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        async_playwright is None, reason="the playwright package is not installed (test extra)"
    ),
    pytest.mark.skipif(
        not os.access(CHROMIUM, os.X_OK),
        reason=f"no chromium at {CHROMIUM} (apt-get install chromium; see .ci/system-deps)",
    ),
]


def cell(store: str, layer: str, cap: str, held: bool | None = None) -> str:
    sel = f'td[data-store="{store}"][data-layer="{layer}"][data-cap="{cap}"]'
    return sel if held is None else sel + f'[data-held="{str(held).lower()}"]'


async def test_dashboard_shows_a_revocation_within_two_seconds(tmp_path: Path) -> None:
    """The page paints every store's three layers as a 13-column grid; revoking WRITE_ACCESS
    (a put into a backend that turned read-only) shows on the page within 2 s, with a timeline
    entry; restoring it shows too. Screenshots go to tmp_path and /tmp/aiostore-dashboard.png."""
    stores: dict[str, Any] = {
        "mem": {"driver": "memory"},
        "archive": {"driver": "memory", "read_only": True},
    }
    if HAS_FILE_DRIVER:
        stores["disk"] = store_config("file", tmp_path, "disk")
    config = {"probe": {"interval": 30.0, "failures_to_revoke": 1, "successes_to_restore": 1}}
    config["stores"] = stores
    assert async_playwright is not None
    async with serve(config, heartbeat=1.0) as (client, manager):
        url = str(client.make_url("/"))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(url)
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", True), timeout=5000
                )

                for name in stores:
                    for layer in ("native", "configured", "current"):
                        caps = await page.eval_on_selector_all(
                            f'td[data-store="{name}"][data-layer="{layer}"]',
                            "cells => cells.map(c => c.dataset.cap)",
                        )
                        assert caps == [c.name for c in NAMED], (name, layer)
                # The read-only store: writable natively, off by configuration.
                assert (
                    await page.get_attribute(cell("archive", "native", "WRITE_ACCESS"), "data-held")
                    == "true"
                )
                assert (
                    await page.get_attribute(
                        cell("archive", "configured", "WRITE_ACCESS"), "data-held"
                    )
                    == "false"
                )
                assert (
                    await page.get_attribute(cell("archive", "current", "READ_RANDOM"), "data-held")
                    == "true"
                )
                assert await page.get_attribute("#conn", "data-state") == "live"

                store = manager["mem"]
                store.faults.read_only = True
                started = time.monotonic()
                with pytest.raises(StorageWriteDenied):
                    await store.put("k", b"v")
                assert Capability.WRITE_ACCESS not in store.capabilities
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", False), timeout=2000
                )
                assert time.monotonic() - started < 2.0
                assert "revoked" in (
                    await page.get_attribute(cell("mem", "current", "WRITE_ACCESS"), "class") or ""
                )
                assert (
                    await page.get_attribute(cell("mem", "configured", "WRITE_ACCESS"), "data-held")
                    == "true"
                )
                assert (
                    await page.get_attribute(cell("mem", "current", "READ_ACCESS"), "data-held")
                    == "true"
                )
                await page.wait_for_selector(
                    '#timeline li[data-store="mem"][data-kind="revoked"]', timeout=2000
                )
                assert await page.get_attribute("#store-mem", "data-healthy") == "false"
                # Health details (the reason) arrive with the refresh that follows a change.
                await page.wait_for_selector(
                    '#store-mem .reasons li[data-revoked="true"]', timeout=2000
                )
                await page.screenshot(path=str(tmp_path / "dashboard-revoked.png"), full_page=True)
                shutil.copyfile(tmp_path / "dashboard-revoked.png", SHOT)

                store.faults.clear()
                await store.probe()
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", True), timeout=2000
                )
                await page.wait_for_selector(
                    '#timeline li[data-store="mem"][data-kind="restored"]', timeout=2000
                )
                await page.screenshot(path=str(tmp_path / "dashboard-restored.png"), full_page=True)
                assert errors == []
            finally:
                await browser.close()


async def test_dashboard_asks_for_the_token_once_and_works_with_it(tmp_path: Path) -> None:
    """Behind ``--token-file`` the page asks for the token (a wrong one is refused and asked
    again), then paints the grid, follows the event stream and probes with it; a reload in the
    same tab does not ask again; its buttons unset and set WRITE_ACCESS with a reason."""
    (tmp_path / "token").write_text("dash-token\n")
    config = {
        "probe": {"interval": 30.0, "failures_to_revoke": 1, "successes_to_restore": 1},
        "stores": {"mem": {"driver": "memory"}},
    }
    server = ServerOptions(token_file=str(tmp_path / "token"))
    assert async_playwright is not None
    async with serve(config, heartbeat=1.0, server=server) as (client, manager):
        assert (await client.get("/stores")).status == 401
        url = str(client.make_url("/"))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(url)
                await page.wait_for_selector("#login:not([hidden])", timeout=5000)
                assert await page.query_selector(cell("mem", "current", "WRITE_ACCESS")) is None

                await page.fill("#token", "not-the-token")
                await page.click("#login button[type=submit]")
                await page.wait_for_function(
                    "document.getElementById('login-message').textContent.includes('refused')",
                    timeout=5000,
                )
                assert not await page.is_hidden("#login")

                await page.fill("#token", "dash-token")
                await page.click("#login button[type=submit]")
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", True), timeout=5000
                )
                assert await page.is_hidden("#login")
                await page.wait_for_selector('#conn[data-state="live"]', timeout=5000)

                # The event stream runs with the token: a revocation shows at once.
                store = manager["mem"]
                store.faults.read_only = True
                with pytest.raises(StorageWriteDenied):
                    await store.put("k", b"v")
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", False), timeout=3000
                )
                # "probe now" is a POST with the token.
                store.faults.clear()
                async with page.expect_response("**/stores/mem/probe") as probed:
                    await page.click("#store-mem .probe-now")
                assert (await probed.value).status == 200
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", True), timeout=3000
                )

                # Same tab, new page load: the token is remembered, nothing is asked.
                await page.reload()
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", True), timeout=5000
                )
                assert await page.is_hidden("#login")

                # The operator's buttons: take the store out of writes with a reason, and back.
                await page.fill("#store-mem .unset-reason", "maintenance")
                await page.click('#store-mem .writes-toggle[data-action="unset"]')
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", False), timeout=3000
                )
                await page.wait_for_selector(
                    '#store-mem .override[data-unset*="WRITE_ACCESS"]:not([hidden])', timeout=3000
                )
                assert "maintenance" in (await page.text_content("#store-mem .override") or "")
                assert Capability.WRITE_ACCESS not in store.capabilities
                await page.screenshot(path=str(tmp_path / "dashboard-unset.png"), full_page=True)
                await page.click('#store-mem .writes-toggle[data-action="set"]')
                await page.wait_for_selector(
                    cell("mem", "current", "WRITE_ACCESS", True), timeout=3000
                )
                assert await page.is_hidden("#store-mem .override")
                assert Capability.WRITE_ACCESS in store.capabilities
                await page.screenshot(path=str(tmp_path / "dashboard-token.png"), full_page=True)
                assert errors == []
            finally:
                await browser.close()
