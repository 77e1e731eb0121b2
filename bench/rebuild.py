"""Benchmark: full rebuild of the standard workload from the archive, end to end.

    .venv/bin/python -m bench.rebuild [--rounds 3] [--runner flink]   (`make bench-rebuild`;
                                                                      the stack must be up)

Setup (not timed): the standard workload (10,000 users, ~750,000 follows, 5,000 posts and
their engagements) is written to a fresh archive prefix as the archiver lays it out
(hourly partitions, parts of at most 50,000 records), with a fresh keyspace and Redis
prefix. Timed, per round (wall and CPU): `feedctl rebuild all` — the quality gate over every
topic, the timelines, counters and notifications jobs on the DirectRunner (2 worker
processes each; `--runner flink`: on Beam's Flink runner, docs/SCALING.md), including
every CQL and Redis write. Between rounds the timeline and counter
tables and the Redis prefix are wiped, as an operator would find them. Prints stage
timings and medians and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import re
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from feedline.archive.store import Archive
from feedline.settings import BatchSettings, CqlSettings, RedisSettings, get_stack_settings
from feedline.stores.cluster_writes import delete_keys
from feedline.stores.cql import connect, drop_keyspace, migrate
from feedline.workload import Workload, WorkloadSpec
from jobs.feedctl.rebuild import rebuild_all
from schemas.cql_statements import READS

_STAGE = re.compile(r"(gate|pipeline|total) ([0-9.]+) s")


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wipe(session: Any, client: redis.Redis, prefix: str) -> None:
    """Empty the timeline and counter tables and the Redis prefix."""
    for table in ("timelines", "post_counters", "user_counters", "celebrities"):
        session.execute(f"TRUNCATE {table}", timeout=120)
    delete_keys(client, f"{prefix}:*", batch=5000)


class Tee(io.TextIOBase):
    """Copies writes to stderr and keeps them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        sys.__stderr__.write(text)
        self.lines.append(text)
        return len(text)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Set up, time the rounds, report."""
    parser = argparse.ArgumentParser(prog="bench.rebuild", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path(".local/bench/rebuild.json"))
    args, beam_args = parser.parse_known_args(argv)
    stack = get_stack_settings()
    tag = uuid.uuid4().hex[:8]
    keyspace, prefix, root = f"bench_rebuild_{tag}", f"bench{tag}", f"bench_rebuild_{tag}/events"
    settings = BatchSettings(kafka=stack.kafka, cql=CqlSettings(**{**stack.cql.model_dump(),
                                                                   "keyspace": keyspace}),
                             redis=RedisSettings(url=stack.redis.url, key_prefix=prefix),
                             storage=stack.storage, feed=stack.feed, archive_prefix=root)
    from tests.support.archive import write_archive

    spec = WorkloadSpec(users=args.users, posts=args.posts)
    say(f"generating the workload ({spec.users:,} users, {spec.posts:,} posts)")
    produced = list(Workload(spec).events())
    counts: dict[str, int] = {}
    for item in produced:
        counts[item.event.event_type] = counts.get(item.event.event_type, 0) + 1
    archive = Archive.open(settings.storage, root)
    say(f"archiving {len(produced):,} events under {root}")
    parts = write_archive(archive, settings.kafka, produced)
    del produced
    migrate(stack.cql, keyspace=keyspace)
    cluster, session = connect(settings.cql, keyspace=keyspace)
    client = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    rounds: list[dict[str, float]] = []
    try:
        for n in range(args.rounds):
            wipe(session, client, prefix)
            say(f"round {n + 1}/{args.rounds}: feedctl rebuild all")
            tee = Tee()
            cpu_before = _cpu_s()
            started = time.monotonic()
            with contextlib.redirect_stderr(tee):
                code = rebuild_all(["--settings-json", settings.model_dump_json(), *beam_args])
            elapsed = time.monotonic() - started
            cpu = _cpu_s() - cpu_before
            if code != 0:
                raise SystemExit(f"rebuild failed with exit code {code}")
            stages = [m.groups() for m in _STAGE.finditer("".join(tee.lines))]
            pipelines = [float(v) for k, v in stages if k == "pipeline"]
            timings = {"total_s": elapsed, "gate_and_setup_s": elapsed - sum(pipelines),
                       "timelines_pipeline_s": pipelines[0], "counters_pipeline_s": pipelines[1],
                       "notifications_pipeline_s": pipelines[2], "cpu_s": cpu}
            rounds.append(timings)
            say("  " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        timeline_rows = session.execute(READS["timeline_rows_count"], timeout=300).one()[0]
        redis_timelines = sum(1 for _ in client.scan_iter(match=f"{prefix}:tl:*", count=5000))
    finally:
        wipe(session, client, prefix)
        cluster.shutdown()
        client.close()
        drop_keyspace(stack.cql, keyspace)
        for blob in archive.bucket.list_blobs(prefix=f"bench_rebuild_{tag}/"):
            blob.delete()
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "workload": {"events": sum(counts.values()), "by_type": counts, "archive_parts": parts},
        "result": {"timeline_rows": timeline_rows, "redis_timelines": redis_timelines},
        "rounds": rounds,
        "medians": medians,
        "target_s": 120,
        "target_met": medians["total_s"] <= 120,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return results


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children waited for: the
    DirectRunner's worker processes, or the Flink runner's job server and Beam process."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    run()
