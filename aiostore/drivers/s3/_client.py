"""aiobotocore clients: one botocore session per event loop, one parsed service model for all."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from typing import Any

import botocore.loaders
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.credentials import ReadOnlyCredentials

from ._options import MAX_POOL_CONNECTIONS, S3Options

__all__ = ["Clients"]


@functools.cache
def _data_loader() -> Any:
    """botocore's loader of service models, shared by every session: parsing the S3 model costs
    ~70 ms and much garbage, and its result never changes (the cache is read-only)."""
    return botocore.loaders.create_loader()


class Clients:
    """Opens aiobotocore S3 clients for one store's options.

    botocore's own retries are off (``total_max_attempts=1``): the driver's retry policy counts
    every attempt itself.
    """

    def __init__(self, options: S3Options) -> None:
        o = self._o = options
        # One botocore session per event loop (its credential refresh locks are loop-bound).
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AioSession] = (
            weakref.WeakKeyDictionary()
        )
        self._config = AioConfig(
            region_name=o.region,
            signature_version="s3v4",
            s3={"addressing_style": o.addressing_style},
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(MAX_POOL_CONNECTIONS, 2 * o.max_concurrency),
        )

    async def _credentials(self) -> Any:
        """The options' static credentials, else botocore's provider chain (refreshed)."""
        o = self._o
        if o.access_key is not None and o.secret_key is not None:
            return ReadOnlyCredentials(o.access_key, o.secret_key, o.session_token)
        return await self._session().get_credentials()

    def _session(self) -> AioSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            session = self._sessions[loop] = AioSession()
            session.register_component("data_loader", _data_loader())
        return session

    async def open(self, stack: contextlib.AsyncExitStack) -> Any:
        """A new client, closed by ``stack``: an aiobotocore client, or with ``transport =
        "lean"`` a :class:`~._lean.LeanClient`."""
        o = self._o
        if o.transport == "lean":
            from ._lean import LeanClient

            client = LeanClient(o, await self._credentials())
            stack.push_async_callback(client.close)
            return client
        return await stack.enter_async_context(
            self._session().create_client(
                "s3",
                region_name=o.region,
                endpoint_url=o.endpoint_url,
                aws_access_key_id=o.access_key,
                aws_secret_access_key=o.secret_key,
                aws_session_token=o.session_token,
                config=self._config,
            )
        )
