"""Every test here drives real daemons and agents end to end: all are ``slow``, so
``pytest -m "not slow and not hostile"`` is the developer's quick run."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)
