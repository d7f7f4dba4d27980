"""Options of the ``swift`` driver."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ...errors import BadStoreConfiguration

__all__ = ["SwiftOptions"]

MiB = 1 << 20
GiB = 1 << 30


@dataclasses.dataclass(frozen=True, slots=True)
class SwiftOptions:
    """Options of the ``swift`` driver (see docs/configuration.md)."""

    #: Auth v1: the TempAuth/RGW URL (``http://host:port/auth/1.0``); Keystone v3: the identity
    #: URL ending in ``/v3``.
    auth_url: str
    #: The user (v1: ``account:user``, e.g. RGW's ``user:swift`` subuser).
    user: str
    #: The password (Keystone) or key (v1). Secret.
    key: str = dataclasses.field(repr=False, metadata={"secret": True})
    #: The container objects live in.
    container: str
    #: ``"1"``: TempAuth-style (X-Auth-User/X-Auth-Key); ``"3"``: Keystone v3 password auth.
    auth_version: Literal["1", "3"] = "1"
    #: Keystone v3: the project to scope the token to.
    project: str | None = None
    user_domain: str = "Default"
    project_domain: str = "Default"
    #: Keystone v3: the catalog region of the object-store endpoint (any when unset).
    region: str | None = None
    #: Keystone v3: the catalog interface (``public``, ``internal``, ``admin``).
    interface: Literal["public", "internal", "admin"] = "public"
    #: Prepended to every key (e.g. ``"images/"``).
    prefix: str = ""
    #: Create the container (and its segment container) at start-up when missing.
    create_container: bool = False
    #: Objects above this many bytes are stored as Static Large Objects.
    large_object_size: int = 1 * GiB
    #: Segment size of Static Large Objects (also the most an unsized put buffers).
    segment_size: int = 64 * MiB
    #: Segments uploaded at once.
    max_concurrency: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: Requests one logical operation may make in all (1: no retry).
    max_attempts: int = 3
    #: The probe writes (and deletes) a tiny object to check WRITE_ACCESS.
    probe_write: bool = True
    #: A probe slower than this (seconds) revokes READ_RANDOM; unset: never.
    degraded_latency: float | None = 1.0

    def __post_init__(self) -> None:
        if not self.auth_url.startswith(("http://", "https://")):
            raise BadStoreConfiguration("must be an http:// or https:// URL", option="auth_url")
        if not self.container or "/" in self.container:
            raise BadStoreConfiguration("must be a non-empty name without '/'", option="container")
        if self.auth_version == "3" and not self.project:
            raise BadStoreConfiguration("is required with auth_version = '3'", option="project")
        if self.prefix.startswith("/"):
            raise BadStoreConfiguration("must not start with '/'", option="prefix")
        for name in ("large_object_size", "segment_size", "max_concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                raise BadStoreConfiguration("must be at least 1", option=name)
        if self.segment_size > self.large_object_size:
            raise BadStoreConfiguration("must not exceed large_object_size", option="segment_size")
        for name in ("connect_timeout", "read_timeout"):
            if not 0 < getattr(self, name) < float("inf"):
                raise BadStoreConfiguration("must be a positive number", option=name)
        if self.degraded_latency is not None and self.degraded_latency <= 0:
            raise BadStoreConfiguration("must be positive or unset", option="degraded_latency")

    @property
    def segment_container(self) -> str:
        return f"{self.container}_segments"
