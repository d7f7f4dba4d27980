"""Real servers on 127.0.0.1 for the plugin's fixtures: moto's S3 and an aiohttp static server.

moto and aiohttp's server parts are imported only when a fixture needs them.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._store import Store

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["HTTPServerStore", "S3Server", "StaticServer", "start_moto"]

#: Credentials moto accepts (it checks none); never real ones.
_MOTO_KEY = "testing"


@dataclass(frozen=True, slots=True)
class S3Server:
    """A moto S3 server on 127.0.0.1 (the ``s3_server`` fixture)."""

    host: str
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def store_config(self, bucket: str | None = None, **options: Any) -> dict[str, Any]:
        """A store table for the ``s3`` driver on this server; ``bucket`` defaults to a fresh,
        unique name (created by the driver at start-up). Latency-based degradation is off
        (``degraded_latency=None``). ``options`` override or add options."""
        config: dict[str, Any] = {
            "driver": "s3",
            "bucket": bucket or f"aiostore-test-{uuid.uuid4().hex[:16]}",
            "endpoint_url": self.endpoint_url,
            "region": "us-east-1",
            "access_key": _MOTO_KEY,
            "secret_key": _MOTO_KEY,
            "addressing_style": "path",
            "create_bucket": True,
            # A loaded CI machine slows moto, not a real backend: no latency-based revocation.
            "degraded_latency": None,
        }
        config.update(options)
        return config


class _MotoHandle:
    def __init__(self, server: Any, logger: logging.Logger, level: int) -> None:
        self._server = server
        self._logger = logger
        self._level = level
        host, port = server.get_host_and_port()
        self.info = S3Server(str(host), int(port))

    def stop(self) -> None:
        try:
            self._server.stop()
        finally:
            self._logger.setLevel(self._level)


def start_moto() -> _MotoHandle:
    """Start a threaded moto server on 127.0.0.1 on a free port. Raises ImportError without
    ``moto[server]``."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request to stderr by itself; keep test output for failures.
    logger = logging.getLogger("werkzeug")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        return _MotoHandle(server, logger, level)
    except BaseException:
        logger.setLevel(level)
        raise


class HTTPServerStore(NamedTuple):
    """What the ``http_server_store`` fixture yields: ``store, directory = http_server_store``.

    Files put into ``directory`` are served under the store's base URL (keys map to paths).
    """

    store: Store
    directory: Path

    def seed(self, key: str, data: bytes) -> None:
        """Create the object ``key`` by writing a file the server will serve."""
        path = self.directory.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


class StaticServer:
    """An aiohttp server on 127.0.0.1 serving the files under ``directory`` by GET and HEAD,
    honouring Range (aiohttp's ``FileResponse``). Anything that is not a regular file under the
    directory (a subdirectory, a dot file, a path escaping it) is 404, as in an object store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def _file(self, tail: str) -> Path | None:
        parts = tail.split("/")
        if not tail or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        path = self.directory.joinpath(*parts)
        try:
            resolved = path.resolve(strict=True)
        except OSError:
            return None
        if not resolved.is_relative_to(self.directory) or not resolved.is_file():
            return None
        return resolved

    async def start(self) -> str:
        from aiohttp import web

        async def serve(request: web.Request) -> web.StreamResponse:
            path = self._file(request.match_info["tail"])
            if path is None:
                raise web.HTTPNotFound()
            return web.FileResponse(path)

        app = web.Application()
        app.router.add_get("/{tail:.*}", serve)  # and HEAD
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.base_url = f"http://{host}:{port}/"
        return self.base_url

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
