"""feedctl verify — compare Redis, the CQL store and a recomputation from the archive.

For a sample of users (or the ones named), recompute their home timeline, followed
celebrities, user counters and notifications from the event archive with the rules, and
compare with the CQL timeline rows, the Redis timeline (its newest `timeline_cap`
entries), the followed-celebrity set, the counters in both stores, and the user's
notification groups as a recipient (every live group in CQL; a cached Redis list must
hold exactly the newest 500). One line per user; a summary.
Events newer than the archive (archiver lag) show up as drift: verify a window that the
archiver has finished (--until), or after `feedctl archive` caught up.
Exit codes: 0 no drift, 1 drift (or the quality gate failed), 2 usage error, 3 could not
check: a store (object storage, the CQL store, Redis) is unreachable.
With --json, one JSON document on stdout: {"checked", "drifted", "gate", "users": [{"user",
"drift", "problems", "timeline_entries", "notification_groups"}]} (same exit codes; none
when it could not check; "notification_groups" is null with --no-notifications).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
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
    add_json_flag(parser)
    parser.set_defaults(run=_verify)


def _verify(args: argparse.Namespace) -> int:
    import redis

    from feedline.cli import iso_time
    from feedline.rebuild.direct import load_index, recompute_notifications
    from feedline.rebuild.drift import (
        notification_problems,
        read_cql_notifications,
        read_cql_timelines,
        read_cql_user_counters,
        read_redis_notifications,
        read_redis_users,
        user_drift,
    )
    from feedline.rebuild.notifications import NotificationImage
    from feedline.rules.fanout import RulesConfig
    from feedline.stores.cql import connect
    from pipelines.batch.job import quality_gate
    from pipelines.batch.report import say
    from schemas.redis_keys import RedisKeys

    if args.sample is not None and args.sample < 1:
        print("feedctl verify: --sample must be at least 1", file=sys.stderr)
        return 2
    try:
        since = iso_time(args.since) if args.since else None
        until = iso_time(args.until) if args.until else None
    except argparse.ArgumentTypeError as err:
        print(f"feedctl verify: {err}", file=sys.stderr)
        return 2
    settings = get_batch_settings()
    kafka = settings.kafka
    deps.require(deps.storage(settings.storage), deps.cql(settings.cql),
                 deps.redis(settings.redis))
    if args.no_gate:
        say("quality gate skipped (--no-gate)")
    elif not quality_gate(settings, [kafka.uploads_topic, kafka.follows_topic]
                          + ([] if args.no_notifications else [kafka.engagements_topic]),
                          since, until, quarantine=False):
        if args.json:
            print_json({"checked": 0, "drifted": 0, "gate": "failed", "users": []})
        return 1
    started = time.monotonic()
    counters, notifications = not args.no_counters, not args.no_notifications
    expected_notes = NotificationImage()
    try:
        index = load_index(settings, since, until, progress=say)
        if args.users:
            users = sorted({u.strip() for u in args.users.split(",") if u.strip()})
        else:
            universe = sorted(index.users())
            users = sorted(random.Random(args.seed).sample(  # noqa: S311 (sampling)
                universe, min(args.sample, len(universe))))
        image = index.recompute(users, RulesConfig.from_settings(settings.feed), counters=counters)
        if notifications:
            expected_notes = recompute_notifications(settings, since, until, users, progress=say)
    except (ValueError, KeyError) as err:  # InvalidEvent is a ValueError
        say(f"feedctl verify: the archive holds a bad record ({err}); run the quality gate")
        return 1
    say(f"recomputed {len(users):,} user(s) from {index.parts:,} archive parts "
        f"in {time.monotonic() - started:.1f} s")
    cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
    client = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    try:
        cql = read_cql_timelines(session, users)
        cql_counters = read_cql_user_counters(session, users) if counters else {}
        keys = RedisKeys(settings.redis.key_prefix)
        cached, followed, cached_counters = read_redis_users(client, keys, users)
        cql_notes = read_cql_notifications(session, users) if notifications else {}
        cached_notes = read_redis_notifications(client, keys, users) if notifications else {}
    finally:
        cluster.shutdown()
        client.close()
    report = []
    for user in users:
        drift = user_drift(
            user,
            expected_timeline={p: ms for ms, p, _ in image.timeline_rows(user)},
            expected_followed=set(image.feed.followed_celebrities.get(user, set())),
            expected_counters=image.feed.user_counters.get(user, {}) if counters else None,
            cap=settings.feed.timeline_cap, cql_timeline=cql[user], cached=cached[user],
            followed=followed[user], cql_counters=cql_counters.get(user),
            cached_counters=cached_counters[user] if counters else None)
        if notifications:
            drift.problems += notification_problems(
                expected_notes.groups.get(user, {}), cql_notes[user], cached_notes[user])
        report.append({"user": user, "drift": drift.drifted, "problems": list(drift.problems),
                       "timeline_entries": len(cql[user]),
                       "notification_groups": len(cql_notes[user]) if notifications else None})
    drifted = sum(1 for row in report if row["drift"])
    if args.json:
        print_json({"checked": len(users), "drifted": drifted,
                    "gate": "skipped" if args.no_gate else "passed", "users": report})
        return 1 if drifted else 0
    for row in report:
        if row["drift"]:
            print(f"{row['user']}  DRIFT  " + "; ".join(row["problems"]))
        else:
            notes = row["notification_groups"]
            print(f"{row['user']}  ok     {row['timeline_entries']:,} timeline entries"
                  + ("" if notes is None else f", {notes:,} notification groups"))
    print(f"{len(users):,} user(s) checked, {drifted:,} with drift")
    return 1 if drifted else 0
