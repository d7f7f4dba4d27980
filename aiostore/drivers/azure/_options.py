"""Options of the ``azure`` driver, validated by :func:`aiostore.sdk.parse_options`."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Final

from ...errors import BadStoreConfiguration

__all__ = ["AzureOptions"]

MiB: Final = 1 << 20
#: Azure's limits on a staged block and on a block list.
MAX_BLOCK_SIZE: Final = 4000 * MiB
MAX_BLOCKS: Final = 50_000
#: Container names: 3-63 lowercase letters, digits and single hyphens.
_CONTAINER: Final = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


@dataclasses.dataclass(frozen=True, slots=True)
class AzureOptions:
    """Options of the ``azure`` driver (documented in docs/configuration.md)."""

    #: The container holding the blobs (required).
    container: str
    #: Blob service URL; ``https://<account_name>.blob.core.windows.net`` when unset.
    account_url: str | None = None
    account_name: str | None = None
    #: Shared key of the account (with ``account_name``).
    account_key: str | None = dataclasses.field(default=None, repr=False, metadata={"secret": True})
    #: A whole connection string instead of ``account_url``/``account_name``/``account_key``.
    connection_string: str | None = dataclasses.field(
        default=None, repr=False, metadata={"secret": True}
    )
    #: A shared access signature (the query string, with or without the leading ``?``).
    sas_token: str | None = dataclasses.field(default=None, repr=False, metadata={"secret": True})
    #: Blob name prefix inside the container; a trailing ``/`` is added when missing.
    prefix: str = ""
    #: Create the container at start-up when it does not exist.
    create_container: bool = False
    #: Bytes per staged block; objects up to this size go up with one Put Blob.
    block_size: int = 8 * MiB
    #: Blocks uploaded at once per put (memory about (max_concurrency + 1) × block_size).
    max_concurrency: int = 4
    connect_timeout: float = 10.0
    #: Seconds without any byte from the service before a request fails.
    read_timeout: float = 60.0
    #: Requests one step of an operation may make, the first included.
    max_attempts: int = 3
    #: Let the probe write, range-read and delete a tiny blob under ``<prefix>.aiostore-probe/``.
    probe_write: bool = True
    #: A probe slower than this (seconds) revokes READ_RANDOM ("degraded").
    degraded_latency: float = 1.0

    def __post_init__(self) -> None:
        if not _CONTAINER.fullmatch(self.container):
            raise _bad(
                "container",
                "must be 3-63 lowercase letters, digits and single hyphens,"
                f" not {self.container!r}",
            )
        if self.prefix.startswith("/"):
            raise _bad("prefix", "must not start with '/'")
        given = [
            name
            for name in ("connection_string", "account_key", "sas_token")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise _bad(given[1], f"give one of connection_string, account_key, sas_token: {given}")
        if self.connection_string is not None:
            if self.account_url is not None or self.account_name is not None:
                raise _bad(
                    "connection_string",
                    "already names the account: leave out account_url and account_name",
                )
        elif self.account_url is None and self.account_name is None:
            raise _bad("account_url", "give account_url or account_name (or connection_string)")
        if self.account_key is not None and self.account_name is None:
            raise _bad("account_key", "needs account_name")
        if self.account_url is not None and not self.account_url.startswith(
            ("http://", "https://")
        ):
            raise _bad(
                "account_url", f"must be an http:// or https:// URL, not {self.account_url!r}"
            )
        if not 1 <= self.block_size <= MAX_BLOCK_SIZE:
            raise _bad(
                "block_size", f"must be between 1 and {MAX_BLOCK_SIZE} bytes, not {self.block_size}"
            )
        if self.max_concurrency < 1:
            raise _bad("max_concurrency", f"must be ≥ 1, not {self.max_concurrency}")
        if self.max_attempts < 1:
            raise _bad("max_attempts", f"must be ≥ 1 (the first included), not {self.max_attempts}")
        for name in ("connect_timeout", "read_timeout", "degraded_latency"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise _bad(name, f"must be a positive number of seconds, not {value!r}")

    @property
    def url(self) -> str | None:
        """The blob service URL (None with a connection string)."""
        if self.account_url is not None:
            return self.account_url.rstrip("/")
        if self.account_name is not None:
            return f"https://{self.account_name}.blob.core.windows.net"
        return None


def _bad(option: str, message: str) -> BadStoreConfiguration:
    return BadStoreConfiguration(message, option=option)
