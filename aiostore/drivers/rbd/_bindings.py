"""Ceph's Python bindings (``rados``, ``rbd``), imported only when an ``rbd`` store is built.

They are not on PyPI: Debian and Ubuntu ship them as ``python3-rados`` and ``python3-rbd``,
built for the system's CPython. docs/rbd.md shows how to make them visible to a virtualenv.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import BadStoreConfiguration

__all__ = ["HOW_TO_INSTALL", "load"]

HOW_TO_INSTALL = (
    "the rbd driver needs Ceph's Python bindings (modules 'rados' and 'rbd'), which are not on "
    "PyPI: install them with the system's package manager (Debian/Ubuntu: "
    "`apt-get install python3-rados python3-rbd`) and make them visible to this Python "
    "(a virtualenv: see docs/rbd.md)"
)


def load(store: str | None = None) -> tuple[ModuleType, ModuleType]:
    """``(rados, rbd)``, or BadStoreConfiguration saying how to install them."""
    try:
        return importlib.import_module("rados"), importlib.import_module("rbd")
    except ImportError as exc:
        raise BadStoreConfiguration(f"{HOW_TO_INSTALL} ({exc})", store=store) from exc
