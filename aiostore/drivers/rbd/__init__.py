"""Ceph RBD driver: each object an RBD image, through librbd (Debian's python3-rados/-rbd).

Keys map to image names (see ``_names``); a put writes a temporary image chunk by chunk, growing
it as data arrives, then renames it into place under the pool's commit lock; metadata is image
metadata. The first driver besides ``file`` with native RW_RANDOM: ``write`` patches an image in
place. Every librados/librbd call is blocking and runs through ``run_blocking``: a cancelled
caller gets control back even while a call hangs (a paused cluster), and an abandoned put cannot
commit afterwards (its fence) and removes its temporary image itself.

Modules: ``_options``, ``_bindings`` (the lazy import), ``_names`` (keys ↔ image names),
``_errors`` (the one error table), ``_blocking`` (the thread side), ``_session`` (the async side,
the reader and the probe).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from ...sdk import Capability, Driver, parse_options
from . import _bindings, _errors
from ._names import image_name, key_of
from ._options import RBDOptions
from ._session import RBDReader, RBDSession

__all__ = ["RBDDriver", "RBDOptions", "RBDReader", "RBDSession", "image_name", "key_of"]


class RBDDriver(Driver[RBDOptions]):
    """A pool of RBD images. Native RW_RANDOM | DRIVER_REUSABLE."""

    name: ClassVar[str] = "rbd"
    schemes: ClassVar[tuple[str, ...]] = ("rbd",)
    native_capabilities: ClassVar[Capability] = Capability.RW_RANDOM | Capability.DRIVER_REUSABLE
    Options: ClassVar[type[RBDOptions]] = RBDOptions
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.READ_RANDOM,
        Capability.WRITE_ACCESS,
        Capability.WRITE_RANDOM,
    )

    def __init__(self, store: str, options: RBDOptions) -> None:
        super().__init__(store, options)
        self.bindings = _bindings.load(store)
        self.errors = _errors.build(*self.bindings)
        self.chunk_size = options.chunk_size

    @classmethod
    def from_config(cls, store: str, config: Mapping[str, Any]) -> RBDDriver:
        return cls(store, parse_options(store, RBDOptions, config))

    def location_prefix(self) -> str:
        return f"rbd://{quote(self.options.pool, safe='')}/"

    async def open_session(self) -> RBDSession:
        return RBDSession(self)
