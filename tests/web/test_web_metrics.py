"""Prometheus metrics (issue 19): GET /metrics through an embedding app, on the public hooks."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import aiostore.web
from aiostore import Capability
from aiostore.web._metrics import metrics_routes


def _value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_follow_operations_probes_and_capabilities(tmp_path: Path) -> None:
    app = web.Application()
    config = {
        "probe": {"interval": 3600.0},
        "stores": {"local": {"driver": "file", "root": str(tmp_path)}},
    }
    aiostore.web.setup(app, config)
    app.add_routes(metrics_routes())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        manager = app[aiostore.web.STORES]
        store = manager["local"]
        await store.put("a", b"hello")
        assert await store.read("a") == b"hello"
        try:
            await store.read("missing")
        except Exception:
            pass
        await manager.probe("local")

        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
        held = _value(text, "aiostore_capability_held", store="local", capability="WRITE_ACCESS")
        assert held == 1.0
        ops = "aiostore_operations_total"
        assert _value(text, ops, store="local", operation="put", outcome="ok") == 1.0
        assert _value(text, ops, store="local", operation="read", outcome="NotFound") == 1.0
        assert _value(text, "aiostore_bytes_total", store="local", direction="written") == 5.0
        assert _value(text, "aiostore_bytes_total", store="local", direction="read") == 5.0
        probes = _value(text, "aiostore_probe_duration_seconds_count", store="local")
        assert probes is not None and probes >= 1

        store.unset_capabilities(Capability.WRITE_ACCESS, reason="maintenance")
        text = await (await client.get("/metrics")).text()
        held = _value(text, "aiostore_capability_held", store="local", capability="WRITE_ACCESS")
        assert held == 0.0
        revoked = _value(text, "aiostore_capability_changes_total", store="local")
        assert revoked == 1.0
