"""Issue 16, item 3: a large put's peak RSS growth stays within 64 MiB with the default
options (8 MiB parts, 4 in flight), measured as ``VmHWM`` in a fresh client process (the S3
server, moto, runs in this one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import Moto

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def test_large_put_peak_rss_growth_is_bounded(moto: Moto, bucket: str) -> None:
    """A 96 MiB streaming put (12 parts: the steady state of any larger one) grows the client's
    peak RSS by at most 64 MiB: one part being filled, four in flight, no copy of a part by
    botocore or aiohttp. (Before: about 80 MiB, two copies of every part in flight.)"""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.rss_s3",
            "--client",
            moto.url,
            json.dumps({"bucket": bucket, "create_bucket": False}),
            "96",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["size_mib"] == 96
    assert figures["growth_mib"] <= 64, figures
