"""The ``[server]`` table of a configuration file: how ``aiostore serve`` runs the object service.

One definition, :class:`ServerOptions`: the command line's flags override its fields, and the
documentation of the table is checked against its fields.

.. code-block:: toml

    [server]
    host = "127.0.0.1"
    port = 8080
    token_file = "/etc/aiostore/token"
    read_token_file = "/etc/aiostore/read-token"
    body_timeout = 60
    max_uploads = 64
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..drivers.base import parse_options
from ..errors import BadStoreConfiguration

__all__ = ["MAX_PORT", "ServerOptions", "load_config", "parse_server_options"]

MAX_PORT: Final = 65535


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Options of the ``[server]`` table (all optional)."""

    #: Address to listen on. Default ``"127.0.0.1"`` (loopback only). Without a token
    #: (``token_file``), ``serve`` refuses any address that is not loopback unless ``--insecure``.
    host: str = "127.0.0.1"
    #: TCP port, 0-65535; 0 picks a free one. Default ``8080``.
    port: int = 8080
    #: A file holding the bearer token every request to ``/stores…``, ``/events`` and ``/metrics``
    #: must send (``Authorization: Bearer <token>``); surrounding white space is ignored. A
    #: relative path is taken from the working directory. Default: none (no token asked).
    token_file: str | None = None
    #: A file holding a second token that allows reads only (GET and HEAD: objects, listings,
    #: events, metrics). Needs ``token_file``. Default: none.
    read_token_file: str | None = None
    #: Seconds a PUT body may stall (no byte received) before the upload is abandoned with 408
    #: and its temporary file removed. Default ``60``.
    body_timeout: float = 60.0
    #: Uploads (PUTs) running at once; one more is answered 503 with ``Retry-After``.
    #: Default ``64``.
    max_uploads: int = 64
    #: Seconds between two writes to one ``/events`` client: the capability changes in between
    #: are merged per store (each store's latest state is always sent). Default ``0.5``.
    events_coalesce: float = 0.5

    def __post_init__(self) -> None:
        if not self.host:
            raise BadStoreConfiguration("must be a non-empty address", option="host")
        if not 0 <= self.port <= MAX_PORT:
            raise BadStoreConfiguration(
                f"must be between 0 and {MAX_PORT}, not {self.port!r}", option="port"
            )
        for name in ("token_file", "read_token_file"):
            value = getattr(self, name)
            if value is not None and (not value or "\0" in value):
                raise BadStoreConfiguration("must be a non-empty path", option=name)
        if self.read_token_file is not None and self.token_file is None:
            raise BadStoreConfiguration(
                "needs token_file (a read-only token alone would leave writes open)",
                option="read_token_file",
            )
        if not 0 < self.body_timeout <= 86_400:
            raise BadStoreConfiguration(
                f"must be more than 0 and at most 86400 seconds, not {self.body_timeout!r}",
                option="body_timeout",
            )
        if not 0 <= self.events_coalesce <= 60:
            raise BadStoreConfiguration(
                f"must be between 0 and 60 seconds, not {self.events_coalesce!r}",
                option="events_coalesce",
            )
        if not 1 <= self.max_uploads <= 1_000_000:
            raise BadStoreConfiguration(
                f"must be between 1 and 1000000, not {self.max_uploads!r}", option="max_uploads"
            )


def parse_server_options(config: Any) -> ServerOptions:
    """Validate a ``[server]`` table (a mapping) and build its :class:`ServerOptions`.

    Raises:
        BadStoreConfiguration: an unknown option, a value of the wrong type or out of range;
            the message starts with ``[server] option '<name>'``.
    """
    if config is None:
        return ServerOptions()
    if not isinstance(config, Mapping):
        raise BadStoreConfiguration("[server] must be a table")
    try:
        return parse_options("server", ServerOptions, config)
    except BadStoreConfiguration as exc:
        # parse_options speaks of stores; this table is not one.
        error = BadStoreConfiguration(f"[server] {exc.detail}")
        error.option = exc.option
        raise error from None


def load_config(path: str | os.PathLike[str]) -> tuple[dict[str, Any], ServerOptions]:
    """Read a TOML configuration file: the manager's part, and its ``[server]`` table.

    Raises:
        BadStoreConfiguration: the file cannot be read, is not TOML, or its ``[server]`` table
            is invalid.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise BadStoreConfiguration(
            f"cannot read configuration file {str(path)!r}: {exc.strerror}"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise BadStoreConfiguration(
            f"configuration file {str(path)!r} is not valid TOML: {exc}"
        ) from exc
    server = parse_server_options(data.pop("server", None))
    return data, server
