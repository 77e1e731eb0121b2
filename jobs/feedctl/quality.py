"""feedctl quality — run the Great Expectations gate over archive partitions.

`check` validates every archive partition of the topic(s) overlapping [--since, --until)
with the suites derived from the event JSON Schemas, prints a summary, and exits 1 when a
partition fails. --quarantine moves the flagged records to quarantine/<topic>/dt=…/hr=…/
(with their reasons) and rewrites the partition without them. --results-dir writes the
validation results (JSON), a summary.json and Data Docs (HTML) there.

Times are ISO-8601 with an offset, e.g. 2026-11-01T00:00:00Z.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from feedline.cli import gate_progress, iso_time
from feedline.settings import get_batch_settings
from jobs.feedctl import deps


def register(nouns: Any) -> None:
    """Add `quality` and its verbs."""
    parser = nouns.add_parser("quality", help="data-quality gate over the event archive",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    check = verbs.add_parser("check", help="validate archive partitions; exit 1 on failure",
                             description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--topic", action="append", dest="topics", metavar="TOPIC",
                       help="event topic (repeatable; default: all three)")
    check.add_argument("--since", type=iso_time, help="window start, inclusive (ISO-8601)")
    check.add_argument("--until", type=iso_time, help="window end, exclusive (ISO-8601)")
    check.add_argument("--results-dir", type=Path,
                       help="write validation results (JSON) and Data Docs here")
    check.add_argument("--quarantine", action="store_true",
                       help="move flagged records to quarantine and rewrite their partitions")
    check.add_argument("--root", help="archive object prefix (default: settings)")
    check.set_defaults(run=_check)


def _check(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from pipelines.quality.gate import run_gate

    settings = get_batch_settings()
    topics = args.topics or list(settings.kafka.event_topics)
    unknown = [t for t in topics if t not in settings.kafka.topic_roles()]
    if unknown:
        print(f"feedctl quality check: not event topics: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.since and args.until and args.since >= args.until:
        print("feedctl quality check: --since must be before --until", file=sys.stderr)
        return 2
    deps.require(deps.storage(settings.storage))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with logging_redirect_tqdm(), \
            gate_progress(settings, topics, args.since, args.until, root=args.root):
        result = run_gate(settings, topics, args.since, args.until, quarantine=args.quarantine,
                          results_dir=args.results_dir, root=args.root)
    print(result.summary())
    if args.results_dir is not None:
        print(f"results: {args.results_dir}/validations, Data Docs: "
              f"{args.results_dir}/data_docs/index.html")
    if not result.partitions:
        print("no archive partitions in the window", file=sys.stderr)
    return 0 if result.passed else 1
