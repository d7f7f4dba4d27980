"""The public conformance suite (aiostore.testing.conformance) against the S3 driver on moto."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from aiostore.testing.conformance import ConformanceSuite

from .conftest import PART, Moto


def config(moto: Moto, bucket: str) -> dict[str, Any]:
    """The store on moto (the driver's default transport)."""
    return {
        "driver": "s3",
        "bucket": bucket,
        "endpoint_url": moto.url,
        "access_key": "testing",
        "secret_key": "testing",
        "part_size": PART,
        "multipart_threshold": PART,
        "probe": {"interval": 5.0, "timeout": 5.0},
    }


class TestS3Conformance(ConformanceSuite):
    """Every contract check, on a fresh bucket per test (multipart above 5 MiB), on the
    default transport."""

    large_size = int(1.5 * PART)

    @pytest.fixture
    def store_config(self, moto: Moto, bucket: str) -> Mapping[str, Any]:
        return config(moto, bucket)


class TestS3ConformanceBotocore(TestS3Conformance):
    """The same checks through the aiobotocore transport."""

    @pytest.fixture
    def store_config(self, moto: Moto, bucket: str) -> Mapping[str, Any]:
        return {**config(moto, bucket), "transport": "botocore"}
