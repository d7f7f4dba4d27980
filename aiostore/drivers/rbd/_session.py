"""One RBD session: a cluster connection (made lazily, with ``connect_timeout``) and every
operation, each blocking call run through ``run_blocking``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ...errors import BackendUnavailable, ChecksumMismatch, StoreError
from ...sdk import (
    Capability,
    DriverReader,
    DriverSession,
    Fence,
    Metadata,
    ObjectInfo,
    ProbeResult,
    Verdict,
    rechunk,
    run_blocking,
    shielded,
)
from ._blocking import Blocking, Upload
from ._names import image_name

if TYPE_CHECKING:
    from . import RBDDriver

__all__ = ["RBDReader", "RBDSession"]

log = logging.getLogger("aiostore.drivers.rbd")

T = TypeVar("T")

#: Seconds a failed or cancelled put waits for its temporary image to be removed.
ABORT_WAIT = 1.0

#: librados' own limits on the waits of a connect, which the driver sets to ``connect_timeout``
#: (whole seconds) unless the configuration file sets them: ``client_mount_timeout`` bounds
#: ``connect`` (finding and authenticating with a monitor; 300 s by default) and
#: ``rados_mon_op_timeout`` the wait for the first OSD map in ``open_ioctx`` and any later
#: request to the monitors (no limit by default). Without them the worker thread of a connect
#: whose caller timed out stays in librados that long, and the interpreter's exit waits for it.
CONNECT_LIMITS: Final = ("client_mount_timeout", "rados_mon_op_timeout")


class RBDSession(DriverSession):
    """A ``rados.Rados`` connection and an ``Ioctx`` on the pool, shared by one event loop."""

    def __init__(self, driver: RBDDriver) -> None:
        self._driver = driver
        self._o = driver.options
        self._errors = driver.errors
        self._rados, self._rbd = driver.bindings
        self._blocking: Blocking | None = None
        self._connecting = asyncio.Lock()
        self._broken = False
        self._closed = False
        #: Removals of temporary images still waiting behind a hung step.
        self._background: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"<RBDSession store={self._driver.store!r} pool={self._o.pool!r}>"

    # -- connection -----------------------------------------------------------------------------
    @property
    def is_broken(self) -> bool:
        return self._broken or self._closed

    async def _b(self) -> Blocking:
        if self._blocking is None:
            async with self._connecting:
                if self._blocking is None:
                    self._blocking = await self._connect()
        return self._blocking

    async def _connect(self) -> Blocking:
        o = self._o
        fence = Fence()
        try:
            async with asyncio.timeout(o.connect_timeout + 1.0):
                cluster, ioctx = await run_blocking(self._connect_blocking, fence, fence=fence)
        except (TimeoutError, self._rados.TimedOut):
            raise BackendUnavailable(
                f"no connection to the cluster ({o.conffile}) within {o.connect_timeout:g} s",
                revokes=Capability.RW_ACCESS,
                session_broken=True,
            ) from None
        except StoreError:
            raise
        except Exception as exc:
            raise BackendUnavailable(
                f"cannot connect to the cluster ({o.conffile}): {type(exc).__name__}: {exc}",
                revokes=Capability.RW_ACCESS,
                session_broken=True,
            ) from exc
        return Blocking(self._rados, self._rbd, cluster, ioctx, o.order)

    def _connect_blocking(self, fence: Fence) -> tuple[Any, Any]:
        o = self._o
        conf = {"keyring": o.keyring} if o.keyring else {}
        cluster = self._rados.Rados(conffile=o.conffile, rados_id=o.user, conf=conf)
        try:
            _limit_waits(self._rados, cluster, o.connect_timeout)
            cluster.connect()  # (its ``timeout`` argument is ignored by the bindings)
            fence.check()  # the caller gave up: do not leave a connection behind
            try:
                ioctx = cluster.open_ioctx(o.pool)
            except self._rados.ObjectNotFound:
                raise BackendUnavailable(f"the pool {o.pool!r} does not exist") from None
            fence.check()
        except BaseException:
            cluster.shutdown()
            raise
        return cluster, ioctx

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        blocking, self._blocking = self._blocking, None
        if blocking is not None:
            # Never waits for a hung cluster: a call still running shuts it down when it returns.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._o.connect_timeout):
                    await run_blocking(blocking.close)

    async def _run(
        self, b: Blocking, fn: Callable[..., T], *args: Any, fence: Fence | None = None
    ) -> T:
        """``fn(*args)`` in a worker thread, counted by ``b`` (see :meth:`Blocking.call`)."""
        return await run_blocking(b.call, fn, *args, fence=fence)

    # -- put ------------------------------------------------------------------------------------
    async def put(
        self,
        key: str,
        stream: AsyncIterator[bytes],
        *,
        size: int | None,
        overwrite: bool,
        metadata: Metadata,
    ) -> None:
        name = image_name(key)
        with self._errors.mapping(key=key, operation="put"):
            b = await self._b()
            up = Upload(b, Fence())
            try:
                await self._run(b, up.create, name, overwrite, key, fence=up.fence)
                async for piece in rechunk(stream, self._o.chunk_size):
                    await self._run(b, up.write, piece, fence=up.fence)
                await self._run(b, up.commit, name, key, overwrite, metadata, fence=up.fence)
            except BaseException:
                await shielded(self._abort(up))
                raise

    async def _abort(self, up: Upload) -> None:
        """Remove the temporary image. When a step of the put still runs in its thread (a hung
        cluster), the removal queues behind it in the background and the caller goes at once;
        otherwise it waits for the removal, :data:`ABORT_WAIT` seconds at most."""
        up.fence.abandon()
        removal = asyncio.ensure_future(run_blocking(up.b.call, up.abort))
        if up.lock.locked():
            self._background.add(removal)
            removal.add_done_callback(self._settled)
            return
        try:
            async with asyncio.timeout(ABORT_WAIT):
                await asyncio.shield(removal)
        except Exception as exc:
            self._background.add(removal)
            removal.add_done_callback(self._settled)
            log.info(
                "store %r: removing the temporary image %s continues in the background (%s)",
                self._driver.store, up.temp, type(exc).__name__,
            )  # fmt: skip

    def _settled(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("store %r: a temporary image could not be removed: %s",
                        self._driver.store, task.exception())  # fmt: skip

    # -- reads ----------------------------------------------------------------------------------
    async def open(self, key: str, offset: int, length: int | None) -> DriverReader:
        name = image_name(key)
        with self._errors.mapping(key=key, operation="read"):
            b = await self._b()
            fence = Fence()
            image, info = await self._run(b, b.open, name, key, fence, fence=fence)
        end = info.size if length is None else min(info.size, offset + length)
        size = max(0, end - offset)
        return RBDReader(self, b, image, info, offset, size)

    async def stat(self, key: str) -> ObjectInfo:
        with self._errors.mapping(key=key, operation="stat"):
            b = await self._b()
            return await self._run(b, b.stat, image_name(key), key)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        with self._errors.mapping(operation="list"):
            b = await self._b()
            infos = await self._run(b, b.list, prefix)
        for info in infos:
            yield info

    # -- writes ---------------------------------------------------------------------------------
    async def write(self, key: str, data: bytes, offset: int) -> int:
        with self._errors.mapping(key=key, operation="write"):
            b = await self._b()
            return await self._run(b, b.patch, image_name(key), bytes(data), offset)

    async def delete(self, key: str) -> None:
        with self._errors.mapping(key=key, operation="delete"):
            b = await self._b()
            await self._run(b, b.discard, image_name(key))

    # -- probe ----------------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        """Connect (``connect_timeout``), read from an OSD, and with ``probe_write`` create,
        write, read and remove a small probe image. A hang is the prober's timeout."""
        try:
            with self._errors.mapping(operation="probe"):
                b = await self._b()
                await self._run(b, b.probe_read)
        except StoreError as exc:
            reason = f"read: {exc.detail}"
            return {c: Verdict.fail(reason) for c in self._driver.probe_capabilities}
        verdicts = {Capability.READ_ACCESS: Verdict.ok(), Capability.READ_RANDOM: Verdict.ok()}
        write = Verdict.ok("not written (probe_write = false)")
        if self._o.probe_write and self._driver.probe_writes:
            try:
                with self._errors.mapping(operation="write"):
                    await self._run(b, b.probe_write)
            except StoreError as exc:
                write = Verdict.fail(f"probe image: {exc.detail}")
            else:
                write = Verdict.ok()
        if self._driver.probe_writes:
            verdicts[Capability.WRITE_ACCESS] = write
            verdicts[Capability.WRITE_RANDOM] = write
        return verdicts


def _limit_waits(rados: ModuleType, cluster: Any, seconds: float) -> None:
    """Set each of :data:`CONNECT_LIMITS` to ``seconds`` (rounded up) on a cluster handle not
    yet connected, unless its configuration file changed it from librados' built-in value:
    values set on the handle outrank the file's, so the file's are kept by not setting them."""
    value = str(max(1, math.ceil(seconds)))
    for name, default in _builtin_values(rados).items():
        if cluster.conf_get(name) == default:
            cluster.conf_set(name, value)


@functools.cache
def _builtin_values(rados: ModuleType) -> dict[str, str]:
    """librados' values of :data:`CONNECT_LIMITS` on a handle that read no configuration file
    (the options this librados does not know are left out)."""
    bare = rados.Rados()
    try:
        values = {}
        for name in CONNECT_LIMITS:
            try:
                values[name] = str(bare.conf_get(name))
            except rados.Error:
                continue
        return values
    finally:
        bare.shutdown()


class RBDReader(DriverReader):
    """An image opened read-only; ``info`` was taken from that open image. Reads and the close
    hold one lock in their threads: an abandoned read never races the close."""

    def __init__(
        self, session: RBDSession, b: Blocking, image: Any, info: ObjectInfo, offset: int, size: int
    ) -> None:
        self.info = info
        self.size = size
        self._key = info.key
        self._id = info.etag or ""
        self._errors = session._errors
        self._b = b
        self._image = image
        self._lock = threading.Lock()
        self._pos = offset
        self._left = size
        self._chunk = session._o.chunk_size

    def _read(self, pos: int, n: int) -> bytes:
        with self._lock:
            image = self._image
            if image is None:
                return b""
            data = self._b.read(image, pos, n)
        # Read, then checked: a deleted or replaced image stays readable in the trash for a
        # while; one purged (or about to be) may have read as zeros.
        if not self._b.readable(self._id):
            raise ChecksumMismatch(
                "the object was deleted or replaced while being read, and its old data is gone",
                key=self._key,
            )
        return data

    def _close(self) -> None:
        with self._lock:
            image, self._image = self._image, None
        if image is not None:
            self._b.close_image(image)

    async def read_chunk(self) -> bytes:
        if self._left <= 0:
            return b""
        n = min(self._chunk, self._left)
        with self._errors.mapping(key=self._key, operation="read"):
            data: bytes = await run_blocking(self._b.call, self._read, self._pos, n)
        if not data:
            self._left = 0
            return b""
        self._pos += len(data)
        self._left -= len(data)
        return data

    async def aclose(self) -> None:
        self._left = 0
        with contextlib.suppress(Exception):
            await run_blocking(self._b.call, self._close)
