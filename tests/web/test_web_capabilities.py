"""Operator overrides over REST: ``POST /stores/{store}/capabilities`` (issue 19 item 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiostore import Capability

from .support import serve

CONFIG: dict[str, Any] = {
    "probe": {"enabled": False, "failures_to_revoke": 1, "successes_to_restore": 1},
    "stores": {"s": {"driver": "memory"}, "ro": {"driver": "memory", "read_only": True}},
}
CAPS = "/stores/s/capabilities"


async def test_unset_and_set_write_access(tmp_path: Path) -> None:
    async with serve(CONFIG) as (client, manager):
        store = manager["s"]
        resp = await client.post(CAPS, json={"unset": ["WRITE_ACCESS"], "reason": "maintenance"})
        assert resp.status == 200, await resp.text()
        snap = await resp.json()
        assert "WRITE_ACCESS" not in snap["current"]["names"]
        assert "WRITE_ACCESS" in snap["unset"]["names"]
        assert snap["unset"]["reason"] == "maintenance"
        assert Capability.WRITE_ACCESS not in store.capabilities

        resp = await client.put("/stores/s/objects/k", data=b"v")
        assert resp.status == 503
        body = await resp.json()
        assert "maintenance" in body["message"] + body.get("reason", "")
        # Probing does not bring it back.
        await store.probe()
        assert (await client.put("/stores/s/objects/k", data=b"v")).status == 503
        # Reads still work.
        assert (await client.get("/stores/s/objects")).status == 200

        resp = await client.post(CAPS, json={"set": ["WRITE_ACCESS"]})
        assert resp.status == 200
        assert "WRITE_ACCESS" in (await resp.json())["current"]["names"]
        assert (await client.put("/stores/s/objects/k", data=b"v")).status == 201


async def test_set_never_exceeds_the_configuration(tmp_path: Path) -> None:
    async with serve(CONFIG) as (client, _):
        resp = await client.post("/stores/ro/capabilities", json={"set": ["WRITE_ACCESS"]})
        assert resp.status == 200
        assert "WRITE_ACCESS" not in (await resp.json())["current"]["names"]
        assert (await client.put("/stores/ro/objects/k", data=b"v")).status == 405


@pytest.mark.parametrize(
    "body",
    [
        {"unset": ["WRITE_ACESS"]},
        {"unset": []},
        {"unset": "WRITE_ACCESS"},
        {"unset": [1]},
        {"set": ["NOPE"]},
        {"set": ["WRITE_ACCESS"], "reason": "x"},
        {"set": ["WRITE_ACCESS"], "unset": ["WRITE_ACCESS"]},
        {"unset": ["WRITE_ACCESS"], "reason": 5},
        {"unset": ["WRITE_ACCESS"], "why": "x"},
        {},
        ["WRITE_ACCESS"],
    ],
)
async def test_bad_requests_are_400_json(tmp_path: Path, body: Any) -> None:
    async with serve(CONFIG) as (client, manager):
        resp = await client.post(CAPS, json=body)
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"] == "BadRequest"
        assert Capability.WRITE_ACCESS in manager["s"].capabilities


async def test_not_json_and_unknown_store(tmp_path: Path) -> None:
    async with serve(CONFIG) as (client, _):
        resp = await client.post(CAPS, data=b"{nope")
        assert resp.status == 400 and (await resp.json())["error"] == "BadRequest"
        resp = await client.post("/stores/zz/capabilities", json={"set": ["WRITE_ACCESS"]})
        assert resp.status == 404 and (await resp.json())["error"] == "UnknownStore"
