"""Shared test configuration: integration tests are marked by folder."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration and tests/e2e as needing the stack."""
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path or "/tests/e2e/" in path:
            item.add_marker(pytest.mark.integration)
