"""Configuration errors, key validation, TOML loading and location resolving."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aiostore import (
    BadStoreConfiguration,
    InvalidKey,
    StoreManager,
    UnknownScheme,
    UnknownStore,
)
from aiostore import Capability as C
from aiostore._keys import validate_key, validate_prefix

from .support import FakeDriver, FakeOptions, fake_store


@dataclasses.dataclass(frozen=True, slots=True)
class NeedsOptions:
    bucket: str
    retries: int = 3
    ratio: float = 0.5
    tags: tuple[str, ...] = ()
    secret_key: str | None = dataclasses.field(default=None, repr=False, metadata={"secret": True})


class NeedsDriver(FakeDriver):
    name: ClassVar[str] = "needs"
    Options: ClassVar[type[Any]] = NeedsOptions

    def __init__(self, store: str, options: Any) -> None:
        super().__init__(store, FakeOptions())
        self.options = options

    def configured_capabilities(self) -> C:
        return self.native_capabilities


def _bad(config: dict[str, Any]) -> BadStoreConfiguration:
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager(config)
    return info.value


@pytest.mark.parametrize(
    ("store_cfg", "option", "words"),
    [
        ({"driver": "no-such-driver"}, "driver", "unknown driver 'no-such-driver'"),
        ({"driver": 42}, "driver", "driver name"),
        ({"driver": dict}, "driver", "not a Driver subclass"),
        ({}, "driver", "required"),
        ({"driver": "memory", "colour": "blue"}, "colour", "unknown option"),
        ({"driver": "memory", "max_bytes": "lots"}, "max_bytes", "whole number"),
        ({"driver": "memory", "max_bytes": True}, "max_bytes", "whole number"),
        ({"driver": "memory", "max_bytes": -1}, "max_bytes", "≥ 0"),
        ({"driver": "memory", "read_only": "yes"}, "read_only", "true or false"),
        ({"driver": "memory", "reusable": 1}, "reusable", "true or false"),
        ({"driver": "memory", "priority": "high"}, "priority", "whole number"),
        ({"driver": "memory", "probe": {"interval": -1}}, "probe.interval", "positive"),
        ({"driver": "memory", "probe": {"interval": "1s"}}, "probe.interval", "seconds"),
        ({"driver": "memory", "probe": {"timeout": float("nan")}}, "probe.timeout", "positive"),
        (
            {"driver": "memory", "probe": {"failures_to_revoke": 0}},
            "probe.failures_to_revoke",
            "≥ 1",
        ),
        (
            {"driver": "memory", "probe": {"successes_to_restore": 1.5}},
            "probe.successes_to_restore",
            "whole number",
        ),
        ({"driver": "memory", "probe": {"enabled": "no"}}, "probe.enabled", "true or false"),
        ({"driver": "memory", "probe": {"jitter": 0.1}}, "probe.jitter", "unknown probe option"),
        ({"driver": "memory", "probe": [1, 2]}, "probe", "table"),
        ({"driver": NeedsDriver}, "bucket", "required"),
        ({"driver": NeedsDriver, "bucket": 7}, "bucket", "a string"),
        ({"driver": NeedsDriver, "bucket": "b", "retries": 1.5}, "retries", "whole number"),
        ({"driver": NeedsDriver, "bucket": "b", "ratio": "x"}, "ratio", "a number"),
        ({"driver": NeedsDriver, "bucket": "b", "tags": [1]}, "tags", "list of strings"),
    ],
)
def test_bad_store_option_names_store_and_option(
    store_cfg: dict[str, Any], option: str, words: str
) -> None:
    err = _bad({"stores": {"photos": store_cfg}})
    assert err.store == "photos"
    assert err.option == option
    assert "photos" in str(err) and option in str(err)
    assert words in str(err)


def test_mistyped_secret_is_not_shown() -> None:
    err = _bad({"stores": {"x": {"driver": NeedsDriver, "bucket": "b", "secret_key": 12345}}})
    assert err.option == "secret_key"
    assert "12345" not in str(err)


def test_secrets_are_redacted_in_snapshot_and_repr() -> None:
    manager = StoreManager(
        {"stores": {"x": {"driver": NeedsDriver, "bucket": "b", "secret_key": "hunter2"}}}
    )
    assert "hunter2" not in repr(manager["x"].driver)
    assert "hunter2" not in str(manager.snapshot())
    assert manager.snapshot()["stores"]["x"]["options"]["secret_key"] == "***"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"storez": {}}, "unknown top-level setting 'storez'"),
        ({"stores": []}, "table of stores"),
        ({"stores": {"a": "memory"}}, "must be a table"),
        ({"stores": {"bad name": {"driver": "memory"}}}, "store name"),
        ({"stores": {"a": {"driver": "memory"}}, "default": "b"}, "default store 'b'"),
        ({"probe": {"interval": 0}}, "probe.interval"),
    ],
)
def test_bad_top_level_config(config: dict[str, Any], words: str) -> None:
    assert words in str(_bad(config))


def test_probe_defaults_are_inherited_and_overridden() -> None:
    manager = StoreManager(
        {
            "probe": {"interval": 3.0, "failures_to_revoke": 4},
            "stores": {
                "a": {"driver": "memory"},
                "b": {"driver": "memory", "probe": {"interval": 0.5}},
            },
        }
    )
    assert manager["a"].probe_config.interval == 3.0
    assert manager["b"].probe_config.interval == 0.5
    assert manager["b"].probe_config.failures_to_revoke == 4
    assert manager["a"].probe_config.timeout == 5.0


def test_common_options_narrow_configured() -> None:
    manager = StoreManager(
        {
            "stores": {
                "ro": {"driver": "memory", "read_only": True},
                "nr": {"driver": "memory", "reusable": False},
                "narrow": fake_store(caps=int(C.READ_RANDOM)),
            }
        }
    )
    assert manager["ro"].configured_capabilities == C.READ_RANDOM | C.DRIVER_REUSABLE
    assert manager["ro"].native_capabilities == C.RW_RANDOM | C.DRIVER_REUSABLE
    assert manager["nr"].configured_capabilities == C.RW_RANDOM
    assert manager["narrow"].capabilities == C.READ_RANDOM


# -- keys ---------------------------------------------------------------------------------------

BAD_KEYS = [
    "",
    ".",
    "..",
    "a/../b",
    "a/./b",
    "../etc/passwd",
    "/abs",
    "/",
    "a//b",
    "a/",
    "a\x00b",
    "a\nb",
    "tab\there",
    "del\x7f",
    "c1\x85control",
    "csi\x9b",
    "back\\slash",
    "x" * 1025,
    "é" * 513,  # 1026 UTF-8 bytes
    "lone\ud800surrogate",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=[repr(k)[:20] for k in BAD_KEYS])
async def test_bad_keys_are_refused_before_any_io(key: str) -> None:
    manager = StoreManager({"probe": {"enabled": False}, "stores": {"s": fake_store()}})
    store = manager["s"]
    driver = store.driver
    assert isinstance(driver, FakeDriver)
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.read(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.write(key, b"x", offset=0),
    ):
        with pytest.raises(InvalidKey) as info:
            await call()
        assert info.value.store == "s"
    with pytest.raises(InvalidKey):
        store.open(key)
    with pytest.raises(InvalidKey):
        store.location(key)
    with pytest.raises(InvalidKey):
        await manager.put(key, b"x")
    assert driver.calls["open_session"] == 0
    assert driver.body_calls() == 0


@pytest.mark.parametrize(
    "key",
    ["a", "a/b/c", "..a", "a..", ".hidden", "ünïcödé/ключ/键/🙂", "x" * 1024, "é" * 512, "a b"],
)
async def test_good_keys_round_trip(key: str) -> None:
    async with StoreManager(
        {"probe": {"enabled": False}, "stores": {"m": {"driver": "memory"}}}
    ) as m:
        store = m["m"]
        assert validate_key(key) == key
        obj = await store.put(key, key.encode())
        assert obj.key == key
        assert await store.read(key) == key.encode()
        assert [i.key async for i in store.list()] == [key]
        assert m.resolve(obj.location) == (store, key)


def test_non_str_keys_and_prefixes() -> None:
    with pytest.raises(InvalidKey):
        validate_key(b"bytes")
    with pytest.raises(InvalidKey):
        validate_key(None)
    assert validate_prefix("") == ""
    assert validate_prefix("a/b/") == "a/b/"
    with pytest.raises(InvalidKey):
        validate_prefix("../")
    with pytest.raises(InvalidKey):
        validate_prefix(3)


# -- TOML -----------------------------------------------------------------------------------------


async def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "aiostore.toml"
    path.write_text(
        """
default = "b"
[probe]
interval = 2.5
failures_to_revoke = 3
[stores.a]
driver = "memory"
priority = 10
[stores.b]
driver = "memory"
read_only = true
max_bytes = 1000
[stores.b.probe]
enabled = false
""",
        encoding="utf-8",
    )
    manager = StoreManager.from_file(path)
    assert manager.names == ["a", "b"]
    assert manager.default is manager["b"]
    assert manager["a"].priority == 10
    assert manager["a"].probe_config.interval == 2.5
    assert manager["b"].probe_config.failures_to_revoke == 3
    assert manager["b"].probe_config.enabled is False
    assert C.WRITE_ACCESS not in manager["b"].capabilities
    async with manager:
        await manager["a"].put("k", b"v")
        assert await manager["a"].read("k") == b"v"
    assert StoreManager.from_file(str(path)).names == ["a", "b"]


def test_from_file_errors(tmp_path: Path) -> None:
    with pytest.raises(BadStoreConfiguration, match="cannot read"):
        StoreManager.from_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stores.a\ndriver = ", encoding="utf-8")
    with pytest.raises(BadStoreConfiguration, match="not valid TOML"):
        StoreManager.from_file(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('[stores.a]\ndriver = "memory"\nmax_byte = 3\n', encoding="utf-8")
    with pytest.raises(BadStoreConfiguration) as info:
        StoreManager.from_file(typo)
    assert info.value.store == "a" and info.value.option == "max_byte"


# -- lookup ---------------------------------------------------------------------------------------


def test_lookup_and_resolve() -> None:
    manager = StoreManager(
        {"stores": {"a": {"driver": "memory"}, "ab": {"driver": "memory"}, "f": fake_store()}}
    )
    assert manager.default is manager["a"]
    assert "a" in manager and "zz" not in manager
    assert len(manager) == 3 and [s.name for s in manager] == ["a", "ab", "f"]
    with pytest.raises(UnknownStore, match="zz"):
        manager["zz"]
    store, key = manager.resolve("memory://ab/dir/file%20name.txt")
    assert store is manager["ab"] and key == "dir/file name.txt"
    assert manager.resolve(manager["a"].location("x/y z")) == (manager["a"], "x/y z")
    assert manager.resolve("fake://f/k") == (manager["f"], "k")
    with pytest.raises(UnknownScheme):
        manager.resolve("s3://bucket/key")
    with pytest.raises(UnknownScheme):
        manager.resolve("no-scheme-here")
    with pytest.raises(UnknownStore):
        manager.resolve("memory://other/key")
    with pytest.raises(InvalidKey):
        manager.resolve("memory://a/../x")
    with pytest.raises(UnknownStore):
        _ = StoreManager({}).default
