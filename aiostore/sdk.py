"""The driver SDK: everything a storage driver needs, public and typed.

The built-in drivers (memory, file, s3, http, and the rest) import only from this module, the
driver interface in :mod:`aiostore.drivers.base` and :mod:`aiostore.errors`, so a third-party
driver can do all that they do. ``docs/drivers.md`` walks through writing one.

- **Interface**: :class:`Driver` (configured once per store; declares ``name``, ``schemes``,
  ``native_capabilities``, ``Options``), :class:`DriverSession` (does the I/O),
  :class:`DriverReader` (one open object, with ``info`` describing the version it reads),
  :class:`BytesReader`, :class:`NoOptions`, :func:`parse_options`, :func:`redacted_options`.
- **Probing**: :class:`Verdict` and :data:`ProbeResult` — what ``DriverSession.probe`` returns.
- **Keys**: :func:`validate_key`, :func:`validate_prefix` (the store validates keys before they
  reach a session; these are for keys a driver decodes from a listing).
- **Blocking code and cancellation**: :func:`run_blocking` with a :class:`Fence` for the
  irreversible step; :func:`run_in_lane` for short calls many stores make at once (probes: one
  thread hop for a burst); :func:`shielded` for clean-ups that must finish under any cancellation.
- **Errors**: :class:`ErrorMap` (a table from backend exception to aiostore error, applied at the
  driver's I/O edge), :data:`os_error_map`, :func:`map_os_error`, :func:`transport_error_map`
  (an HTTP driver's timeouts and connection failures).
- **Retries**: :class:`RetryPolicy` (tenacity, bounded and jittered) with an :class:`Attempts`
  budget per logical operation.
- **Streams**: :func:`rechunk` (fixed-size parts from a put stream) and
  :data:`THREAD_HASH_MIN` (the size from which hashing a chunk in a thread pays off).
- **Metadata in headers**: :func:`encode_metadata` / :func:`decode_metadata` (nested JSON as
  one ASCII value, for backends whose metadata is HTTP headers).
- **Secrets**: :func:`install_secret_filter` (scrub secrets from a vendor library's log records).
"""

from __future__ import annotations

from ._cancel import Abandoned as Abandoned
from ._cancel import Fence as Fence
from ._cancel import run_blocking as run_blocking
from ._cancel import shielded as shielded
from ._errormap import ErrorContext as ErrorContext
from ._errormap import ErrorMap as ErrorMap
from ._errormap import map_os_error as map_os_error
from ._errormap import os_error_map as os_error_map
from ._errormap import transport_error_map as transport_error_map
from ._keys import validate_key as validate_key
from ._keys import validate_prefix as validate_prefix
from ._lane import run_in_lane as run_in_lane
from ._metacodec import decode_metadata as decode_metadata
from ._metacodec import encode_metadata as encode_metadata
from ._redact import install_secret_filter as install_secret_filter
from ._retry import Attempts as Attempts
from ._retry import RetryPolicy as RetryPolicy
from ._stream import THREAD_HASH_MIN as THREAD_HASH_MIN
from ._stream import rechunk as rechunk
from ._types import Metadata as Metadata
from ._types import ObjectInfo as ObjectInfo
from .capabilities.flags import Capability as Capability
from .capabilities.verdict import ProbeResult as ProbeResult
from .capabilities.verdict import Verdict as Verdict
from .drivers.base import BytesReader as BytesReader
from .drivers.base import Driver as Driver
from .drivers.base import DriverReader as DriverReader
from .drivers.base import DriverSession as DriverSession
from .drivers.base import NoOptions as NoOptions
from .drivers.base import parse_options as parse_options
from .drivers.base import redacted_options as redacted_options

__all__ = [
    "THREAD_HASH_MIN",
    "Abandoned",
    "Attempts",
    "BytesReader",
    "Capability",
    "Driver",
    "DriverReader",
    "DriverSession",
    "ErrorContext",
    "ErrorMap",
    "Fence",
    "Metadata",
    "NoOptions",
    "ObjectInfo",
    "ProbeResult",
    "RetryPolicy",
    "Verdict",
    "decode_metadata",
    "encode_metadata",
    "install_secret_filter",
    "map_os_error",
    "os_error_map",
    "parse_options",
    "rechunk",
    "redacted_options",
    "run_blocking",
    "run_in_lane",
    "shielded",
    "transport_error_map",
    "validate_key",
    "validate_prefix",
]
