"""Benchmark: µs per ``parse_event`` / ``new_event`` call on valid events.

    .venv/bin/python -m bench.event_parse                  (this checkout)
    .venv/bin/python -m bench.event_parse --code DIR       (DIR/schemas/event_contracts.py)

``--code`` benchmarks another copy of the ``schemas`` package, e.g. the previous version:
``mkdir -p /tmp/old && git archive HEAD schemas | tar -x -C /tmp/old``. Run both in the same
conditions (same machine, same load; alternate them if the machine is busy) and compare the
medians. Each median (and minimum) is over ``--rounds`` rounds of ``--calls`` calls each, so a
few noisy rounds do not move it.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MEDIA = [
    {"media_id": f"m{i}", "content_type": "image/jpeg", "uri": f"gs://feedline-media/media/m{i}"}
    for i in range(3)
]
FIELDS: dict[str, dict[str, Any]] = {
    "like": {"user_id": "u000123", "post_id": "p000456", "post_author_id": "u000789"},
    "post_created": {
        "author_id": "u000789",
        "post_id": "p000456",
        "caption": "sunset over the harbour 🌅 #nofilter",
        "media": MEDIA,
    },
}
WHEN = datetime(2026, 11, 1, 12, 30, 45, 123000, tzinfo=UTC)


def time_us(call: Callable[[], object], calls: int, rounds: int) -> tuple[float, float]:
    """Median and minimum over ``rounds`` of the mean µs per call in rounds of ``calls`` calls."""
    call()  # warm up: schema loading, class generation, compilation
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        per_round.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(per_round), min(per_round)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, help="folder holding the schemas package to time")
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per figure")
    args = parser.parse_args(argv)
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
    ec = importlib.import_module("schemas.event_contracts")
    print(f"# {ec.__file__}  ({args.rounds} rounds x {args.calls} calls)")
    print(f"{'call':<12} {'event type':<13} {'median':>8}    {'min':>8}")
    for event_type, fields in FIELDS.items():
        role = ec.role_of(event_type)
        event = ec.new_event(event_type, event_id="evt-bench-0001", event_time=WHEN, **fields)
        encoded = ec.encode_event(event)
        assert ec.parse_event(role, encoded) == event

        def parse(role: str = role, encoded: bytes = encoded) -> object:
            return ec.parse_event(role, encoded)

        def build(event_type: str = event_type, fields: dict[str, Any] = fields) -> object:
            return ec.new_event(event_type, event_id="evt-bench-0001", event_time=WHEN, **fields)

        for name, call in (("parse_event", parse), ("new_event", build)):
            median, best = time_us(call, args.calls, args.rounds)
            print(f"{name:<12} {event_type:<13} {median:8.2f} µs {best:8.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
