"""The public API surface: ``__all__`` complete, each name exported once, documented, and shown
as ``aiostore.X`` (like trio's ``test_exports.py`` and anyio's ``test_all_attributes.py``)."""

from __future__ import annotations

import inspect
import types
from typing import Any

import pytest

import aiostore
import aiostore.drivers
import aiostore.errors
import aiostore.testing
import aiostore.web

PUBLIC_MODULES = [aiostore, aiostore.errors, aiostore.drivers, aiostore.web]

#: Every name CONTRACT.md says is importable from ``aiostore``.
CONTRACT_NAMES = {
    "Capability",
    "Store",
    "StoreManager",
    "StoredObject",
    "ObjectInfo",
    "ObjectReader",
    "HealthReport",
    "CapabilityChange",
    "StoreError",
    "CapabilityError",
    "StoreGetNotSupported",
    "StoreRandomGetNotSupported",
    "StoreAddDisabled",
    "StoreDeleteNotSupported",
    "StoreWriteNotSupported",
    "NotFound",
    "Duplicate",
    "StorageFull",
    "StorageWriteDenied",
    "SizeMismatch",
    "ChecksumMismatch",
    "InvalidKey",
    "UnknownStore",
    "UnknownScheme",
    "UnknownHashingAlgo",
    "BadStoreConfiguration",
    "BackendUnavailable",
    "OperationTimeout",
    "MaxRedirectsExceeded",
}


def _public_attributes(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and not isinstance(value, types.ModuleType)
    }


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_complete_and_exact(module: types.ModuleType) -> None:
    """Every public attribute is in ``__all__``, every ``__all__`` name exists, once."""
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "a name is exported twice"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []
    extra = _public_attributes(module) - set(exported)
    if module is aiostore.errors:
        extra.discard("Capability")  # imported for the errors' ``required``/``available``
    assert extra == set(), f"public but not in {module.__name__}.__all__"


def test_the_contract_names_are_exported() -> None:
    """CONTRACT.md's names, and every error of ``aiostore.errors``, come from ``aiostore``."""
    assert CONTRACT_NAMES - set(aiostore.__all__) == set()
    assert set(aiostore.errors.__all__) <= set(aiostore.__all__)
    for name in aiostore.errors.__all__:
        assert getattr(aiostore, name) is getattr(aiostore.errors, name)


def _documented(obj: Any) -> bool:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return bool(doc and doc.strip())


@pytest.mark.parametrize("module", [*PUBLIC_MODULES, aiostore.testing], ids=lambda m: m.__name__)
def test_every_public_class_and_function_has_a_docstring_of_its_own(
    module: types.ModuleType,
) -> None:
    """A class must not merely inherit its base's docstring."""
    undocumented = [
        name
        for name in module.__all__
        if (inspect.isclass(getattr(module, name)) or inspect.isfunction(getattr(module, name)))
        and not _documented(getattr(module, name))
    ]
    assert undocumented == []


def test_reprs_name_the_public_module() -> None:
    """Classes re-exported from private modules say ``aiostore.X``; errors keep
    ``aiostore.errors``."""
    for name in aiostore.__all__:
        obj = getattr(aiostore, name)
        if not inspect.isclass(obj):
            continue
        expected = "aiostore.errors" if name in aiostore.errors.__all__ else "aiostore"
        assert obj.__module__ == expected, name
