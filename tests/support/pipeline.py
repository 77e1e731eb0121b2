"""The e2e tests' view of a sandbox pipeline (jobs/sandbox.py): wait until the stores
equal the reference model."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
from cassandra import DriverException
from cassandra.cluster import NoHostAvailable

from feedline.workload import ProducedEvent
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
        try:
            state = read_state(sb.session, sb.redis, sb.keys)
        except (NoHostAvailable, DriverException, redis.RedisError) as exc:
            # A store just restarted by a fault test: the session reconnects by itself.
            diff = [f"stores unreadable: {type(exc).__name__}: {exc}"]
        else:
            diff = [line for line in mismatches(state, expected, cap)
                    if store is None or line.startswith(f"{store} ")]
        if not diff or time.monotonic() > deadline:
            return diff
        sb.assert_jobs_alive()
        time.sleep(2)


def as_produced(events: Iterable[Any]) -> list[ProducedEvent]:
    """Events as ``jobs.load.produce`` takes them (topic role and key from each event)."""
    return [ProducedEvent(e.role, e.key, e) for e in events]


def events_of(produced: Iterable[Any]) -> list[Any]:
    """The event objects of produced items."""
    return [p.event for p in produced]
