"""The key check's fast path (printable ASCII keys, no cache) agrees with the full walk."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aiostore._keys import MAX_KEY_BYTES, _explain, _problem

_PIECES = st.sampled_from(
    ["a", "b", "/", ".", "..", "\\", " ", "~", "%", "+", "\x00", "\x1f", "\x7f", "é", "\x85"]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_fast_path_agrees_with_the_full_walk(key: str) -> None:
    assert _problem(key) == _explain.__wrapped__(key)


def test_edges_the_fast_path_must_not_wave_through() -> None:
    for key in (
        ".",
        "..",
        "./a",
        "../a",
        "a/.",
        "a/..",
        "a/./b",
        "a/../b",
        "/a",
        "a/",
        "a//b",
        "a\\b",
        "a\x00b",
        "a\x7fb",
        "",
        "x" * (MAX_KEY_BYTES + 1),
    ):
        assert _problem(key) is not None, repr(key)
    for key in ("a.b", ".a", "a/.b", "a../b", "...", "a/...", "x" * MAX_KEY_BYTES, "a b~%+"):
        assert _problem(key) is None, repr(key)
