"""The http driver's URL path of a key is ``quote(key, safe="/")``, whatever the key (the
driver skips ``quote`` for keys with nothing to escape)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("aiohttp")

from aiostore.drivers.http._session import url_path

_PIECES = st.sampled_from(
    ["a", "Z", "0", "/", ".", "_", "-", "~", " ", "%", "+", "?", "#", "é", "日", "\U0001f600", ":"]
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=12).map("".join))
def test_url_path_is_quote(key: str) -> None:
    assert url_path(key) == quote(key, safe="/")


def test_every_character_is_escaped_as_quote_escapes_it() -> None:
    # Every ASCII and two-byte character; beyond, only ASCII could be left unescaped.
    for char in [*map(chr, range(0x800)), "\u4e2d", "\uffff", "\U0001f600", "\U0010ffff"]:
        assert url_path("k/" + char) == quote("k/" + char, safe="/"), repr(char)


def test_a_plain_key_is_its_own_path() -> None:
    key = "small/123.bin"
    assert url_path(key) is key
