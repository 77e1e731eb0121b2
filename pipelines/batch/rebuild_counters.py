"""Rebuild post and user counters from the event archive (the counters job's data).

    archive parts ─read─▶ (counter shard, records) ─group─▶ counter rules per
        post:ID / user:ID ─▶ post_counters, user_counters, then Redis pc / uc hashes

The quality gate runs first. The rules are the streaming job's (``feedline.rules``),
applied per key over that key's events; sinks write absolute values, and each row and hash
is replaced whole, so running the job again changes nothing.

    python -m pipelines.batch.rebuild_counters [--since T] [--until T] [--users U,V]
        [--dry-run] [--quarantine] [beam flags]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
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


class DeriveCounters(StoreDoFn):
    """Counter rules per key of one shard; writes (or compares) the counters."""

    def __init__(self, settings_json: str, job: dict[str, Any]) -> None:
        super().__init__(settings_json, job)
        self.events = beam.metrics.Metrics.counter("derive", "counter_events")
        self.posts = beam.metrics.Metrics.counter("write", "post_counters")
        self.users = beam.metrics.Metrics.counter("write", "user_counters")
        self.drifted = beam.metrics.Metrics.counter("dry_run", "counters_that_would_change")

    def process(self, element: tuple[int, Any]) -> Iterator[int]:
        """Derive and write one shard."""
        from feedline.rebuild.image import StoreImage, apply_groups, key_groups
        from feedline.rules.fanout import RulesConfig
        from feedline.rules.keys import Job, KeyKind

        started = time.monotonic()
        shard, batches = element
        job = self.job
        events = parse_shard(batches, job["since"], job["until"])
        # A follow event reaches the shards of both its users: each shard keeps its own keys.
        groups = {k: v for k, v in key_groups(events, Job.COUNTERS).items()
                  if shard_of(k.text, job["shards"]) == shard}
        users = job["users"]
        if users is not None:
            groups = {k: v for k, v in groups.items()
                      if k.kind is KeyKind.USER and k.ident in users}
        image = StoreImage(RulesConfig.from_settings(self.settings.feed))
        applied = apply_groups(image, groups)
        self.events.inc(applied)
        if job["dry_run"]:
            changed = self._compare(image)
            say(f"counters shard {shard}: {changed:,} key(s) would change")
            advance(job.get("progress_file"))
            yield changed
            return
        self.writer.write_counters(image, users=users)
        posts = len(image.counter_posts) if users is None else 0
        self.posts.inc(posts)
        self.users.inc(len(image.counter_users))
        say(f"counters shard {shard}: {applied:,} events, {posts:,} posts, "
            f"{len(image.counter_users):,} users written, {time.monotonic() - started:.1f} s")
        advance(job.get("progress_file"))
        yield posts + len(image.counter_users)

    def _compare(self, image: Any) -> int:
        from feedline.rebuild.drift import read_cql_user_counters, read_redis_users
        from schemas.redis_hashes import decode_post_counters

        users = sorted(image.counter_users)
        cql = read_cql_user_counters(self.writer.session, users)
        _, _, cached = read_redis_users(self.writer.redis, self.writer.keys, users)
        changed = 0
        for user in users:
            want = image.feed.user_counters.get(user, {})
            if cql[user] != want or cached[user] != want:
                changed += 1
                if changed <= 20:
                    say(f"would change user counters of {user}: cql {cql[user]}, "
                        f"redis {cached[user]}, recomputed {want}")
        pipe = self.writer.redis.pipeline(transaction=False)
        posts = sorted(image.counter_posts)
        for post in posts:
            pipe.hgetall(self.writer.keys.post_counters(post))
        for post, stored in zip(posts, pipe.execute(), strict=True):
            want_post = image.feed.post_counters.get(post)
            got = decode_post_counters(stored) if stored else None
            if got != want_post:
                changed += 1
        self.drifted.inc(changed)
        return changed


def job_settings(parsed: JobArgs) -> dict[str, Any]:
    """The plain values every DoFn of the job needs."""
    from feedline.rebuild.writer import rebuild_write_time

    args = parsed.args
    return {"since": args.since, "until": args.until, "users": parsed.users,
            "shards": args.shards, "dry_run": args.dry_run,
            "write_time_us": rebuild_write_time()}


def build(pipeline: beam.Pipeline, parts: list[tuple[str, str]], settings_json: str,
          job: dict[str, Any], label: str = "") -> Any:
    """The graph: read, derive and write per counter shard."""
    return (
        pipeline
        | f"{label}ListedParts" >> beam.Create(parts)
        | f"{label}SpreadParts" >> beam.Reshuffle()
        | f"{label}ReadParts" >> beam.ParDo(ReadParts(settings_json, job["shards"], "counters",
                                                      job.get("progress_file")))
        | f"{label}GroupByCounterShard" >> beam.GroupByKey()
        | f"{label}DeriveCounters" >> beam.ParDo(DeriveCounters(settings_json, job))
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the gate, run the pipeline; returns the exit code."""
    parser = job_parser("rebuild_counters", __doc__)
    parsed = parse_job_args(parser, argv)
    settings, args = parsed.settings, parsed.args
    started = time.monotonic()
    say(f"rebuild counters: archive gs://{settings.storage.archive_bucket}/"
        f"{settings.archive_prefix} window [{args.since or '-inf'}, {args.until or '+inf'}), "
        f"keyspace {settings.cql.keyspace}, redis prefix {settings.redis.key_prefix}"
        + (f", {len(parsed.users):,} user(s)" if parsed.users is not None else "")
        + (" (dry run)" if args.dry_run else ""))
    if args.no_gate:
        say("quality gate skipped (--no-gate)")
    elif not quality_gate(settings, list(settings.kafka.event_topics), args.since, args.until,
                        quarantine=args.quarantine):
        return 1
    gate_done = time.monotonic()
    parts = part_list(settings, ("uploads", "follows", "engagements"), args.since, args.until)
    say(f"{len(parts):,} archive part(s) to read")
    options = pipeline_options(parsed.beam_args)
    job = job_settings(parsed)
    # Steps: each part read, each counter shard derived and written.
    with PipelineProgress("rebuild counters", len(parts) + args.shards,
                          options) as job["progress_file"]:
        pipeline = beam.Pipeline(options=options)
        build(pipeline, parts, settings.model_dump_json(), job)
        result = pipeline.run()
        result.wait_until_finish()
    finished = time.monotonic()
    print_metrics(result)
    say(f"rebuild counters done: gate {gate_done - started:.1f} s, pipeline "
        f"{finished - gate_done:.1f} s, total {finished - started:.1f} s"
        + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    with settings_errors_exit("rebuild_counters"):
        sys.exit(run())
