"""The plugin tests drive pytest itself through ``pytester``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # ``pytest_plugins`` is only allowed in the top-level conftest, which is not ours; loading
    # the plugin here registers its options late, which pytest supports.
    config.pluginmanager.import_plugin("pytester")
