"""User metadata on S3: one ``x-amz-meta-aiostore`` header (S3 metadata must be ASCII), in the
SDK's header encoding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ...sdk import decode_metadata, encode_metadata

__all__ = ["META_KEY", "TOKEN_KEY", "encode_metadata", "metadata_of"]

#: ``x-amz-meta-aiostore``: the user's metadata (:func:`~aiostore.sdk.encode_metadata`).
META_KEY: Final = "aiostore"
#: ``x-amz-meta-aiostore-put``: a random token per put, to recognise our own earlier write.
TOKEN_KEY: Final = "aiostore-put"


def metadata_of(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """Our metadata header decoded; for objects written by other tools, their own metadata."""
    if not raw:
        return {}
    ours = decode_metadata(raw.get(META_KEY))
    if ours is not None:
        return ours
    return {k: v for k, v in raw.items() if k != TOKEN_KEY}
