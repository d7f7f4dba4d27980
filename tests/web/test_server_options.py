"""The ``[server]`` table: one definition, validated with errors that name the option."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from aiostore.errors import BadStoreConfiguration
from aiostore.web import ServerOptions
from aiostore.web._server_options import load_config, parse_server_options


def test_defaults() -> None:
    opts = parse_server_options({})
    assert opts == ServerOptions()
    assert (opts.host, opts.port, opts.body_timeout, opts.max_uploads) == (
        "127.0.0.1",
        8080,
        60.0,
        64,
    )
    assert opts.token_file is None and opts.read_token_file is None
    assert [f.name for f in dataclasses.fields(ServerOptions)] == [
        "host",
        "port",
        "token_file",
        "read_token_file",
        "body_timeout",
        "max_uploads",
        "events_coalesce",
    ]


def test_values_are_taken() -> None:
    opts = parse_server_options(
        {"port": 0, "body_timeout": 5, "max_uploads": 2, "token_file": "t", "read_token_file": "r"}
    )
    assert opts.port == 0 and opts.body_timeout == 5.0 and opts.max_uploads == 2
    assert (opts.token_file, opts.read_token_file) == ("t", "r")


@pytest.mark.parametrize(
    ("table", "option"),
    [
        ({"port": 65536}, "port"),
        ({"port": -1}, "port"),
        ({"port": "80"}, "port"),
        ({"prot": 80}, "prot"),
        ({"body_timeout": 0}, "body_timeout"),
        ({"body_timeout": "1m"}, "body_timeout"),
        ({"max_uploads": 0}, "max_uploads"),
        ({"max_uploads": True}, "max_uploads"),
        ({"host": ""}, "host"),
        ({"token_file": 3}, "token_file"),
        ({"read_token_file": "r"}, "read_token_file"),
    ],
)
def test_bad_option_is_named(table: dict[str, Any], option: str) -> None:
    with pytest.raises(BadStoreConfiguration) as info:
        parse_server_options(table)
    assert info.value.option == option
    assert str(info.value).startswith(f"[server] option {option!r}")
    assert "store" not in str(info.value)


def test_not_a_table() -> None:
    with pytest.raises(BadStoreConfiguration, match=r"\[server\] must be a table"):
        parse_server_options(["port"])


def test_load_config_splits_the_server_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9000\n[stores.m]\ndriver = "memory"\n')
    config, server = load_config(path)
    assert server.port == 9000
    assert config == {"stores": {"m": {"driver": "memory"}}}
    path.write_text("[server]\nport = 123456\n")
    with pytest.raises(BadStoreConfiguration, match="port"):
        load_config(path)
