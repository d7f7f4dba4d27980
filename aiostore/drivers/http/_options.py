"""The ``http`` driver's options, validated once when the store is configured."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from yarl import URL

from ...errors import BadStoreConfiguration, InvalidKey
from ...sdk import validate_key

__all__ = ["HTTPOptions"]

#: Headers the driver owns: a configured value would change which bytes a read returns.
_RESERVED_HEADERS: Final = frozenset(
    {"range", "accept-encoding", "content-length", "if-match", "if-range"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class HTTPOptions:
    """Options of the ``http`` driver."""

    #: Where the objects are: ``http://`` or ``https://``, no credentials, query or fragment.
    #: Normalized to end with ``/``; object ``k`` is ``base_url + quote(k)``.
    base_url: str
    #: Extra request headers (e.g. ``Authorization``). Treated as secret as a whole: never shown
    #: in reprs, snapshots or errors.
    headers: Mapping[str, str] | None = dataclasses.field(
        default=None, repr=False, metadata={"secret": True}
    )
    #: Seconds to establish a connection.
    connect_timeout: float = 10.0
    #: Seconds a server may take to send a response's headers, and the longest a body may stall.
    read_timeout: float = 30.0
    #: Redirects (same origin only) followed before ``MaxRedirectsExceeded``.
    max_redirects: int = 5
    #: Verify TLS certificates (https).
    verify_tls: bool = True
    #: Object the probe asks ``bytes=0-0`` of, relative to base_url; "" is base_url itself. Name
    #: an object of at least one byte so the probe can tell whether the server honours Range.
    probe_path: str = ""
    #: A probe slower than this (seconds) reports READ_RANDOM unhealthy ("degraded"); None: off.
    degraded_latency: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", _normalize_base_url(self.base_url))
        if self.headers is not None:
            object.__setattr__(self, "headers", _validate_headers(self.headers))
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise BadStoreConfiguration(
                    f"must be a positive number, not {value!r}", option=name
                )
        if isinstance(self.max_redirects, bool) or not isinstance(self.max_redirects, int):
            raise BadStoreConfiguration("must be a whole number", option="max_redirects")
        if self.max_redirects < 0:
            raise BadStoreConfiguration("must be ≥ 0", option="max_redirects")
        if self.degraded_latency is not None and not (
            isinstance(self.degraded_latency, int | float) and self.degraded_latency > 0
        ):
            raise BadStoreConfiguration(
                f"must be a positive number or unset, not {self.degraded_latency!r}",
                option="degraded_latency",
            )
        if self.probe_path:
            try:
                validate_key(self.probe_path)
            except InvalidKey as exc:
                raise BadStoreConfiguration(
                    f"must be a path relative to base_url: {exc.detail}", option="probe_path"
                ) from exc


def _normalize_base_url(value: object) -> str:
    def bad(why: str) -> BadStoreConfiguration:
        return BadStoreConfiguration(why, option="base_url")

    if not isinstance(value, str):
        raise bad(f"must be a string, not {type(value).__name__}")
    try:
        url = URL(value)
    except (ValueError, TypeError) as exc:
        raise bad(f"is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise bad(f"must be an http:// or https:// URL, not {url.scheme or 'a relative'!r} one")
    if not url.host:
        raise bad("has no host")
    if url.user is not None or url.password is not None:
        # Credentials in the URL would show in every location and snapshot: use headers.
        raise bad("must not hold credentials; set an Authorization header in 'headers' instead")
    if url.raw_query_string or url.raw_fragment:
        raise bad("must not have a query or fragment")
    text = str(url)
    return text if text.endswith("/") else text + "/"


def _validate_headers(headers: object) -> Mapping[str, str]:
    # Values may be secrets: no message here may show one.
    if not isinstance(headers, Mapping):
        raise BadStoreConfiguration("must be a table of strings", option="headers")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadStoreConfiguration("must be a table of strings", option="headers")
        if not name or any(c in name for c in ":\r\n\0 \t"):
            raise BadStoreConfiguration(f"{name!r} is not a valid header name", option="headers")
        if any(c in value for c in "\r\n\0"):
            raise BadStoreConfiguration(
                f"the value of {name!r} contains a line break or NUL", option="headers"
            )
        if name.lower() in _RESERVED_HEADERS:
            raise BadStoreConfiguration(
                f"{name!r} is set by the driver and cannot be configured", option="headers"
            )
        clean[name] = value
    return MappingProxyType(clean)
