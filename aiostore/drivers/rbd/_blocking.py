"""The thread side: every librados/librbd call of the driver, in plain blocking functions.

The async side runs each through :func:`aiostore.sdk.run_blocking`; a put's steps share one
:class:`Upload` whose lock keeps them (and its clean-up) in order even after its caller left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Final, TypeVar

from ...errors import BackendUnavailable, Duplicate, NotFound
from ...sdk import Fence, Metadata, ObjectInfo
from ._names import HASHED, OBJECT, key_of, name_prefix, temporary

__all__ = ["Blocking", "Upload"]

log = logging.getLogger("aiostore.drivers.rbd")

T = TypeVar("T")

#: Image metadata keys.
META_KEY: Final = "aiostore.meta"
KEY_KEY: Final = "aiostore.key"
#: The RADOS object whose advisory lock serializes commits (renames) in the pool.
LOCK_OBJECT: Final = "aiostore.commit-lock"
LOCK_NAME: Final = "commit"
#: Seconds a commit lock is held at most (a crashed holder's lock expires) and waited for.
LOCK_SECONDS: Final = 30
#: A deleted or replaced image goes to the pool's trash for this many seconds before it may be
#: purged: readers that hold it open keep reading its data meanwhile (an image removed outright
#: reads as zeros), and a reader still at it when that time runs out fails instead.
TRASH_DELAY = 120
#: A reader fails once its image's purge is this close (seconds).
TRASH_MARGIN: Final = 10.0


class Blocking:
    """One cluster connection's blocking calls.

    Every call goes through :meth:`call`, which counts the calls running in threads: closing
    the connection while an abandoned call still uses it would crash librados, so
    :meth:`close` shuts it down at once only when it is idle, and otherwise the last running
    call does it when it returns. A call that starts after ``close`` raises instead.
    """

    def __init__(
        self, rados: ModuleType, rbd: ModuleType, cluster: Any, ioctx: Any, order: int
    ) -> None:
        self.rados = rados
        self.rbd = rbd
        self.cluster = cluster
        self.ioctx = ioctx
        self.order = order
        self.api = rbd.RBD()
        self._gate = threading.Lock()
        self._running = 0
        self._closed = False
        self._purged = -1e9

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._gate:
            if self._closed:
                raise BackendUnavailable("the session was closed", session_broken=True)
            self._running += 1
        try:
            return fn(*args)
        finally:
            with self._gate:
                self._running -= 1
                last = self._closed and self._running == 0
            if last:
                self._shutdown()

    def close(self) -> None:
        """Shut the connection down now if idle, else when the last running call returns."""
        with self._gate:
            if self._closed:
                return
            self._closed = True
            idle = self._running == 0
        if idle:
            self._shutdown()

    def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.ioctx.close()
        with contextlib.suppress(Exception):
            self.cluster.shutdown()

    # -- reads ----------------------------------------------------------------------------------
    def open(self, name: str, key: str, fence: Fence | None = None) -> tuple[Any, ObjectInfo]:
        """Open ``name`` read-only: ``(image, info)``. Closed again if the caller has gone."""
        image = self.rbd.Image(self.ioctx, name, read_only=True)
        try:
            info = self._info(image, name, key)
            if fence is not None:
                fence.check()
        except BaseException:
            image.close()
            raise
        return image, info

    def _info(self, image: Any, name: str, key: str | None) -> ObjectInfo:
        meta = dict(image.metadata_list())
        if name.startswith(HASHED):
            stored = meta.get(KEY_KEY)
            if key is not None and stored != key:
                raise NotFound("no such object", key=key)
            key = stored
        if key is None:
            raise NotFound("no key recorded on the image")
        try:
            metadata = json.loads(meta[META_KEY]) if META_KEY in meta else {}
        except ValueError:
            metadata = {}
        stamp = image.modify_timestamp()
        modified = stamp.replace(tzinfo=UTC).timestamp() if isinstance(stamp, datetime) else None
        return ObjectInfo(key, int(image.size()), modified, metadata, str(image.id()))

    def stat(self, name: str, key: str) -> ObjectInfo:
        image, info = self.open(name, key)
        image.close()
        return info

    def read(self, image: Any, offset: int, length: int) -> bytes:
        return bytes(image.read(offset, length))

    def close_image(self, image: Any) -> None:
        with contextlib.suppress(Exception):
            image.close()

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        want = name_prefix(prefix)
        found: list[ObjectInfo] = []
        for name in self.api.list(self.ioctx):
            if name.startswith(OBJECT):
                if not name.startswith(want):
                    continue
                key = key_of(name)
            elif name.startswith(HASHED):
                key = None
            else:
                continue  # temporary and foreign images
            try:
                image = self.rbd.Image(self.ioctx, name, read_only=True)
            except self.rbd.ImageNotFound:
                continue  # removed or renamed since the directory was read
            try:
                info = self._info(image, name, key)
            except NotFound:
                continue
            finally:
                image.close()
            if info.key.startswith(prefix):
                found.append(info)
        found.sort(key=lambda i: i.key)
        return found

    # -- writes ---------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        try:
            self.rbd.Image(self.ioctx, name, read_only=True).close()
        except self.rbd.ImageNotFound:
            return False
        return True

    def patch(self, name: str, data: bytes, offset: int) -> int:
        image = self.rbd.Image(self.ioctx, name)
        try:
            end = offset + len(data)
            if end > image.size():
                image.resize(end)
            image.write(data, offset)
            image.flush()
        finally:
            image.close()
        return len(data)

    def remove(self, name: str) -> None:
        """Remove an image nobody reads (a temporary one)."""
        self.api.remove(self.ioctx, name)

    def discard(self, name: str) -> None:
        """Delete an object's image: into the trash for :data:`TRASH_DELAY` seconds (readers
        that have it open keep reading it), then purge what expired."""
        self.api.trash_move(self.ioctx, name, TRASH_DELAY)
        self.purge_expired()

    def purge_expired(self) -> None:
        """Purge the trashed images whose delay ran out (at most once a minute per connection)."""
        now = time.monotonic()
        if now - self._purged < 60.0:
            return
        self._purged = now
        try:
            self.api.trash_purge(self.ioctx, datetime.now(UTC).replace(tzinfo=None))
        except Exception as exc:
            log.info("purging the trash of expired images failed: %s", exc)

    def readable(self, image_id: str) -> bool:
        """Whether an open image's data is still there: not purged, nor about to be."""
        try:
            entry = self.api.trash_get(self.ioctx, image_id)
        except self.rbd.ImageNotFound:
            try:
                self.ioctx.stat(f"rbd_header.{image_id}")
            except self.rados.ObjectNotFound:
                return False  # removed
            return True  # a live image
        end = entry.get("deferment_end_time")
        if not isinstance(end, datetime):
            return False
        left = end.replace(tzinfo=UTC).timestamp() - time.time()
        return left > TRASH_MARGIN

    @contextlib.contextmanager
    def commit_lock(self, fence: Fence | None) -> Iterator[None]:
        """The pool's commit lock (a RADOS advisory lock with a time limit)."""
        cookie = uuid.uuid4().hex
        deadline = time.monotonic() + LOCK_SECONDS
        pause = 0.002
        while True:
            if fence is not None:
                fence.check()
            try:
                self.ioctx.lock_exclusive(
                    LOCK_OBJECT, LOCK_NAME, cookie, "aiostore commit", LOCK_SECONDS, 0
                )
                break
            except (self.rados.ObjectBusy, self.rados.ObjectExists):
                if time.monotonic() > deadline:
                    raise BackendUnavailable(
                        f"the pool's commit lock stayed busy for {LOCK_SECONDS} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                self.ioctx.unlock(LOCK_OBJECT, LOCK_NAME, cookie)

    def probe_read(self) -> None:
        """One read from an OSD (the pool's image directory)."""
        try:
            self.ioctx.stat("rbd_directory")
        except self.rados.ObjectNotFound:
            pass  # an empty pool: the OSD answered all the same

    def probe_write(self) -> None:
        """Create, write, read back and remove a small probe image (and purge the trash)."""
        self.purge_expired()
        name = temporary("probe")
        self.api.create(self.ioctx, name, 4096, order=self.order, old_format=False,
                        features=self.rbd.RBD_FEATURE_LAYERING)  # fmt: skip
        try:
            image = self.rbd.Image(self.ioctx, name)
            try:
                body = uuid.uuid4().bytes * 8
                image.write(body, 100)
                if bytes(image.read(100, len(body))) != body:
                    raise BackendUnavailable("the probe image returned other bytes")
            finally:
                image.close()
        finally:
            self.api.remove(self.ioctx, name)


class Upload:
    """One put's temporary image, written chunk by chunk, then renamed into place.

    Every step holds :attr:`lock`, so the clean-up (:meth:`abort`) runs after a step that is
    still hanging in an abandoned thread, never beside it.
    """

    def __init__(self, blocking: Blocking, fence: Fence) -> None:
        self.b = blocking
        self.fence = fence
        self.temp = temporary()
        self.image: Any = None
        self.size = 0
        self.lock = threading.Lock()

    def create(self, name: str, overwrite: bool, key: str) -> None:
        with self.lock:
            self.fence.check()
            if not overwrite and self.b.exists(name):
                raise Duplicate("an object already exists under this key", key=key)
            b = self.b
            b.api.create(b.ioctx, self.temp, 0, order=b.order, old_format=False,
                         features=b.rbd.RBD_FEATURE_LAYERING)  # fmt: skip
            self.image = b.rbd.Image(b.ioctx, self.temp)

    def write(self, piece: bytes) -> None:
        """Grow the image and write the next piece at its end."""
        with self.lock:
            self.fence.check()
            end = self.size + len(piece)
            self.image.resize(end)
            self.image.write(piece, self.size)
            self.size = end

    def commit(self, name: str, key: str, overwrite: bool, metadata: Metadata) -> None:
        """Metadata, flush, then the rename under the pool's commit lock (the fenced step)."""
        b = self.b
        old = None
        with self.lock:
            self.fence.check()
            if name.startswith(HASHED):
                self.image.metadata_set(KEY_KEY, key)
            if metadata:
                self.image.metadata_set(META_KEY, json.dumps(metadata, ensure_ascii=False))
            self.image.flush()
            self.image.close()
            self.image = None
            with b.commit_lock(self.fence), self.fence.commit():
                try:
                    b.api.rename(b.ioctx, self.temp, name)
                except b.rbd.ImageExists:
                    if not overwrite:
                        raise Duplicate("an object already exists under this key", key=key)
                    old = temporary("old")
                    b.api.rename(b.ioctx, name, old)
                    try:
                        b.api.rename(b.ioctx, self.temp, name)
                    except BaseException:
                        b.api.rename(b.ioctx, old, name)
                        raise
        if old is not None:
            try:
                b.discard(old)
            except Exception as exc:
                log.warning("could not move the replaced image %r to the trash: %s", old, exc)

    def abort(self) -> None:
        """Close and remove the temporary image (nothing happens once it was renamed)."""
        with self.lock:
            if self.image is not None:
                with contextlib.suppress(Exception):
                    self.image.close()
                self.image = None
            try:
                self.b.remove(self.temp)
            except self.b.rbd.ImageNotFound:
                pass
