"""feedctl verify — compare Redis, the CQL store and a recomputation from the archive.

For a sample of users (or the ones named), recompute their home timeline, followed
celebrities, user counters and notifications from the event archive with the rules, and
compare with the CQL timeline rows, the Redis timeline (its newest `timeline_cap`
entries), the followed-celebrity set, the counters in both stores, and the user's
notification groups as a recipient (every live group in CQL; a cached Redis list must
hold exactly the newest 500). One line per user; a summary.
Events newer than the archive (archiver lag) or not yet applied by a job show up as
drift on a stack that is taking events: --live reads, around the store reads, the Kafka
records past the oldest offset the archiver or a streaming job has not committed, and skips
the users those records may have changed (the rest are checked exactly; see
jobs/verifying.py). Without it, verify a quiet stack, or a window the archiver has
finished (--until) of users nothing changed since.
Exit codes: 0 no drift, 1 drift (or the quality gate failed), 2 usage error, 3 could not
check: a store (object storage, the CQL store, Redis; Kafka with --live) is unreachable.
With --json, one JSON document on stdout: {"checked", "drifted", "gate", "skipped",
"tail_records", "users": [{"user", "drift", "problems", "timeline_entries",
"notification_groups"}]} (same exit codes; none when it could not check;
"notification_groups" is null with --no-notifications; "tail_records" is null and
"skipped" empty without --live).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from feedline.settings import get_batch_settings
from jobs.feedctl import deps
from jobs.feedctl.output import add_json_flag, print_json


def register(nouns: Any) -> None:
    """Add `verify`."""
    parser = nouns.add_parser("verify", help="report drift between stores and the archive",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--sample", type=int, metavar="N", help="check N random users")
    who.add_argument("--users", help="comma-separated user ids to check")
    parser.add_argument("--seed", type=int, help="sample seed (default: random)")
    parser.add_argument("--since", help="first event time (ISO-8601)")
    parser.add_argument("--until", help="end of the window (ISO-8601, exclusive)")
    parser.add_argument("--no-counters", action="store_true", help="do not check counters")
    parser.add_argument("--no-notifications", action="store_true",
                        help="do not check notifications (they need every post's events)")
    parser.add_argument("--no-gate", action="store_true",
                        help="skip the quality gate; an invalid record read still stops it")
    parser.add_argument("--live", action="store_true",
                        help="on a stack taking events: skip the users events past the "
                        "consumers' Kafka commits may have changed (needs Kafka)")
    add_json_flag(parser)
    parser.set_defaults(run=_verify)


def _verify(args: argparse.Namespace) -> int:
    from feedline.cli import iso_time
    from jobs.verifying import BadArchive, check
    from pipelines.batch.report import say

    if args.sample is not None and args.sample < 1:
        print("feedctl verify: --sample must be at least 1", file=sys.stderr)
        return 2
    try:
        since = iso_time(args.since) if args.since else None
        until = iso_time(args.until) if args.until else None
    except argparse.ArgumentTypeError as err:
        print(f"feedctl verify: {err}", file=sys.stderr)
        return 2
    if args.live and (since or until):
        print("feedctl verify: --live checks the whole archive; drop --since/--until",
              file=sys.stderr)
        return 2
    settings = get_batch_settings()
    needs = [deps.storage(settings.storage), deps.cql(settings.cql), deps.redis(settings.redis)]
    deps.require(*needs, *([deps.kafka(settings.kafka)] if args.live else []))
    users = ([u.strip() for u in args.users.split(",") if u.strip()] if args.users else None)
    try:
        report = check(settings, users=users, sample=args.sample, seed=args.seed, since=since,
                       until=until, counters=not args.no_counters,
                       notifications=not args.no_notifications, gate=not args.no_gate,
                       live=args.live, progress=say)
    except BadArchive as err:
        say(f"feedctl verify: the archive holds a bad record ({err}); run the quality gate")
        return 1
    if args.json:
        print_json(report.as_json())
        return 1 if report.drifted or report.gate == "failed" else 0
    if report.gate == "failed":
        return 1
    for row in report.users:
        if row.drift:
            print(f"{row.user}  DRIFT  " + "; ".join(row.problems))
        else:
            notes = row.notification_groups
            print(f"{row.user}  ok     {row.timeline_entries:,} timeline entries"
                  + ("" if notes is None else f", {notes:,} notification groups"))
    for user in report.skipped:
        print(f"{user}  skipped  changed by events past the archive or not yet applied")
    skipped = f", {len(report.skipped):,} skipped (live)" if args.live else ""
    print(f"{report.checked:,} user(s) checked, {len(report.drifted):,} with drift{skipped}")
    return 1 if report.drifted else 0
