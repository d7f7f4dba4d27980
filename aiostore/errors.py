"""Every error aiostore raises. One catchable root: :class:`StoreError`.

Drivers translate vendor exceptions (OSError, botocore, aiohttp) at their boundary into these,
chaining the original as ``__cause__``. Two attributes carry what the core needs to react:

- ``revokes``: a capability the failure *proves* the backend has lost right now (disk full →
  WRITE_ACCESS). The store revokes it at once and asks for an early probe (a passive signal).
- ``session_broken``: the driver session that raised it can no longer be used; a shared session is
  retired and replaced.
"""

from __future__ import annotations

from .capabilities.flags import Capability

__all__ = [
    "BackendUnavailable",
    "BadStoreConfiguration",
    "CapabilityError",
    "ChecksumMismatch",
    "Duplicate",
    "InvalidKey",
    "InvalidMetadata",
    "InvalidRange",
    "KeyConflict",
    "MaxRedirectsExceeded",
    "NotFound",
    "OperationTimeout",
    "SizeMismatch",
    "StorageFull",
    "StorageWriteDenied",
    "StoreAddDisabled",
    "StoreDeleteNotSupported",
    "StoreError",
    "StoreGetNotSupported",
    "StoreRandomGetNotSupported",
    "StoreWriteNotSupported",
    "UnknownHashingAlgo",
    "UnknownScheme",
    "UnknownStore",
]


class StoreError(Exception):
    """Root of every aiostore error. Raised by any store, manager or driver operation."""

    revokes: Capability = Capability.NONE
    session_broken: bool = False

    def __init__(
        self,
        message: str,
        *,
        store: str | None = None,
        key: str | None = None,
        revokes: Capability | None = None,
        session_broken: bool | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.detail = message
        if revokes is not None:
            self.revokes = revokes
        if session_broken is not None:
            self.session_broken = session_broken
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.store is not None:
            where.append(f"store {self.store!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.detail}" if prefix else self.detail

    def __str__(self) -> str:
        return self._format()

    def with_context(self, *, store: str | None = None, key: str | None = None) -> StoreError:
        """Fill in the store and key when the raiser did not know them (returns self)."""
        if self.store is None and store is not None:
            self.store = store
        if self.key is None and key is not None:
            self.key = key
        self.args = (self._format(),)
        return self

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[StoreError], state: dict[str, object]) -> StoreError:
    err = cls.__new__(cls)
    Exception.__init__(err)
    err.__dict__.update(state)
    err.args = (err._format(),)
    return err


class CapabilityError(StoreError):
    """The store cannot do this operation right now. Raised by the check routine before any I/O.

    ``transient`` is True when the capability is configured but currently revoked by health
    (retry later), False when the store can never do it (fix the caller or the config).
    """

    def __init__(
        self,
        message: str,
        *,
        store: str | None = None,
        key: str | None = None,
        operation: str = "",
        required: Capability = Capability.NONE,
        available: Capability = Capability.NONE,
        reason: str = "",
        transient: bool = False,
    ) -> None:
        self.operation = operation
        self.required = required
        self.available = available
        self.reason = reason
        self.transient = transient
        super().__init__(message, store=store, key=key)


class StoreGetNotSupported(CapabilityError):
    """Reading is not possible: raised by ``open``/``read``/``stat``/``exists``/``list``."""


class StoreRandomGetNotSupported(StoreGetNotSupported):
    """Reading at an offset or a bounded length is not possible: raised by ``open``/``read``."""


class StoreAddDisabled(CapabilityError):
    """Adding objects is not possible: raised by ``put``."""


class StoreDeleteNotSupported(CapabilityError):
    """Deleting objects is not possible: raised by ``delete``."""


class StoreWriteNotSupported(CapabilityError):
    """Patching objects in place is not possible: raised by ``write``."""


class NotFound(StoreError, FileNotFoundError):
    """No object under that key. Raised by every read, ``stat``, ``write`` and ``delete``."""


class Duplicate(StoreError, FileExistsError):
    """An object already exists under that key and ``overwrite`` was false. Raised by ``put``."""


class StorageFull(StoreError):
    """The backend is out of space or quota. Raised by ``put``/``write``; revokes WRITE_ACCESS."""

    revokes = Capability.WRITE_ACCESS


class StorageWriteDenied(StoreError, PermissionError):
    """The backend refuses writes (read-only mount, access denied). Revokes WRITE_ACCESS."""

    revokes = Capability.WRITE_ACCESS


class SizeMismatch(StoreError, ValueError):
    """The data had another length than the ``size`` given. Raised by ``put``; nothing is stored."""


class ChecksumMismatch(StoreError, ValueError):
    """Stored or received bytes do not match their checksum. Raised by ``put`` and reads."""


class InvalidKey(StoreError, ValueError):
    """The key is not a valid object name. Raised by every operation before any I/O."""


class InvalidMetadata(StoreError, ValueError):
    """Metadata is not str-leaved dicts/lists, or too large. Raised by ``put`` before any I/O."""


class UnknownStore(StoreError, LookupError):
    """No store by that name (or location prefix). Raised by the manager."""


class UnknownScheme(StoreError, LookupError):
    """No store handles that location's scheme. Raised by ``StoreManager.resolve``."""


class UnknownHashingAlgo(StoreError, ValueError):
    """``hash_algo`` is not a hashlib algorithm. Raised by ``put`` before reading anything."""


class BadStoreConfiguration(StoreError, ValueError):
    """Invalid configuration: unknown driver, unknown/mistyped/missing option. Raised at set-up."""

    def __init__(
        self, message: str, *, store: str | None = None, option: str | None = None
    ) -> None:
        self.option = option
        if option is not None:
            message = f"option {option!r}: {message}"
        super().__init__(message, store=store)


class BackendUnavailable(StoreError, ConnectionError):
    """The backend cannot be reached or keeps failing after bounded retries. A passive signal."""


class OperationTimeout(StoreError, TimeoutError):
    """The backend did not answer in time (driver connect/read timeouts)."""


class MaxRedirectsExceeded(StoreError):
    """An HTTP store followed more redirects than ``max_redirects``. Raised by reads."""


class InvalidRange(StoreError, ValueError):
    """``offset``/``length`` are negative or not integers. Raised by reads and ``write``."""


class KeyConflict(StoreError, FileExistsError):
    """The key clashes with existing keys on a store whose keys are paths: an object cannot also
    be a prefix of other keys (``a`` and ``a/b``). Raised by ``put`` on the file driver."""
