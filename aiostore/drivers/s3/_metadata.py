"""User metadata on S3: one ``x-amz-meta-aiostore`` header (S3 metadata must be ASCII)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from ...errors import InvalidMetadata
from ...sdk import Metadata

__all__ = ["META_KEY", "TOKEN_KEY", "decode_metadata", "encode_metadata"]

#: ``x-amz-meta-aiostore``: base64 of the compact UTF-8 JSON of the user's metadata.
META_KEY: Final = "aiostore"
#: ``x-amz-meta-aiostore-put``: a random token per put, to recognise our own earlier write.
TOKEN_KEY: Final = "aiostore-put"


def encode_metadata(metadata: Metadata, key: str | None = None) -> str:
    try:
        raw = json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise InvalidMetadata(f"metadata is not valid Unicode: {exc.reason}", key=key) from exc
    return base64.b64encode(raw).decode("ascii")


def decode_metadata(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """Our metadata header decoded; for objects written by other tools, their own metadata."""
    if not raw:
        return {}
    encoded = raw.get(META_KEY)
    if encoded is not None:
        try:
            value = json.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            value = None
        if isinstance(value, dict):
            return value
    return {k: v for k, v in raw.items() if k != TOKEN_KEY}
