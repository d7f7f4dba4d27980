"""The rbd driver without a cluster: key ↔ image-name encoding for every valid key, options,
and the error a missing ``rados``/``rbd`` module gives (the cluster tests are in
tests/integration/test_rbd.py)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiostore import BadStoreConfiguration, InvalidKey, StoreManager
from aiostore.drivers.rbd import _names
from aiostore.sdk import validate_key

#: Valid keys: no control characters, no empty/./.. segment, at most 1024 UTF-8 bytes.
_segment = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=40,
).filter(lambda s: s not in (".", ".."))
_keys = st.lists(_segment, min_size=1, max_size=30).map("/".join)


def _valid(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


@given(_keys.filter(_valid))
def test_every_valid_key_has_a_safe_name_that_decodes_back(key: str) -> None:
    name = _names.image_name(key)
    assert name == _names.image_name(key)  # deterministic (create-only races on it)
    assert not set(name) & set("/@ \x00"), name
    assert len(name) <= _names.MAX_NAME + 2
    if name.startswith(_names.OBJECT):
        assert _names.key_of(name) == key
        for cut in range(1, len(key)):
            assert name.startswith(_names.name_prefix(key[:cut]))
    else:
        assert name.startswith(_names.HASHED)  # the key lives in the image's metadata


def test_long_and_multibyte_keys_use_the_hashed_form() -> None:
    assert _names.image_name("a" * 1000).startswith(_names.HASHED)
    assert _names.image_name("é" * 400).startswith(_names.HASHED)
    assert _names.image_name("a" * 100) == "o." + "a" * 100
    assert _names.key_of(_names.temporary()) is None
    assert _names.key_of("glance-image-uuid") is None


def test_options_are_validated() -> None:
    for bad in ({"chunk_size": 3000}, {"chunk_size": 64 << 20}, {"connect_timeout": 0},
                {"pool": ""}):  # fmt: skip
        with pytest.raises(BadStoreConfiguration):
            StoreManager({"stores": {"r": {"driver": "rbd", **bad}}})


def test_missing_bindings_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rados", None)  # import rados → ImportError
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager({"stores": {"images": {"driver": "rbd"}}})
    text = str(info.value)
    assert "apt-get install python3-rados python3-rbd" in text
    assert "images" in text and "docs/rbd.md" in text
