"""The driver interface.

A :class:`Driver` is built once per configured store from validated options; it declares its
name, schemes and native capabilities, and opens :class:`DriverSession` objects. Sessions do the
I/O. When the driver holds DRIVER_REUSABLE, the manager shares one session per event loop among all
callers; otherwise every use opens and closes its own. Drivers translate vendor exceptions into
:mod:`aiostore.errors` at this boundary (see :func:`map_os_error`), marking passive signals with
``revokes`` and session-level faults with ``session_broken``.

Options are a frozen dataclass per driver (``Options``); :func:`parse_options` validates a config
mapping against it: unknown, mistyped and missing options raise ``BadStoreConfiguration`` naming
the store and the option. A field with ``metadata={"secret": True}`` is redacted in reprs and
snapshots.
"""

from __future__ import annotations

import abc
import dataclasses
import types
import typing
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from .._errormap import map_os_error
from .._types import Metadata, ObjectInfo
from ..capabilities.flags import Capability
from ..capabilities.verdict import ProbeResult
from ..errors import BadStoreConfiguration, NotFound, StoreError

__all__ = [
    "Driver",
    "DriverReader",
    "DriverSession",
    "NoOptions",
    "is_secret",
    "map_os_error",
    "parse_options",
    "redacted_options",
]

OptionsT = TypeVar("OptionsT")


class DriverReader(abc.ABC):
    """An open object being read. ``size`` is the number of bytes it will yield in total.

    ``info``, when the driver can tell, describes the one version of the object this reader
    reads — its full size, modification time, metadata and ETag — taken from the open object
    itself (the open file, the GET response), never from a separate ``stat``: headers and body
    of one read must describe the same version even while the object is being overwritten.
    """

    size: int
    info: ObjectInfo | None = None

    @abc.abstractmethod
    async def read_chunk(self) -> bytes:
        """The next chunk; ``b""`` at the end."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the file or connection. Idempotent; must not raise on a second call."""


class BytesReader(DriverReader):
    """A reader over bytes already in memory (memory driver, tests)."""

    def __init__(
        self, data: bytes | memoryview, chunk_size: int = 1 << 20, info: ObjectInfo | None = None
    ) -> None:
        self.info = info
        self._view = memoryview(data)
        self._pos = 0
        self._chunk = chunk_size
        self.size = len(self._view)

    async def read_chunk(self) -> bytes:
        if self._pos >= self.size:
            return b""
        end = self._pos + self._chunk
        chunk = bytes(self._view[self._pos : end])
        self._pos = min(end, self.size)
        return chunk

    async def aclose(self) -> None:
        self._view.release()
        self._pos = self.size


class DriverSession(abc.ABC):
    """One session of a driver: does the I/O of every operation and the probe.

    Keys given to a session are already validated. Every method may raise only
    :class:`~aiostore.errors.StoreError` subclasses (or cancellation).
    """

    @property
    def is_broken(self) -> bool:
        """Cheap predicate: True when this session must not be used any more."""
        return False

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close the session. Idempotent."""

    @abc.abstractmethod
    async def probe(self) -> ProbeResult:
        """Check the backend; return a verdict per capability checked."""

    @abc.abstractmethod
    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        """Store the object all-or-nothing.

        ``stream`` raises (e.g. ``SizeMismatch``) when the input is bad: the object must then not
        appear. With ``overwrite=False`` an existing key raises ``Duplicate`` atomically.
        """

    @abc.abstractmethod
    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        """Open ``key`` for streaming from ``offset``, at most ``length`` bytes."""

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        """Buffered read; drivers may override with a faster path."""
        reader = await self.open(key, offset, length)
        try:
            parts = []
            while chunk := await reader.read_chunk():
                parts.append(chunk)
            return b"".join(parts)
        finally:
            await reader.aclose()

    async def write(self, key: str, data: bytes, offset: int) -> int:
        """Patch bytes of an existing object in place; return bytes written."""
        raise StoreError("this driver cannot patch objects in place", key=key)

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete ``key``; ``NotFound`` when missing."""

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and metadata of ``key``."""

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except NotFound:
            return False
        return True

    @abc.abstractmethod
    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order where the backend allows."""


class Driver(abc.ABC, Generic[OptionsT]):
    """A storage backend, configured for one store.

    Subclasses set ``name``, ``schemes``, ``native_capabilities`` and ``Options`` (a dataclass),
    and implement :meth:`open_session` and :meth:`location_prefix`.
    """

    name: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]]
    native_capabilities: ClassVar[Capability]
    Options: ClassVar[type[Any]]
    #: What a probe checks; a probe that raises or times out fails all of these.
    probe_capabilities: ClassVar[tuple[Capability, ...]] = (
        Capability.READ_ACCESS,
        Capability.WRITE_ACCESS,
    )
    #: Preferred chunk size for puts fed from files and bytes.
    chunk_size: int = 1 << 20

    def __init__(self, store: str, options: OptionsT) -> None:
        self.store = store
        self.options = options
        #: The configured layer, set by the manager before :meth:`start` (``read_only``,
        #: ``reusable`` applied). A probe must not write to a store configured without
        #: WRITE_ACCESS: see :attr:`probe_writes`.
        self.configured: Capability = self.native_capabilities
        #: What successful operations proved since the last probe, set before each probe: a
        #: probe need not check it again (see :attr:`probe_writes`).
        self.proven: Capability = Capability.NONE

    @property
    def probe_writes(self) -> bool:
        """Whether a probe should write: WRITE_ACCESS is configured, and no successful write
        since the last probe already proved it (a busy store runs no write probes)."""
        return (
            Capability.WRITE_ACCESS in self.configured
            and Capability.WRITE_ACCESS not in self.proven
        )

    @classmethod
    def from_config(cls, store: str, config: Mapping[str, Any]) -> Driver[OptionsT]:
        """Validate ``config`` (driver options only) and build the driver."""
        return cls(store, parse_options(store, cls.Options, config))

    def configured_capabilities(self) -> Capability:
        """Native capabilities narrowed by this driver's own options (the manager applies the
        common ones: ``read_only``, ``reusable``)."""
        return self.native_capabilities

    async def start(self) -> None:
        """Prepare the backend (create a root, a bucket). Must not raise when the backend is
        merely unavailable: the start-up probe will mark capabilities as revoked instead."""

    async def aclose(self) -> None:
        """Release driver-wide resources."""

    @abc.abstractmethod
    async def open_session(self) -> DriverSession:
        """Open a new session, ready for use."""

    @abc.abstractmethod
    def location_prefix(self) -> str:
        """URI prefix of every object of this store; ``location(key)`` is prefix + quoted key."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for snapshots, secrets redacted."""
        return {"driver": self.name, "options": redacted_options(self.options)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} store={self.store!r} {redacted_options(self.options)}>"


@dataclasses.dataclass(frozen=True, slots=True)
class NoOptions:
    """For drivers without options."""


# -- option parsing ---------------------------------------------------------------------------


def is_secret(f: dataclasses.Field[Any]) -> bool:
    return bool(f.metadata.get("secret"))


def redacted_options(options: Any) -> dict[str, Any]:
    """The options as a dict with secret fields replaced by ``'***'`` (or None when unset)."""
    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if is_secret(f):
            value = None if value is None else "***"
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def parse_options(store: str, options_type: type[OptionsT], config: Mapping[str, Any]) -> OptionsT:
    """Validate ``config`` against the dataclass ``options_type`` and build it."""
    if not isinstance(config, Mapping):
        raise BadStoreConfiguration("store configuration must be a table", store=store)
    fields = {f.name: f for f in dataclasses.fields(options_type)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(options_type)
    for name in config:
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise BadStoreConfiguration(
                f"unknown option (known: {known})", store=store, option=str(name)
            )
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in config:
            values[name] = _coerce(store, name, hints[name], config[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BadStoreConfiguration("is required", store=store, option=name)
    try:
        return options_type(**values)
    except BadStoreConfiguration as exc:
        # An Options' own validation (``__post_init__``) names the option; we add the store.
        exc.with_context(store=store)
        raise
    except (TypeError, ValueError) as exc:
        raise BadStoreConfiguration(str(exc), store=store) from exc


def _coerce(store: str, name: str, hint: Any, value: Any) -> Any:
    def bad(expected: str) -> BadStoreConfiguration:
        shown = "***" if _looks_secret(name) else repr(value)
        return BadStoreConfiguration(f"must be {expected}, not {shown}", store=store, option=name)

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(store, name, arg, value)
            except BadStoreConfiguration as exc:
                errors.append(exc)
        raise errors[0] if errors else bad("set")
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise bad("one of " + ", ".join(repr(c) for c in choices))
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise bad("a table of strings")
        return types.MappingProxyType(dict(value))
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    return value


def _looks_secret(name: str) -> bool:
    return any(word in name for word in ("secret", "token", "password", "key"))
