"""Open objects and listings: :class:`ObjectReader` and :class:`ObjectLister`.

Both hold a driver session while open. They release it (and the driver's file or connection) on
``aclose``/``async with`` exit, at the end of iteration, on error, when the consumer is
cancelled — and, as a last resort, when one that was never closed is garbage-collected (with a
``ResourceWarning``) or when the manager closes: no file or session outlives the manager.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._cancel import shielded
from ._sessions import SessionContext
from ._types import ObjectInfo
from .drivers.base import DriverReader
from .errors import StoreError

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["ObjectLister", "ObjectReader"]


async def _release(resource: Any, ctx: SessionContext | None, exc: BaseException | None) -> None:
    """Close a driver reader/iterator, then give its session back, whatever the close does."""
    try:
        aclose = getattr(resource, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                pass
    finally:
        if ctx is not None:
            await ctx.__aexit__(type(exc) if exc else None, exc, None)


class _Held:
    """What an open reader or lister holds, and how it lets go of it (shared by both)."""

    _ctx: SessionContext | None = None
    _resource: Any = None
    _loop: asyncio.AbstractEventLoop | None = None
    _closed: bool = False

    async def _let_go(self, exc: BaseException | None = None) -> None:
        self._closed = True
        resource, self._resource = self._resource, None
        ctx, self._ctx = self._ctx, None
        if resource is not None or ctx is not None:
            await shielded(_release(resource, ctx, exc))

    def __del__(self) -> None:
        if self._resource is None and self._ctx is None:
            return
        loop = self._loop
        warnings.warn(
            f"{type(self).__name__} was never closed: use 'async with' or aclose()",
            ResourceWarning,
            source=self,
            stacklevel=1,
        )
        resource, self._resource = self._resource, None
        ctx, self._ctx = self._ctx, None
        if loop is not None and not loop.is_closed():
            # Finish the release on the reader's own loop (this may run in any thread).
            try:
                loop.call_soon_threadsafe(_spawn_release, loop, resource, ctx)
            except RuntimeError:
                pass  # the loop closed meanwhile: nothing can run the release any more


_pending: set[asyncio.Task[None]] = set()


def _spawn_release(
    loop: asyncio.AbstractEventLoop, resource: Any, ctx: SessionContext | None
) -> None:
    task = loop.create_task(_release(resource, ctx, None))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


class ObjectReader(_Held):
    """An open object: async context manager and async iterator of ``bytes`` chunks.

    ``size`` is the number of bytes it yields (known once open). ``info`` describes the version
    being read (full size, modification time, metadata, ETag) when the driver can tell, taken
    from the open object itself. It releases its file or connection on exit, when the consumer
    stops early, and when cancelled.
    """

    def __init__(self, store: Store, key: str, offset: int, length: int | None) -> None:
        self.store = store
        self.key = key
        self.offset = offset
        self.length = length
        self._reader: DriverReader | None = None
        self._exhausted = False
        self._size: int | None = None
        self._info: ObjectInfo | None = None

    @property
    def size(self) -> int:
        """Bytes this reader yields in total (once open; still known after it is closed)."""
        if self._size is None:
            raise RuntimeError("the reader is not open yet: use 'async with store.open(...)'")
        return self._size

    @property
    def info(self) -> ObjectInfo | None:
        """The version being read, from the open object itself (None when the driver cannot
        tell; then ``stat`` is the best a caller can do)."""
        return self._info

    async def _open(self) -> DriverReader:
        if self._reader is not None:
            return self._reader
        if self._closed:
            raise StoreError("the reader is closed", store=self.store.name, key=self.key)
        store = self.store
        ctx = store._pool.session()
        try:
            session = await ctx.__aenter__()
        except BaseException as exc:
            raise store._failed(exc, self.key, "open")
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        store._track(self)
        try:
            reader = await session.open(self.key, self.offset, self.length)
        except BaseException as exc:
            await self._let_go(exc)
            raise store._failed(exc, self.key, "open")
        self._reader = self._resource = reader
        self._size = reader.size
        self._info = reader.info
        store._proved_read(self.offset, self.length)
        return reader

    async def __aenter__(self) -> ObjectReader:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(exc)

    def __aiter__(self) -> ObjectReader:
        return self

    async def __anext__(self) -> bytes:
        reader = self._reader
        if reader is None:
            if self._exhausted:
                raise StopAsyncIteration  # iterating again after the end, like any iterator
            reader = await self._open()
        try:
            chunk = await reader.read_chunk()
        except BaseException as exc:
            await self.aclose(exc)
            raise self.store._failed(exc, self.key, "read")
        if not chunk:
            self._exhausted = True
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def read(self) -> bytes:
        """Everything that is left, joined."""
        parts = [chunk async for chunk in self]
        return b"".join(parts)

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Release the reader and its session. Idempotent; finishes even when cancelled."""
        self._reader = None
        await self._let_go(exc)


class ObjectLister(_Held):
    """Async iterator of :class:`ObjectInfo`; holds a session while iterating."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._it: AsyncIterator[ObjectInfo] | None = None

    def __aiter__(self) -> ObjectLister:
        return self

    async def __anext__(self) -> ObjectInfo:
        if self._closed:
            raise StopAsyncIteration
        store = self.store
        try:
            if self._it is None:
                ctx = store._pool.session()
                session = await ctx.__aenter__()
                self._ctx = ctx
                self._loop = asyncio.get_running_loop()
                store._track(self)
                self._it = self._resource = session.list(self.prefix)
            return await self._it.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise
        except BaseException as exc:
            await self.aclose(exc)
            raise store._failed(exc, None, "list")

    async def __aenter__(self) -> ObjectLister:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(exc)

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Stop listing and release the session. Idempotent."""
        self._it = None
        await self._let_go(exc)
