"""Blob names for keys: the Blob service drops a dot that ends a blob name ("file." is stored
as "file"), which would merge two valid keys. A key is therefore stored with every ``%``
written ``%25`` and every dot that ends a segment (before a ``/`` or at the end) written
``%2E``; no stored name then ends in a dot, and decoding is exact.

Listing stays a string-prefix match: the service is asked for the encoded prefix without its
trailing dots (whose encoding depends on what follows them), and the decoded names are
filtered by the prefix itself.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["decode", "encode", "list_prefix"]

_SEGMENT_END_DOT: Final = re.compile(r"\.(?=/|$)")
_DOT_BEFORE_SLASH: Final = re.compile(r"\.(?=/)")
_ESCAPE: Final = re.compile(r"%(25|2E)")


def encode(key: str) -> str:
    """The blob name (under the store's prefix) of ``key``."""
    return _SEGMENT_END_DOT.sub("%2E", key.replace("%", "%25"))


def decode(name: str) -> str:
    """The key of a blob name made by :func:`encode`."""
    return _ESCAPE.sub(lambda m: "%" if m.group(1) == "25" else ".", name)


def list_prefix(prefix: str) -> str:
    """A blob name prefix that every encoded key starting with ``prefix`` starts with."""
    return _DOT_BEFORE_SLASH.sub("%2E", prefix.rstrip(".").replace("%", "%25"))
