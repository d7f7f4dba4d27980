"""User metadata as one header-safe value, for backends whose metadata is ASCII headers.

aiostore metadata is nested JSON (str leaves in dicts and lists); HTTP-header metadata (S3's
``x-amz-meta-*``, Swift's ``X-Object-Meta-*``, Azure's and GCS's metadata) is flat ASCII. Every
such driver stores it the same way: base64 of the compact UTF-8 JSON, in one value.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ._types import Metadata
from .errors import InvalidMetadata

__all__ = ["decode_metadata", "encode_metadata"]


def encode_metadata(metadata: Metadata, key: str | None = None) -> str:
    """``metadata`` as one ASCII value (``InvalidMetadata`` for text that is not Unicode)."""
    try:
        raw = json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise InvalidMetadata(f"metadata is not valid Unicode: {exc.reason}", key=key) from exc
    return base64.b64encode(raw).decode("ascii")


def decode_metadata(value: str | None) -> dict[str, Any] | None:
    """The metadata :func:`encode_metadata` wrote, or None when ``value`` is absent or is not
    such a value (an object written by another tool: the driver decides what to show then)."""
    if not value:
        return None
    try:
        decoded = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None
    return decoded if isinstance(decoded, dict) else None
