"""HTTP ``Range`` (RFC 9110 section 14) for single byte ranges.

Decisions, documented in :mod:`aiostore.web`:

- one range (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) is served as 206;
- a syntactically invalid ``Range`` (unknown unit, garbage, ``last < first``) is *ignored* and the
  whole object is served with 200, as RFC 9110 section 14.2 allows;
- several ranges are ignored the same way (no ``multipart/byteranges``);
- a valid range that selects nothing (first byte at or past the end, a zero-length suffix, any
  range of an empty object) is unsatisfiable: 416 with ``Content-Range: bytes */size``.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

__all__ = [
    "ByteRange",
    "RangeSpec",
    "Unsatisfiable",
    "if_range_matches",
    "parse_range",
    "parse_spec",
]


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start``..``end`` inclusive, already clipped to the object's size."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"

    def covers(self, size: int) -> bool:
        """True when the range is the whole object (so no ranged read is needed)."""
        return self.start == 0 and self.end == size - 1


class Unsatisfiable(Exception):
    """A valid range that selects no byte of the object (answer 416)."""


def _digits(text: str) -> int | None:
    # isdigit() accepts non-ASCII digits; RFC 9110 means DIGIT = %x30-39.
    if not text or not text.isascii() or not text.isdigit():
        return None
    try:
        return int(text)
    except ValueError:  # longer than sys.get_int_max_str_digits(): not a sane range anyway
        return None


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """A syntactically valid single range, before the object's size is known.

    ``first`` None means a suffix range: the last ``last`` bytes. Otherwise bytes ``first``
    to ``last`` inclusive (``last`` None: to the end).
    """

    first: int | None
    last: int | None

    def resolve(self, size: int) -> ByteRange:
        """The bytes this selects in an object of ``size`` bytes; :class:`Unsatisfiable` when
        none."""
        if self.first is None:
            suffix = self.last or 0
            if suffix == 0 or size == 0:
                raise Unsatisfiable
            return ByteRange(max(0, size - suffix), size - 1)
        if self.first >= size:
            raise Unsatisfiable
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return ByteRange(self.first, end)


def parse_spec(header: str) -> RangeSpec | None:
    """The one range of a ``Range`` header, or None when it is to be ignored (malformed,
    another unit, several ranges)."""
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if len(specs) != 1:
        return None
    first_text, dash, last_text = specs[0].partition("-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(), last_text.strip()
    if not first_text:
        suffix = _digits(last_text)
        return None if suffix is None else RangeSpec(None, suffix)
    first = _digits(first_text)
    if first is None:
        return None
    last: int | None = None
    if last_text:
        last = _digits(last_text)
        if last is None or last < first:
            return None
    return RangeSpec(first, last)


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one byte range ``header`` selects in an object of ``size`` bytes.

    Returns None when the header is to be ignored (malformed, another unit, several ranges);
    raises :class:`Unsatisfiable` when it is valid but selects nothing.
    """
    spec = parse_spec(header)
    return None if spec is None else spec.resolve(size)


def if_range_matches(value: str, etag: str | None, last_modified: float | None) -> bool:
    """Evaluate ``If-Range`` (RFC 9110 section 13.1.5): True when the range may be served.

    An entity tag must equal ours strongly (a weak one never matches); a date must equal our
    Last-Modified to the second.
    """
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return etag is not None and not value.startswith("W/") and value == etag
    if last_modified is None:
        return False
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return int(when.timestamp()) == int(last_modified)
