"""Network faults between the azure driver and Azurite, through tests/support/faultproxy.py:
resets, 503 ServerBusy, a black hole, latency, and recovery (the checks both cloud drivers share,
tests/support/cloudstores.py), and a read resumed after a reset."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest
from azure.storage.blob import BlobServiceClient

from aiostore import ChecksumMismatch, Store
from aiostore.drivers.azure import _session
from tests.support.cloudstores import FaultTests, read_across_a_reset
from tests.support.faultproxy import FaultProxy

from .conftest import ACCOUNT, blobs


class TestAzureFaults(FaultTests):
    name: ClassVar[str] = "azure"

    def proxied(self, proxy: FaultProxy) -> dict[str, Any]:
        return {"account_url": f"{proxy.url}/{ACCOUNT}"}

    def names(self, request: pytest.FixtureRequest) -> list[str]:
        return blobs(request.getfixturevalue("admin"), request.getfixturevalue("container"))

    async def test_read_resumes_after_a_reset_on_the_same_version(
        self, faulty: Store, proxy: FaultProxy, admin: BlobServiceClient, container: str
    ) -> None:
        """A connection reset mid-read resumes from where it broke (exact bytes); when the blob
        was replaced in between, the resumed range is refused (If-Match): ChecksumMismatch."""
        data = os.urandom(3 * _session.READ_CHUNK)
        await faulty.put("big", data)

        def reset() -> None:
            proxy.set_mode("reset", requests=1)

        assert await read_across_a_reset(faulty, "big", reset) == data
        assert proxy.counts["reset"] == 1

        def replace_then_reset() -> None:
            admin.get_blob_client(container, "big").upload_blob(b"new", overwrite=True)
            reset()

        with pytest.raises(ChecksumMismatch):
            await read_across_a_reset(faulty, "big", replace_then_reset)
