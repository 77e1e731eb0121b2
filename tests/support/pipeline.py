"""The e2e tests' view of a sandbox pipeline (jobs/sandbox.py): wait until the stores
equal the reference model."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from jobs.sandbox import Sandbox
from tests.support.compare import mismatches
from tests.support.reference import Expected
from tests.support.stores import read_state
from tests.support.waiting import HANG_GUARD_S


def wait_converged(sb: Sandbox, expected: Expected, timeout_s: float = HANG_GUARD_S, *,
                   store: str | None = None) -> list[str]:
    """Poll the stores (or only ``store``: "cql" or "redis") until they equal the reference;
    returns what still differs."""
    deadline = time.monotonic() + timeout_s
    cap = sb.streaming.feed.timeline_cap
    while True:
        diff = [line for line in mismatches(read_state(sb.session, sb.redis, sb.keys),
                                            expected, cap)
                if store is None or line.startswith(f"{store} ")]
        if not diff or time.monotonic() > deadline:
            return diff
        sb.assert_jobs_alive()
        time.sleep(2)


def events_of(produced: Iterable[Any]) -> list[Any]:
    """The event objects of produced items."""
    return [p.event for p in produced]
