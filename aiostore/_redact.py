"""Keep configured secrets out of vendor log records.

botocore logs canonical requests and request headers at DEBUG, security token included. A store
that holds credentials installs a :class:`SecretFilter` on those loggers for its lifetime; the
filter replaces each secret with ``***`` in the formatted message. Logger filters are not
inherited by child loggers, so every logger that is known to print request details is named.
Filters run only for records that are emitted, so this costs nothing when DEBUG is off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Final

__all__ = ["VENDOR_LOGGERS", "SecretFilter", "install_secret_filter"]

VENDOR_LOGGERS: Final = (
    "botocore",
    "botocore.auth",
    "botocore.client",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.handlers",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.regions",
    "botocore.retryhandler",
    "botocore.utils",
    "aiobotocore",
    "aiobotocore.credentials",
    "aiobotocore.endpoint",
    "aiobotocore.httpsession",
    "aiobotocore.utils",
    "aiohttp.client",
    "urllib3.connectionpool",
)


class SecretFilter(logging.Filter):
    """Replaces every configured secret in a record's message with ``***``."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        # Very short strings would redact ordinary words; real secrets are longer.
        self.secrets = tuple(
            sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        if any(s in message for s in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg = message
            record.args = None
        return True


def install_secret_filter(
    secrets: Iterable[str | None], loggers: Iterable[str] = VENDOR_LOGGERS
) -> Callable[[], None]:
    """Install a :class:`SecretFilter` on ``loggers``; return the function that removes it."""
    flt = SecretFilter(secrets)
    if not flt.secrets:
        return lambda: None
    targets = [logging.getLogger(name) for name in loggers]
    for logger in targets:
        logger.addFilter(flt)

    def remove() -> None:
        for logger in targets:
            logger.removeFilter(flt)

    return remove
