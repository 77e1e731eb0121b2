"""feedctl backfill — regenerate home timelines from the event archive.

    feedctl backfill --user U            one user, directly with the rules (seconds)
    feedctl backfill --users-file F      many users, through the Beam rebuild job
    feedctl backfill --all               everyone, through the Beam rebuild job

The quality gate runs first. Writes are throttled (--rate timelines per second) so live
reads stay fast. Many-user runs are resumable: users are appended to a checkpoint file as
they are written, and an interrupted run started again with the same arguments skips
them (--restart ignores the checkpoint). The checkpoint is removed when a run completes.
Exit codes: 0 done (or, with --dry-run, reported), 1 gate or job failure, 2 usage error,
3 a store (object storage, the CQL store, Redis) is unreachable.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from feedline.settings import get_batch_settings, get_stack_settings
from jobs.feedctl import deps


def register(nouns: Any) -> None:
    """Add `backfill`."""
    parser = nouns.add_parser("backfill", help="regenerate timelines from the archive",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one user id")
    who.add_argument("--users-file", help="file of user ids, one per line")
    who.add_argument("--all", action="store_true", help="every user in the archive")
    parser.add_argument("--since", help="first event time (ISO-8601)")
    parser.add_argument("--until", help="end of the window (ISO-8601, exclusive)")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="timelines written per second at most (default 500; 0: no limit)")
    parser.add_argument("--dry-run", action="store_true", help="report differences, write nothing")
    parser.add_argument("--quarantine", action="store_true",
                        help="let the quality gate move bad records aside")
    parser.add_argument("--no-gate", action="store_true",
                        help="skip the quality gate (it takes most of a one-user backfill); "
                        "an invalid record among the ones read still stops the command")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (default: under "
                        "the local state dir, named after the users and the target)")
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    parser.set_defaults(run=_backfill)


def _window(args: argparse.Namespace) -> tuple[Any, Any]:
    from feedline.cli import iso_time

    try:
        since = iso_time(args.since) if args.since else None
        until = iso_time(args.until) if args.until else None
    except argparse.ArgumentTypeError as err:
        raise SystemExit(f"feedctl backfill: {err}") from None
    return since, until


def _backfill(args: argparse.Namespace) -> int:
    if args.rate < 0:
        print("feedctl backfill: --rate must be >= 0", file=sys.stderr)
        return 2
    if args.users_file and not Path(args.users_file).is_file():
        print(f"feedctl backfill: no such file {args.users_file}", file=sys.stderr)
        return 2
    try:
        since, until = _window(args)
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    if args.user:
        return backfill_one(args.user, since, until, dry_run=args.dry_run,
                            quarantine=args.quarantine, gate=not args.no_gate)
    return _backfill_many(args)


def backfill_one(user: str, since: Any, until: Any, *, dry_run: bool, quarantine: bool,
                 gate: bool = True) -> int:
    """One user's timeline, recomputed in-process and written (or compared)."""
    from feedline.rebuild.direct import load_index
    from feedline.rebuild.drift import read_cql_timelines, read_redis_users, user_drift
    from feedline.rebuild.writer import ImageWriter, rebuild_write_time
    from feedline.rules.fanout import RulesConfig
    from feedline.stores.cluster_writes import cache_client, cache_keys
    from feedline.stores.cql import connect
    from pipelines.batch.job import quality_gate
    from pipelines.batch.report import say
    from schemas.event_contracts import InvalidEvent

    settings = get_batch_settings()
    kafka = settings.kafka
    deps.require(deps.storage(settings.storage), deps.cql(settings.cql),
                 deps.redis(settings.redis))
    if not gate:
        say("quality gate skipped (--no-gate)")
    elif not quality_gate(settings, [kafka.uploads_topic, kafka.follows_topic], since, until,
                          quarantine=quarantine):
        return 1
    started = time.monotonic()
    try:
        index = load_index(settings, since, until, progress=say)
        image = index.recompute([user], RulesConfig.from_settings(settings.feed), counters=False)
    except (InvalidEvent, ValueError, KeyError) as err:
        say(f"feedctl backfill: the archive holds a bad record ({err}); run the quality gate "
            "(`feedctl rebuild timelines --quarantine --dry-run`) first")
        return 1
    rows = image.timeline_rows(user)
    followed = set(image.feed.followed_celebrities.get(user, set()))
    say(f"{user}: {len(rows):,} timeline entries recomputed from "
        f"{len(index.followees.get(user, ())):,} followed authors "
        f"({time.monotonic() - started:.1f} s)")
    cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
    client = cache_client(settings.redis, decode_responses=True)
    keys = cache_keys(settings.redis)
    try:
        cql = read_cql_timelines(session, [user])
        cached, celebrities, _ = read_redis_users(client, keys, [user])
        drift = user_drift(user, expected_timeline={p: ms for ms, p, _ in rows},
                           expected_followed=followed, expected_counters=None,
                           cap=settings.feed.timeline_cap, cql_timeline=cql[user],
                           cached=cached[user], followed=celebrities[user],
                           cql_counters=None, cached_counters=None)
        for problem in drift.problems:
            say(f"{'would fix' if dry_run else 'fixing'}: {problem}")
        if not drift.drifted:
            say(f"{user}: stores already equal the recomputation")
        if dry_run:
            say("dry run: nothing written")
            return 0
        writer = ImageWriter(session, client, keys, timeline_cap=settings.feed.timeline_cap,
                             write_time_us=rebuild_write_time())
        writer.write_timelines({user: rows}, {user: followed}, [user])
        say(f"{user}: timeline rewritten ({len(rows):,} rows in CQL, "
            f"{min(len(rows), settings.feed.timeline_cap):,} in Redis)")
        return 0
    finally:
        cluster.shutdown()
        client.close()


def checkpoint_path(args: argparse.Namespace) -> Path:
    """Default checkpoint file: one per (users, keyspace, Redis prefix, window)."""
    settings = get_batch_settings()
    who = Path(args.users_file).read_bytes() if args.users_file else b"--all"
    digest = hashlib.sha256(b"|".join([
        who, settings.cql.keyspace.encode(), settings.redis.key_prefix.encode(),
        str(args.since).encode(), str(args.until).encode()])).hexdigest()[:16]
    return get_stack_settings().local.state_dir / "backfill" / f"{digest}.done"


def _backfill_many(args: argparse.Namespace) -> int:
    from jobs.feedctl.rebuild import require_stores
    from pipelines.batch import rebuild_timelines
    from pipelines.batch.report import say

    checkpoint = args.checkpoint or checkpoint_path(args)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if args.restart and checkpoint.exists():
        checkpoint.unlink()
    if checkpoint.exists() and not args.dry_run:
        done = sum(1 for line in checkpoint.read_text().splitlines() if line.strip())
        say(f"resuming: {done:,} user(s) already done according to {checkpoint}")
    argv = ["--checkpoint", str(checkpoint)] if not args.dry_run else []
    if args.users_file:
        argv += ["--users-file", args.users_file]
    if args.since:
        argv += ["--since", args.since]
    if args.until:
        argv += ["--until", args.until]
    if args.rate:
        argv += ["--rate", str(args.rate)]
    if args.dry_run:
        argv.append("--dry-run")
    if args.quarantine:
        argv.append("--quarantine")
    if args.no_gate:
        argv.append("--no-gate")
    require_stores(argv)
    code = rebuild_timelines.run(argv)
    if code == 0 and not args.dry_run:
        checkpoint.unlink(missing_ok=True)
        say("backfill complete; checkpoint removed")
    elif code != 0:
        say(f"backfill stopped (exit {code}); run the same command again to resume")
    return code
