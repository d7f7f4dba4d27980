"""aiostore keys ↔ RBD image names.

An object's image is ``o.`` + the key percent-encoded with only ``A-Za-z0-9_.-~`` left as they
are (no ``/``, ``@`` or spaces, which the ``rbd`` tool would read as pool or snapshot
separators). Encoding is per character, so the encoding of a prefix is a prefix of the
encoding: listings filter by name. A key whose name would exceed :data:`MAX_NAME` characters
(RADOS object names are bounded) becomes ``h.`` + its SHA-256, the key itself kept in the
image's metadata. Temporary images (puts in progress, probes) are ``t.<random>``; no key maps
there, and listings skip every other name.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final
from urllib.parse import quote, unquote

__all__ = ["HASHED", "MAX_NAME", "OBJECT", "TEMPORARY", "image_name", "key_of", "temporary"]

OBJECT: Final = "o."
HASHED: Final = "h."
TEMPORARY: Final = "t."
#: The longest encoded name; longer keys use the hashed form.
MAX_NAME: Final = 900


def image_name(key: str) -> str:
    """The image name of ``key`` (deterministic: create-only puts race on it)."""
    name = OBJECT + quote(key, safe="")
    if len(name) <= MAX_NAME:
        return name
    return HASHED + hashlib.sha256(key.encode()).hexdigest()


def name_prefix(prefix: str) -> str:
    """Every plain name of a key starting with ``prefix`` starts with this."""
    return OBJECT + quote(prefix, safe="")


def key_of(name: str) -> str | None:
    """The key of a plain object name; None for hashed, temporary and foreign names."""
    if not name.startswith(OBJECT):
        return None
    return unquote(name[len(OBJECT) :], errors="strict")


def temporary(what: str = "put") -> str:
    return f"{TEMPORARY}{what}-{uuid.uuid4().hex}"
