"""A model of acknowledged writes, and self-describing payloads that expose torn or mixed reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

HEADER = 16  # b"V" + 14 digits + b":"


def payload(key: str, version: int, size: int) -> bytes:
    """Bytes of ``version`` of ``key``: a header naming the version, then a body derived from
    (key, version), so any mix of two versions or a truncation is detectable."""
    size = max(size, HEADER)
    head = b"V%014d:" % version
    seed = hashlib.sha256(f"{key}:{version}".encode()).digest()
    body = (seed * (size // len(seed) + 1))[: size - HEADER]
    return head + body


def version_of(data: bytes) -> int | None:
    if len(data) < HEADER or data[:1] != b"V" or data[15:16] != b":":
        return None
    try:
        return int(data[1:15])
    except ValueError:
        return None


@dataclass
class Model:
    """What was started and acknowledged, per key."""

    started: dict[str, dict[int, int]] = field(default_factory=dict)  # key -> {version: size}
    acked: dict[str, set[int]] = field(default_factory=dict)
    failed: dict[str, set[int]] = field(default_factory=dict)
    ops: int = 0
    bytes_verified: int = 0
    violations: list[str] = field(default_factory=list)

    def start(self, key: str, version: int, size: int) -> None:
        self.ops += 1
        self.started.setdefault(key, {})[version] = size

    def ack(self, key: str, version: int) -> None:
        self.acked.setdefault(key, set()).add(version)

    def fail(self, key: str, version: int) -> None:
        self.failed.setdefault(key, set()).add(version)

    def check_whole(self, key: str, data: bytes, *, final: bool = False) -> None:
        """``data`` must be exactly one started (final: acknowledged) version of ``key``."""
        self.ops += 1
        version = version_of(data)
        if version is None:
            self.violations.append(f"{key}: unreadable header {data[:20]!r} ({len(data)} bytes)")
            return
        sizes = self.started.get(key, {})
        if version not in sizes:
            self.violations.append(f"{key}: version {version} was never written")
            return
        if final and version not in self.acked.get(key, set()):
            self.violations.append(f"{key}: version {version} visible but its put failed")
            return
        if data != payload(key, version, sizes[version]):
            self.violations.append(f"{key}: version {version} is torn or mixed ({len(data)} bytes)")
            return
        self.bytes_verified += len(data)

    def check_range(self, key: str, data: bytes, offset: int, length: int) -> None:
        """``data`` must be the [offset, offset+length) slice of some started version."""
        self.ops += 1
        for version, size in self.started.get(key, {}).items():
            if payload(key, version, size)[offset : offset + length] == data:
                self.bytes_verified += len(data)
                return
        self.violations.append(f"{key}: range {offset}+{length} matches no version")
