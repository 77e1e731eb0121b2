"""Polling with a hang guard: tests wait for a condition, never for an assumed speed.

Every wait in the suite polls a condition and gives up only after ``HANG_GUARD_S``, a bound
meant to catch a hang, not to measure speed: a slow or loaded machine takes longer and still
passes. Speed is measured in `bench/`, never asserted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How long any wait may take before the test fails as hung (seconds).
HANG_GUARD_S = 900.0

#: The Redis read budget (``redis.read_budget_s``) of tests about what a page holds: one a
#: loaded machine never overruns by accident (the default 0.5 s degrades a page to the CQL
#: store when a slow sitting makes Redis late). The budget's own fallback is tested with a
#: slowed Redis in ``tests/faults/test_slow_network.py``.
CONTENT_READ_BUDGET_S = 60.0


def eventually(probe: Callable[[], T | None], what: str, *, timeout_s: float = HANG_GUARD_S,
               every_s: float = 0.5, detail: Callable[[], str] | None = None) -> T:
    """Poll ``probe`` until it returns something truthy and return it.

    ``detail`` is called for the failure message (a log tail, a diff) when the guard trips.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}{extra}")
        time.sleep(every_s)
