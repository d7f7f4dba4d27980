"""The dashboard with a thousand stores, in a real headless browser: one page in the DOM,
degraded stores first, a filter box, and live changes through a storm."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiostore import Capability

from .support import serve
from .test_web_dashboard import CHROMIUM, CHROMIUM_ARGS, async_playwright, cell
from .test_web_dashboard import pytestmark as pytestmark
from .test_web_scale import degrade, many_stores

WRITE = Capability.WRITE_ACCESS


async def first_cards(page: Any, n: int) -> list[str]:
    """The names of the first ``n`` store cards on the page, in order."""
    names: list[str] = await page.eval_on_selector_all(
        "#stores article.store", "cards => cards.map(c => c.dataset.store)"
    )
    return names[:n]


async def test_a_thousand_stores_one_page_degraded_first_filtered_and_live(
    tmp_path: Path,
) -> None:
    """With 1,000 stores the page holds 24 cards (degraded first), asks only for pages of
    ``GET /stores`` and a summary event stream; the filter box narrows the page; a store that
    degrades moves to the top within 2 s; a storm of 1,000 flapping stores leaves the page
    showing the final state, with a bounded timeline and about one page request a second."""
    assert async_playwright is not None
    async with serve(many_stores(1000), heartbeat=1.0) as (client, manager):
        degrade(manager, ["t0500", "t0999"])
        url = str(client.make_url("/"))
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                requests: list[tuple[float, str]] = []
                page.on("request", lambda r: requests.append((time.monotonic(), r.url)))
                await page.goto(url)
                await page.wait_for_selector(
                    cell("t0500", "current", "WRITE_ACCESS", False), timeout=10000
                )
                names = await first_cards(page, 100)
                assert names[:5] == ["t0500", "t0999", "t0000", "t0001", "t0002"]
                assert len(names) == 24
                # Only the page is in the DOM: 24 cards of 3 x 13 cells.
                assert await page.eval_on_selector_all("td.cell", "c => c.length") == 24 * 39
                assert await page.get_attribute("#counts", "data-total") == "1000"
                assert await page.get_attribute("#counts", "data-degraded") == "2"
                assert await page.get_attribute("#store-t0500", "data-healthy") == "false"
                assert "1\u201324 of 1000" in (await page.text_content("#page-info") or "")
                await page.wait_for_selector('#conn[data-state="live"]', timeout=5000)

                # The filter box: the stores whose name holds "t07", 100 of them.
                await page.fill("#filter", "T07")
                await page.wait_for_function(
                    "document.querySelector('#stores article.store').dataset.store === 't0700'",
                    timeout=5000,
                )
                assert len(await first_cards(page, 100)) == 24
                assert await page.get_attribute("#counts", "data-matched") == "100"

                # Live: a store of the page degrades: shown at once, then moved to the top.
                started = time.monotonic()
                manager["t0712"].unset_capabilities(WRITE, reason="disk swap")
                await page.wait_for_selector(
                    cell("t0712", "current", "WRITE_ACCESS", False), timeout=2000
                )
                await page.wait_for_function(
                    "document.querySelector('#stores article.store').dataset.store === 't0712'",
                    timeout=3000,
                )
                assert time.monotonic() - started < 3.0
                await page.wait_for_selector(
                    '#timeline li[data-store="t0712"][data-kind="revoked"]', timeout=2000
                )
                await page.click("#next")
                await page.wait_for_function(
                    "document.querySelector('#stores article.store').dataset.store === 't0724'",
                    timeout=5000,
                )
                await page.fill("#filter", "")
                await page.select_option("#state", "degraded")
                await page.wait_for_function(
                    "document.querySelectorAll('#stores article.store').length === 3", timeout=5000
                )
                assert await first_cards(page, 5) == ["t0500", "t0712", "t0999"]

                # A storm: every store flaps 10 times; every fourth ends degraded.
                await page.select_option("#state", "")
                storm_started = time.monotonic()
                for r in range(10):
                    for i, store in enumerate(manager):
                        if r % 2 == 0:
                            store.unset_capabilities(WRITE, reason=f"storm {r}")
                        elif i % 4:
                            store.set_capabilities(WRITE)
                    await asyncio.sleep(0.05)
                storm_ended = time.monotonic()
                degraded = sum(WRITE not in s.capabilities for s in manager)
                assert degraded == 250
                await page.wait_for_function(
                    f"document.getElementById('counts').dataset.degraded === '{degraded}'",
                    timeout=10000,
                )
                # The page shows degraded stores first, each in its final state.
                await page.wait_for_function(
                    "document.querySelector('#stores article.store').dataset.store === 't0000'",
                    timeout=5000,
                )
                names = await first_cards(page, 100)
                assert names == [f"t{i:04d}" for i in range(0, 96, 4)]
                for name in names:
                    await page.wait_for_selector(
                        cell(name, "current", "WRITE_ACCESS", False), timeout=3000
                    )
                assert await page.eval_on_selector_all("#timeline li", "l => l.length") <= 200
                assert await page.eval_on_selector_all("article.store", "a => a.length") == 24
                await page.screenshot(path=str(tmp_path / "dashboard-1000.png"))
                assert errors == []
            finally:
                await browser.close()

    store_requests = [(t, u) for t, u in requests if urlsplit(u).path == "/stores"]
    # Never the whole snapshot: every request is a page.
    for _t, u in store_requests:
        query = parse_qs(urlsplit(u).query)
        assert query["sort"] == ["degraded"] and int(query["limit"][0]) <= 96, u
    events = [u for _t, u in requests if urlsplit(u).path == "/events"]
    assert events and all("snapshot=summary" in u for u in events)
    # During the storm the page is reloaded about once a second, not once per change.
    during = [t for t, _u in store_requests if storm_started <= t <= storm_ended + 0.5]
    print(
        f"\nstorm of {storm_ended - storm_started:.2f} s: {len(during)} page requests; "
        f"{len(store_requests)} in all"
    )
    assert len(during) <= (storm_ended - storm_started) + 3
