"""The S3 driver is an extra: ``import aiostore`` never imports aiobotocore or botocore, and a
missing ``s3`` extra is a clear configuration error."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_aiostore_imports_no_vendor_library() -> None:
    """``import aiostore`` (and the s3 package itself, and its driver class) load neither
    aiobotocore nor botocore: they load when an s3 store is configured."""
    done = run(
        """
        import sys
        import aiostore
        import aiostore.drivers.s3
        from aiostore.drivers.s3 import S3Driver, S3Options
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("aiobotocore", "botocore"))
        assert not loaded, loaded
        aiostore.StoreManager({"stores": {"s": {"driver": "s3", "bucket": "b"}}})
        assert "aiobotocore" in sys.modules
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_missing_extra_is_a_configuration_error() -> None:
    """Without aiobotocore installed, configuring an s3 store raises BadStoreConfiguration
    naming the store, the option and the extra to install; other stores still work."""
    done = run(
        """
        import sys
        sys.modules["aiobotocore"] = None  # as if the s3 extra were not installed
        from aiostore import BadStoreConfiguration, StoreManager
        try:
            StoreManager({"stores": {"images": {"driver": "s3", "bucket": "b"}}})
        except BadStoreConfiguration as exc:
            print(exc)
        else:
            raise SystemExit("no error")
        StoreManager({"stores": {"m": {"driver": "memory"}}})
        """
    )
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "pip install 'aiostore[s3]'" in message, message
    assert "'images'" in message and "aiobotocore" in message, message
