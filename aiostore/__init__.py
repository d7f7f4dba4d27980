"""aiostore: async blob storage on many backends, with capabilities that follow backend health.

Layers: ``capabilities`` (flags, state, check routine, probing) is self-contained; ``drivers``
holds the driver interface and one module per backend; ``_store`` (the facade every operation
goes through), ``_sessions`` (shared vs per-use driver sessions) and ``_manager`` (config, probes,
lifetime) build on both. This module only re-exports.
"""

from __future__ import annotations

from typing import Any as _Any

from . import errors as errors
from ._faults import FaultPlan as FaultPlan
from ._manager import StoreManager as StoreManager
from ._store import ObjectLister as ObjectLister
from ._store import ObjectReader as ObjectReader
from ._store import Store as Store
from ._types import Metadata as Metadata
from ._types import ObjectInfo as ObjectInfo
from ._types import StoredObject as StoredObject
from .capabilities.flags import Capability as Capability
from .capabilities.probe import CapabilityHealth as CapabilityHealth
from .capabilities.probe import HealthReport as HealthReport
from .capabilities.probe import ProbeConfig as ProbeConfig
from .capabilities.probe import ProbeResult as ProbeResult
from .capabilities.probe import Verdict as Verdict
from .capabilities.state import CapabilityChange as CapabilityChange
from .capabilities.state import CapabilitySnapshot as CapabilitySnapshot
from .capabilities.state import Subscription as Subscription
from .errors import BackendUnavailable as BackendUnavailable
from .errors import BadStoreConfiguration as BadStoreConfiguration
from .errors import CapabilityError as CapabilityError
from .errors import ChecksumMismatch as ChecksumMismatch
from .errors import Duplicate as Duplicate
from .errors import InvalidKey as InvalidKey
from .errors import InvalidMetadata as InvalidMetadata
from .errors import InvalidRange as InvalidRange
from .errors import KeyConflict as KeyConflict
from .errors import MaxRedirectsExceeded as MaxRedirectsExceeded
from .errors import NotFound as NotFound
from .errors import OperationTimeout as OperationTimeout
from .errors import SizeMismatch as SizeMismatch
from .errors import StorageFull as StorageFull
from .errors import StorageWriteDenied as StorageWriteDenied
from .errors import StoreAddDisabled as StoreAddDisabled
from .errors import StoreDeleteNotSupported as StoreDeleteNotSupported
from .errors import StoreError as StoreError
from .errors import StoreGetNotSupported as StoreGetNotSupported
from .errors import StoreRandomGetNotSupported as StoreRandomGetNotSupported
from .errors import StoreWriteNotSupported as StoreWriteNotSupported
from .errors import UnknownHashingAlgo as UnknownHashingAlgo
from .errors import UnknownScheme as UnknownScheme
from .errors import UnknownStore as UnknownStore

__all__ = [
    "BackendUnavailable",
    "BadStoreConfiguration",
    "Capability",
    "CapabilityChange",
    "CapabilityError",
    "CapabilityHealth",
    "CapabilitySnapshot",
    "ChecksumMismatch",
    "Duplicate",
    "FaultPlan",
    "HealthReport",
    "InvalidKey",
    "InvalidMetadata",
    "InvalidRange",
    "KeyConflict",
    "MaxRedirectsExceeded",
    "Metadata",
    "NotFound",
    "ObjectInfo",
    "ObjectLister",
    "ObjectReader",
    "OperationTimeout",
    "ProbeConfig",
    "ProbeResult",
    "SizeMismatch",
    "StorageFull",
    "StorageWriteDenied",
    "Store",
    "StoreAddDisabled",
    "StoreDeleteNotSupported",
    "StoreError",
    "StoreGetNotSupported",
    "StoreManager",
    "StoreRandomGetNotSupported",
    "StoreWriteNotSupported",
    "StoredObject",
    "Subscription",
    "UnknownHashingAlgo",
    "UnknownScheme",
    "UnknownStore",
    "Verdict",
    "errors",
]


def __getattr__(name: str) -> _Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("aiostore")
    raise AttributeError(f"module 'aiostore' has no attribute {name!r}")


def _fixup_module_metadata() -> None:
    # Reprs and docs say aiostore.X, not aiostore._store.X.
    for name in __all__:
        obj = globals()[name]
        module = getattr(obj, "__module__", "")
        if isinstance(obj, type) and module.startswith("aiostore.") and module != "aiostore.errors":
            obj.__module__ = "aiostore"


_fixup_module_metadata()
del _fixup_module_metadata
