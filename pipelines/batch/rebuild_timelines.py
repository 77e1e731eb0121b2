"""Rebuild home timelines from the event archive (the fan-out job's derived data).

    archive parts ─read─▶ (author shard, records) ─group─▶ fan-out rules per author
        ├─▶ celebrity flags, outboxes, post hashes (+ posts, user_posts, followers)
        └─▶ (reader shard, timeline rows) ─group─▶ timelines + followed celebrities
                                                     (+ following), CQL then Redis

The quality gate runs first. The rules are the streaming job's (``feedline.rules``),
applied per author over that author's events. Writes replace whole partitions and keys at
one write time, so running the job again changes nothing.

    python -m pipelines.batch.rebuild_timelines [--since T] [--until T] [--users U,V]
        [--dry-run] [--quarantine] [--all-tables] [--rate N] [--checkpoint FILE] [beam flags]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import apache_beam as beam

from feedline.settings import settings_errors_exit
from pipelines.batch.common import (
    JobArgs,
    PipelineProgress,
    ReadParts,
    StoreDoFn,
    advance,
    job_parser,
    parse_job_args,
    parse_shard,
    part_list,
    pipeline_options,
    print_metrics,
    quality_gate,
    say,
    shard_of,
)

#: One reader's share of a derive shard: timeline rows, followed celebrities, following rows.
ReaderPart = tuple[list[tuple[int, str, str]], set[str], list[tuple[str, int]]]


class DeriveAuthors(StoreDoFn):
    """Fan-out rules per author of one shard; writes author data, emits readers' rows."""

    def __init__(self, settings_json: str, job: dict[str, Any]) -> None:
        super().__init__(settings_json, job)
        self.events = beam.metrics.Metrics.counter("derive", "events")
        self.authors = beam.metrics.Metrics.counter("derive", "authors")
        self.rows = beam.metrics.Metrics.counter("derive", "timeline_rows")

    def process(self, element: tuple[int, Any]) -> Iterator[tuple[int, dict[str, ReaderPart]]]:
        """Derive one shard."""
        from feedline.rebuild.image import StoreImage, apply_groups, key_groups
        from feedline.rules.fanout import RulesConfig
        from feedline.rules.keys import Job

        started = time.monotonic()
        shard, batches = element
        job = self.job
        events = parse_shard(batches, job["since"], job["until"])
        image = StoreImage(RulesConfig.from_settings(self.settings.feed))
        applied = apply_groups(image, key_groups(events, Job.FANOUT))
        users = job["users"]
        if users is None and not job["dry_run"]:
            self.writer.write_authors(image, all_tables=job["all_tables"])
        readers = set(image.readers) | set(image.feed.timelines)
        readers |= set(image.feed.followed_celebrities)
        if users is not None:
            readers &= users
        following: dict[str, list[tuple[str, int]]] = {}
        if job["all_tables"]:
            for (followee, follower), ms in image.feed.edges.items():
                following.setdefault(follower, []).append((followee, ms))
        out: dict[int, dict[str, ReaderPart]] = {}
        rows = 0
        for reader in readers:
            timeline = image.timeline_rows(reader)
            rows += len(timeline)
            out.setdefault(shard_of(reader, job["shards"]), {})[reader] = (
                timeline, set(image.feed.followed_celebrities.get(reader, ())),
                following.get(reader, []))
        if users is not None and shard == 0:  # every named user is written, even if empty
            for user in users:
                out.setdefault(shard_of(user, job["shards"]), {}).setdefault(
                    user, ([], set(), []))
        self.events.inc(applied)
        self.authors.inc(len(image.authors))
        self.rows.inc(rows)
        say(f"derive shard {shard}: {applied:,} events, {len(image.authors):,} authors, "
            f"{rows:,} timeline rows, {time.monotonic() - started:.1f} s")
        advance(job.get("progress_file"))
        yield from out.items()


class WriteTimelines(StoreDoFn):
    """Merge readers' rows from every author shard; replace their timelines."""

    def __init__(self, settings_json: str, job: dict[str, Any]) -> None:
        super().__init__(settings_json, job)
        self.users_written = beam.metrics.Metrics.counter("write", "timelines")
        self.rows_written = beam.metrics.Metrics.counter("write", "timeline_rows")
        self.drifted = beam.metrics.Metrics.counter("dry_run", "timelines_that_would_change")
        self.entries = beam.metrics.Metrics.counter("dry_run", "entries_that_would_change")

    def setup(self) -> None:
        """Connect; read the checkpoint of users already done."""
        from feedline.rebuild.writer import Throttle

        super().setup()
        per_worker = self.job["rate"] / max(1, self.job["workers"]) if self.job["rate"] else None
        self.throttle = Throttle(per_worker)
        self.done: set[str] = set()
        self.reported = 0
        path = self.job["checkpoint"]
        if path and os.path.exists(path):
            with open(path) as handle:
                self.done = {line.strip() for line in handle if line.strip()}


    def process(self, element: tuple[int, Any]) -> Iterator[int]:
        """Write (or compare) one reader shard, a chunk of users at a time."""
        from feedline.rebuild.image import chunks

        shard, parts = element
        timelines: dict[str, list[tuple[int, str, str]]] = {}
        followed: dict[str, set[str]] = {}
        following: dict[str, list[tuple[str, int]]] = {}
        for part in parts:
            for reader, (rows, celebrities, edges) in part.items():
                timelines.setdefault(reader, []).extend(rows)
                followed.setdefault(reader, set()).update(celebrities)
                following.setdefault(reader, []).extend(edges)
        users = sorted(u for u in timelines if u not in self.done)
        written = 0
        for chunk in chunks(users, 500):
            if self.job["dry_run"]:
                self._compare(chunk, timelines, followed)
                continue
            self.writer.write_timelines(timelines, followed, chunk)
            if self.job["all_tables"]:
                self.writer.write_following(following, chunk)
            rows = sum(len(timelines[u]) for u in chunk)
            self.users_written.inc(len(chunk))
            self.rows_written.inc(rows)
            written += len(chunk)
            if self.job["checkpoint"]:
                with open(self.job["checkpoint"], "a") as handle:
                    handle.write("".join(f"{u}\n" for u in chunk))
                    handle.flush()
                    os.fsync(handle.fileno())
            self.throttle.take(len(chunk))
        say(f"timelines shard {shard}: {written:,} of {len(users):,} users written"
            + (f" ({len(timelines) - len(users):,} done before)" if self.done else ""))
        advance(self.job.get("progress_file"))
        yield written

    def _compare(self, users: list[str], timelines: dict[str, list[tuple[int, str, str]]],
                 followed: dict[str, set[str]]) -> None:
        from feedline.rebuild.drift import read_cql_timelines, read_redis_users, user_drift

        cql = read_cql_timelines(self.writer.session, users)
        cached, celebrities, _ = read_redis_users(self.writer.redis, self.writer.keys, users)
        for user in users:
            want = {post: ms for ms, post, _ in timelines[user]}
            drift = user_drift(user, expected_timeline=want,
                               expected_followed=followed.get(user, set()),
                               expected_counters=None, cap=self.writer.cap,
                               cql_timeline=cql[user], cached=cached[user],
                               followed=celebrities[user], cql_counters=None,
                               cached_counters=None)
            if drift.drifted:
                self.drifted.inc()
                self.entries.inc(len(set(want) ^ set(cql[user])))
                self.reported += 1
                if self.reported <= 20:
                    say(f"would change {user}: " + "; ".join(drift.problems))
                elif self.reported == 21:
                    say("... (more changes counted in dry_run.timelines_that_would_change)")


def build(pipeline: beam.Pipeline, parts: list[tuple[str, str]], settings_json: str,
          job: dict[str, Any], label: str = "") -> Any:
    """The graph: read, derive per author, write per reader (``label`` prefixes steps)."""
    shards = job["shards"]
    return (
        pipeline
        | f"{label}ListedParts" >> beam.Create(parts)
        | f"{label}SpreadParts" >> beam.Reshuffle()
        | f"{label}ReadParts" >> beam.ParDo(ReadParts(settings_json, shards, "fanout",
                                                      job.get("progress_file")))
        | f"{label}GroupByAuthorShard" >> beam.GroupByKey()
        | f"{label}DeriveAuthors" >> beam.ParDo(DeriveAuthors(settings_json, job))
        | f"{label}GroupByReaderShard" >> beam.GroupByKey()
        | f"{label}WriteTimelines" >> beam.ParDo(WriteTimelines(settings_json, job))
    )


def worker_count(options: Any) -> int:
    """How many worker processes share the writes (for the per-worker rate)."""
    return int(options.get_all_options().get("direct_num_workers") or 1)


def job_settings(parsed: JobArgs, *, workers: int) -> dict[str, Any]:
    """The plain values every DoFn of the job needs."""
    from feedline.rebuild.writer import rebuild_write_time

    args = parsed.args
    since: datetime | None = args.since
    until: datetime | None = args.until
    return {
        "since": since, "until": until, "users": parsed.users, "dry_run": args.dry_run,
        "all_tables": getattr(args, "all_tables", False), "shards": args.shards,
        "rate": getattr(args, "rate", None), "checkpoint": getattr(args, "checkpoint", None),
        "workers": workers, "write_time_us": rebuild_write_time(),
    }


def run(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the gate, run the pipeline; returns the exit code."""
    parser = job_parser("rebuild_timelines", __doc__)
    parser.add_argument("--all-tables", action="store_true",
                        help="also rewrite posts, user_posts, followers and following")
    parser.add_argument("--rate", type=float,
                        help="at most this many timelines written per second (default: no limit)")
    parser.add_argument("--checkpoint",
                        help="file of users done: appended as they are written, skipped on rerun")
    parsed = parse_job_args(parser, argv)
    settings, args = parsed.settings, parsed.args
    kafka = settings.kafka
    started = time.monotonic()
    window = f"[{args.since or '-inf'}, {args.until or '+inf'})"
    say(f"rebuild timelines: archive gs://{settings.storage.archive_bucket}/"
        f"{settings.archive_prefix} window {window}, keyspace {settings.cql.keyspace}, "
        f"redis prefix {settings.redis.key_prefix}"
        + (f", {len(parsed.users):,} user(s)" if parsed.users is not None else ", all users")
        + (" (dry run)" if args.dry_run else ""))
    if args.no_gate:
        say("quality gate skipped (--no-gate)")
    elif not quality_gate(settings, [kafka.uploads_topic, kafka.follows_topic], args.since,
                        args.until, quarantine=args.quarantine):
        return 1
    gate_done = time.monotonic()
    parts = part_list(settings, ("uploads", "follows"), args.since, args.until)
    say(f"{len(parts):,} archive part(s) to read")
    options = pipeline_options(parsed.beam_args)
    job = job_settings(parsed, workers=worker_count(options))
    # Steps: each part read, each author shard derived, each reader shard written.
    with PipelineProgress("rebuild timelines", len(parts) + 2 * args.shards,
                          options) as job["progress_file"]:
        pipeline = beam.Pipeline(options=options)
        build(pipeline, parts, settings.model_dump_json(), job)
        result = pipeline.run()
        result.wait_until_finish()
    finished = time.monotonic()
    print_metrics(result)
    say(f"rebuild timelines done: gate {gate_done - started:.1f} s, pipeline "
        f"{finished - gate_done:.1f} s, total {finished - started:.1f} s"
        + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    with settings_errors_exit("rebuild_timelines"):
        sys.exit(run())
