"""Network faults between the gcs driver and fake-gcs-server, through tests/support/faultproxy.py:
resets, 503, a black hole, latency, and recovery (the checks both cloud drivers share,
tests/support/cloudstores.py), and a reset during a resumable upload."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from aiostore import Store
from tests.support.cloudstores import FaultTests
from tests.support.faultproxy import FaultProxy

from .conftest import CHUNK, objects


class TestGCSFaults(FaultTests):
    name: ClassVar[str] = "gcs"
    #: Overwrite: a create-only put on this server looks first, unshielded.
    put_options: ClassVar[dict[str, Any]] = {"overwrite": True}
    #: The upload has started and a chunk is held by the proxy; a cancellation waits, bounded,
    #: for the DELETE that cancels the upload session.
    in_flight_after: ClassVar[float] = 0.8
    cancel_returns_within: ClassVar[float] = 2.0

    def proxied(self, proxy: FaultProxy) -> dict[str, Any]:
        return {"endpoint_url": proxy.url}

    def names(self, request: pytest.FixtureRequest) -> list[str]:
        return objects(request.getfixturevalue("admin"), request.getfixturevalue("bucket"))

    async def test_reset_during_a_resumable_upload_is_retried(
        self, faulty: Store, proxy: FaultProxy
    ) -> None:
        """A reset while a middle chunk goes up: the retry asks the server what it holds and
        sends the rest; the object is whole."""
        data = os.urandom(3 * CHUNK + 11)
        sent = asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            yield data[:CHUNK]
            yield data[CHUNK : 2 * CHUNK]
            await asyncio.sleep(0.05)
            sent.set()
            proxy.set_mode("reset", requests=1)
            yield data[2 * CHUNK :]

        await faulty.put("big", chunks())
        assert sent.is_set() and proxy.counts["reset"] == 1
        assert await faulty.read("big") == data
        assert faulty.health.healthy
