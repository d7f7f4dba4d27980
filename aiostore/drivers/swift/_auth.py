"""Authentication: Swift auth v1 (TempAuth, Ceph RGW) and Keystone v3 password tokens.

Either way the result is a :class:`Token` (never shown: its repr and str are redacted) and the
object-store URL of the account. Keystone's endpoint comes from the token's service catalog,
chosen by type ``object-store``, ``interface`` and ``region``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import aiohttp

from ...errors import BadStoreConfiguration
from ._errors import AuthError, SwiftStatus
from ._options import SwiftOptions

__all__ = ["Token", "authenticate", "endpoint_from_catalog"]


@dataclass(frozen=True, slots=True)
class Token:
    """An auth token and the storage URL it is valid for. The value is never shown."""

    value: str = field(repr=False)
    storage_url: str
    #: ``time.monotonic()`` after which the token is treated as expired (None: unknown).
    expires: float | None = None

    def __str__(self) -> str:
        return f"<token for {self.storage_url}>"

    @property
    def expired(self) -> bool:
        return self.expires is not None and time.monotonic() >= self.expires


async def authenticate(client: aiohttp.ClientSession, options: SwiftOptions) -> Token:
    """Get a fresh token (v1 or v3 as configured)."""
    if options.auth_version == "1":
        return await _auth_v1(client, options)
    return await _auth_v3(client, options)


async def _auth_v1(client: aiohttp.ClientSession, o: SwiftOptions) -> Token:
    headers = {"X-Auth-User": o.user, "X-Auth-Key": o.key}
    async with client.get(o.auth_url, headers=headers, allow_redirects=False) as resp:
        await resp.read()
        if resp.status in (401, 403):
            raise AuthError(f"auth v1 at {o.auth_url}: credentials refused", resp.status)
        if resp.status >= 500:
            raise SwiftStatus(resp.status, f"auth v1 at {o.auth_url}")
        token = resp.headers.get("X-Auth-Token") or resp.headers.get("X-Storage-Token")
        url = resp.headers.get("X-Storage-Url")
        if resp.status >= 300 or not token or not url:
            raise AuthError(
                f"auth v1 at {o.auth_url}: HTTP {resp.status} without a token and storage URL",
                resp.status,
            )
        return Token(token, url.rstrip("/"))


def _v3_body(o: SwiftOptions) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": o.user, "domain": {"name": o.user_domain}, "password": o.key}
                },
            },
            "scope": {"project": {"name": o.project, "domain": {"name": o.project_domain}}},
        }
    }


async def _auth_v3(client: aiohttp.ClientSession, o: SwiftOptions) -> Token:
    url = o.auth_url.rstrip("/") + "/auth/tokens"
    async with client.post(url, json=_v3_body(o), allow_redirects=False) as resp:
        body = await resp.read()
        if resp.status in (401, 403):
            raise AuthError(f"Keystone at {url}: credentials refused", resp.status)
        if resp.status >= 500:
            raise SwiftStatus(resp.status, f"Keystone at {url}")
        token = resp.headers.get("X-Subject-Token")
        if resp.status != 201 or not token:
            raise AuthError(f"Keystone at {url}: HTTP {resp.status} without a token", resp.status)
        try:
            import json

            data = json.loads(body)
            catalog = data["token"].get("catalog") or []
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AuthError(f"Keystone at {url}: the token body is not JSON") from exc
        storage = endpoint_from_catalog(catalog, region=o.region, interface=o.interface)
        return Token(token, storage.rstrip("/"), _expiry(data["token"].get("expires_at")))


def _expiry(expires_at: object) -> float | None:
    """A monotonic deadline a minute before ``expires_at`` (ISO 8601), None when unknown."""
    if not isinstance(expires_at, str):
        return None
    from datetime import datetime

    try:
        when = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    left = when.timestamp() - time.time() - 60.0
    return time.monotonic() + max(left, 0.0)


def endpoint_from_catalog(
    catalog: Sequence[Mapping[str, Any]], *, region: str | None, interface: str
) -> str:
    """The URL of the ``object-store`` service's endpoint for ``interface`` (and ``region``
    when given: matched against ``region_id`` and ``region``). Raises BadStoreConfiguration
    naming what the catalog offers when nothing matches."""
    offered: list[str] = []
    if not isinstance(catalog, Sequence):
        raise AuthError("the Keystone catalog is not a list")
    for service in catalog:
        if not isinstance(service, Mapping) or service.get("type") != "object-store":
            continue
        for ep in service.get("endpoints") or ():
            if not isinstance(ep, Mapping):
                continue
            where = ep.get("region_id") or ep.get("region")
            offered.append(f"{ep.get('interface')}@{where}")
            if ep.get("interface") != interface:
                continue
            if region is not None and region not in (ep.get("region_id"), ep.get("region")):
                continue
            url = ep.get("url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return url
    wanted = f"interface {interface!r}" + (f" in region {region!r}" if region else "")
    if not offered:
        raise BadStoreConfiguration("the Keystone catalog has no object-store service")
    raise BadStoreConfiguration(
        f"the Keystone catalog has no object-store endpoint for {wanted} "
        f"(offered: {', '.join(offered)})",
        option="region" if region else "interface",
    )
