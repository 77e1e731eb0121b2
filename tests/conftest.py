"""Shared test configuration: integration tests are marked by folder."""

from __future__ import annotations

import time
import warnings

import pytest

warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration and tests/e2e as needing the stack."""
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path or "/tests/e2e/" in path:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def held_rate_clock(monkeypatch: pytest.MonkeyPatch) -> float:
    """Hold the API's rate-limit clock still (for an API run in this process).

    The limits count per minute-long window, weighing the previous one: a test whose
    requests straddled a window boundary saw counts it could not predict. Held, every
    request of the test counts in one window however slowly the machine runs it.
    """
    from serving import deps

    held = time.time()
    monkeypatch.setattr(deps, "rate_clock", lambda: held)
    return held
