"""Blob names for keys (aiostore/drivers/azure/_names.py): the Blob service drops a dot that
ends a blob name, so such dots are escaped; encoding is exact and listing by any string prefix
still finds exactly the keys that start with it."""

from __future__ import annotations

import itertools

import pytest
from azure.storage.blob import BlobServiceClient

from aiostore import Store
from aiostore.drivers.azure import _names as names
from aiostore.errors import InvalidKey
from aiostore.sdk import validate_key

from .conftest import blobs


def valid_keys(alphabet: str, longest: int) -> list[str]:
    keys = []
    for n in range(1, longest + 1):
        for chars in itertools.product(alphabet, repeat=n):
            key = "".join(chars)
            try:
                validate_key(key)
            except InvalidKey:
                continue
            keys.append(key)
    return keys


def test_encoding_is_exact_and_never_ends_a_name_with_a_dot() -> None:
    keys = valid_keys("a.%/2E5", 5)
    encoded = {names.encode(k) for k in keys}
    assert len(encoded) == len(keys)  # no two keys share a blob name
    for key in keys:
        name = names.encode(key)
        assert names.decode(name) == key
        assert not name.endswith(".") and "./" not in name


def test_listing_prefixes_find_exactly_the_keys_that_start_with_them() -> None:
    keys = valid_keys("a.%/", 4)
    prefixes = {""} | {k[:i] for k in keys for i in range(1, len(k) + 1)}
    for prefix in prefixes:
        server = names.list_prefix(prefix)
        found = {k for k in keys if names.encode(k).startswith(server)}
        # The service's answer covers every wanted key; the driver's filter keeps only those.
        wanted = {k for k in keys if k.startswith(prefix)}
        assert wanted <= found, prefix
        assert {k for k in found if names.decode(names.encode(k)).startswith(prefix)} == wanted


@pytest.mark.parametrize("prefix", ["", "d", "d.", "d./", "d.%", "d%"])
async def test_keys_with_final_dots_on_azurite(
    store: Store, admin: BlobServiceClient, container: str, prefix: str
) -> None:
    """Keys that differ only by final dots are distinct objects, stored under names that do
    not end with a dot, and list by any prefix."""
    keys = ["d", "d.", "d..", "d./x", "d.%", "d%2E", "d%"]
    for i, key in enumerate(keys):
        await store.put(key, bytes([i]))
    for i, key in enumerate(keys):
        assert await store.read(key) == bytes([i]), key
    assert not any(name.endswith(".") for name in blobs(admin, container))
    listed = [info.key async for info in store.list(prefix)]
    assert sorted(listed) == sorted(k for k in keys if k.startswith(prefix))
