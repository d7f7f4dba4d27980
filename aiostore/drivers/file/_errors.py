"""The file driver's one error table, applied where its I/O meets the event loop."""

from __future__ import annotations

import errno
from typing import Final

from ...errors import InvalidKey, KeyConflict, NotFound, StorageWriteDenied, StoreError
from ...sdk import Capability, ErrorContext, ErrorMap, map_os_error, os_error_map

__all__ = ["FILE_ERRORS", "escape_error"]


def _from_os_error(exc: BaseException, ctx: ErrorContext) -> StoreError:
    assert isinstance(exc, OSError)
    what = ctx.operation
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidKey(f"a segment of the key is too long for the file system ({what})")
    if exc.errno == errno.EISDIR:
        return NotFound(f"{what}: no such object (a prefix of other keys)")
    if exc.errno == errno.ENOTDIR and what == "put":
        return KeyConflict(
            "put: a leading part of the key is an existing object, so it cannot be a prefix"
        )
    return map_os_error(exc, key=ctx.key, write=ctx.write, what=what)


#: OSError → the contract's errors, with the file system's own cases (names too long, keys that
#: are directories) first. Everything a session does runs under ``FILE_ERRORS.mapping(...)``.
FILE_ERRORS: Final = os_error_map | ErrorMap({OSError: _from_os_error})


def escape_error(key: str, write: bool) -> StoreError:
    """A key that leads through a symbolic link outside the root."""
    text = "refused: the key leads through a symbolic link outside the store root"
    if write:
        # The store is fine; only this key is poisoned. Revoke nothing.
        return StorageWriteDenied(text, key=key, revokes=Capability.NONE)
    return NotFound(text, key=key)
