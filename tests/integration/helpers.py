"""Helpers shared by the integration tests (the cluster itself is in ``ceph.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .ceph import RGWEndpoint

MiB = 1 << 20

#: Lines for the terminal summary (timings, throughput), filled by fixtures and tests.
REPORT: list[str] = []


def rgw_store_config(rgw: RGWEndpoint, bucket: str, **overrides: Any) -> dict[str, Any]:
    """One ``s3`` store's table for the gateway (path style, 5 MiB parts and threshold);
    ``overrides`` replace or add options."""
    cfg: dict[str, Any] = {
        "driver": "s3",
        "bucket": bucket,
        "endpoint_url": rgw.endpoint_url,
        "region": rgw.region,
        "access_key": rgw.access_key,
        "secret_key": rgw.secret_key,
        "addressing_style": "path",
        "create_bucket": True,
        "part_size": 5 * MiB,
        "multipart_threshold": 5 * MiB,
        # The driver's default (1 s) revokes READ_RANDOM when one probe is slow: on 2 cores
        # shared with mon, mgr, OSD and radosgw that happens under load and breaks range tests.
        "degraded_latency": 5.0,
    }
    cfg.update(overrides)
    return cfg


@contextlib.asynccontextmanager
async def raw_client(rgw: RGWEndpoint, **config: Any) -> AsyncIterator[Any]:
    """A plain aiobotocore S3 client for the gateway (to look behind the driver's back)."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    cfg = AioConfig(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        **{"read_timeout": 60, "connect_timeout": 5, **config},
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=rgw.endpoint_url,
        region_name=rgw.region,
        aws_access_key_id=rgw.access_key,
        aws_secret_access_key=rgw.secret_key,
        config=cfg,
    ) as client:
        yield client
