"""feedctl load — produce a deterministic synthetic workload to the feed topics.

A power-law social graph, posts by activity-weighted authors, likes and comments.
The same --seed always produces the same events (same event ids), so running it twice
only produces duplicates that the jobs recognise and skip.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from feedline.cli import interactive, progress_bar
from feedline.settings import get_stack_settings
from feedline.workload import Workload, WorkloadSpec
from jobs.feedctl import deps
from jobs.load import count_events, produce


def register(nouns: Any) -> None:
    """Add `load`."""
    parser = nouns.add_parser("load", help="produce a synthetic workload", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=5_000)
    parser.add_argument("--mean-followers", type=float, default=75.0)
    parser.add_argument("--max-followers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rate", type=float,
                        help="events per second (default: as fast as possible)")
    parser.add_argument("--dry-run", action="store_true", help="count the events, send nothing")
    parser.set_defaults(run=_load)


def _load(args: argparse.Namespace) -> int:
    spec = WorkloadSpec(users=args.users, posts=args.posts, mean_followers=args.mean_followers,
                        max_followers=args.max_followers, seed=args.seed)
    events = Workload(spec).events()
    if args.dry_run:
        counts: dict[str, int] = {}
        for item in events:
            counts[item.event.event_type] = counts.get(item.event.event_type, 0) + 1
        for kind, n in sorted(counts.items()):
            print(f"{kind:<16} {n}")
        return 0
    kafka = get_stack_settings().kafka
    deps.require(deps.kafka(kafka))
    with progress_bar("load", None, "event", unit_scale=True) as bar:
        if interactive():  # the total (and so the ETA) is counted while sending starts
            threading.Thread(target=_set_total, args=(bar, spec), daemon=True).start()
        sent = produce(kafka, events, rate=args.rate,
                       progress=lambda sent, _elapsed: bar.update(sent - bar.n))
    print(f"produced {sent:,} events to {kafka.bootstrap_servers}")
    return 0


def _set_total(bar: Any, spec: WorkloadSpec) -> None:
    bar.total = count_events(spec)
    bar.refresh()
