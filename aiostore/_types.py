"""Plain result types shared by stores and drivers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = ["Metadata", "ObjectInfo", "StoredObject"]

#: User metadata: str leaves in dicts and lists.
Metadata: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What ``stat`` and ``list`` return about an object."""

    key: str
    size: int
    modified: float | None = None
    metadata: Metadata = field(default_factory=dict)
    #: An opaque version tag (an S3 ETag, a file's inode/size/mtime) when the driver has one.
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What ``put`` returns: where the object went and its checksums."""

    location: str
    store: str
    key: str
    size: int
    checksum: str
    multihash: str
    hash_algo: str = "sha256"
    metadata: Metadata = field(default_factory=dict)
