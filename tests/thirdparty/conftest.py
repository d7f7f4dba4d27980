"""The example third-party driver, made importable and registered without installing it."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The example distribution's root (pyproject.toml, the package, its own tests).
DIST_ROOT = Path(__file__).parent / "aiostore_dictdriver"

# Its tests are run from outside (test_dictdriver.py), with the driver registered.
collect_ignore = ["aiostore_dictdriver"]


def pytest_configure(config: pytest.Config) -> None:
    # Not the top-level conftest, so no ``pytest_plugins``; a late import_plugin is supported.
    config.pluginmanager.import_plugin("pytester")


def write_dist_info(site: Path) -> Path:
    """Write ``aiostore_dictdriver-0.1.dist-info`` into ``site``, its entry points taken from the
    example's pyproject.toml: what ``pip install`` would leave for importlib.metadata to find."""
    project = tomllib.loads((DIST_ROOT / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = []
    for group, eps in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{ep} = {target}" for ep, target in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return info


@pytest.fixture
def dictdriver_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example driver on ``sys.path`` with its dist-info (so its entry point is found);
    removed again afterwards."""
    site = tmp_path / "site"
    write_dist_info(site)
    monkeypatch.syspath_prepend(str(DIST_ROOT))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.modules.pop("aiostore_dictdriver", None)
