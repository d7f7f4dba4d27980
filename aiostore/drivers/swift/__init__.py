"""OpenStack Object Storage (Swift) driver, on aiohttp.

Objects are ``<container>/<prefix><key>``; auth v1 (TempAuth, Ceph RGW) or Keystone v3. Objects
above ``large_object_size`` (and unsized puts longer than one ``segment_size``) become Static
Large Objects whose segments live in ``<container>_segments``. One session per event loop
(DRIVER_REUSABLE) owns one ``aiohttp.ClientSession`` and its token.

Modules: ``_options`` (the options), ``_auth`` (tokens and the Keystone catalog), ``_errors``
(the one error table and what is retried), ``_session`` (every operation and the probe),
``_reader`` (one version of an object, resumed on a dropped body; metadata headers).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from ...sdk import Capability, Driver, RetryPolicy, install_secret_filter
from ._auth import Token, authenticate, endpoint_from_catalog
from ._errors import SwiftStatus, errors, retryable
from ._options import SwiftOptions
from ._session import SwiftSession

__all__ = ["SwiftDriver", "SwiftOptions", "SwiftSession", "Token", "endpoint_from_catalog"]

log = logging.getLogger("aiostore.drivers.swift")


class SwiftDriver(Driver[SwiftOptions]):
    """A Swift container. Native RW_ACCESS | READ_RANDOM | DRIVER_REUSABLE."""

    name: ClassVar[str] = "swift"
    schemes: ClassVar[tuple[str, ...]] = ("swift",)
    native_capabilities: ClassVar[Capability] = (
        Capability.RW_ACCESS | Capability.READ_RANDOM | Capability.DRIVER_REUSABLE
    )
    Options: ClassVar[type[SwiftOptions]] = SwiftOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
        Capability.WRITE_ACCESS,
    )

    def __init__(self, store: str, options: SwiftOptions) -> None:
        super().__init__(store, options)
        self.chunk_size = min(options.segment_size, 1 << 20)
        self.policy = RetryPolicy(max_attempts=options.max_attempts, retryable=retryable)
        self._unfilter = install_secret_filter([options.key], ("aiohttp", "aiostore"))
        #: Whether the server honours ``If-None-Match: *`` on PUT (found by the first write
        #: probe; None until then). OpenStack Swift does; Ceph RGW's Swift API (16.x) does not.
        self.conditional_put: bool | None = None

    def location_prefix(self) -> str:
        return f"swift://{self.store}/{self.options.container}/{self.options.prefix}"

    async def open_session(self) -> SwiftSession:
        return SwiftSession(self)

    async def start(self) -> None:
        """With ``create_container``, create the container and its segment container. A backend
        that does not answer is left to the start-up probe."""
        if not self.options.create_container:
            return
        session = SwiftSession(self)
        try:
            await session.create_containers()
        except Exception as exc:
            log.warning("store %r: could not create the containers: %s", self.store, exc)
        finally:
            await session.aclose()

    async def aclose(self) -> None:
        self._unfilter()


__all__ += ["SwiftStatus", "authenticate", "errors"]
