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
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from feedline.rebuild.image import StoreImage
from feedline.rules.keys import Job
from feedline.settings import settings_errors_exit
from pipelines.batch.job import RebuildJob, run_job
from pipelines.batch.options import RebuildOptions
from pipelines.batch.report import say
from pipelines.batch.transforms import (
    CountSteps,
    GroupByKeyShard,
    StoreSink,
    parse_shard,
    shard_of,
)


@dataclass
class CounterShard:
    """The counter rules applied to one shard of post and user keys."""

    shard: int
    image: StoreImage
    """The keys' counters (``image.feed.post_counters`` / ``user_counters``)."""
    applied: int
    """Events applied."""
    derive_s: float
    """Seconds the derivation took."""


class DeriveCounterShard(beam.DoFn):
    """Counter rules per key of one shard (only the named users' keys with ``users``)."""

    def __init__(self, options: RebuildOptions) -> None:
        self.options = options
        self.events = beam.metrics.Metrics.counter("derive", "counter_events")

    def process(self, element: tuple[int, Any]) -> Iterator[CounterShard]:
        """Derive one shard."""
        from feedline.rebuild.image import apply_groups, key_groups
        from feedline.rules.keys import KeyKind

        started = time.monotonic()
        shard, batches = element
        options = self.options
        events = parse_shard(batches, options.since, options.until)
        # A follow event reaches the shards of both its users: each shard keeps its own keys.
        groups = {k: v for k, v in key_groups(events, Job.COUNTERS).items()
                  if shard_of(k.text, options.shards) == shard}
        users = options.users
        if users is not None:
            groups = {k: v for k, v in groups.items()
                      if k.kind is KeyKind.USER and k.ident in users}
        image = StoreImage(options.rules)
        applied = apply_groups(image, groups)
        self.events.inc(applied)
        yield CounterShard(shard, image, applied, time.monotonic() - started)


class DeriveCounters(beam.PTransform):
    """Counter shards in, their counters out. Pure.

    In: ``(counter shard, batches of raw records)`` (``GroupByKeyShard(Job.COUNTERS)``).
    Out: ``CounterShard``, one per shard.
    """

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__()
        self.options = options

    def expand(self, shards: Any) -> Any:
        """Apply the counter rules per shard."""
        return shards | "DeriveCounterShard" >> beam.ParDo(DeriveCounterShard(self.options))


class WriteCounters(StoreSink):
    """Sink: replace the post counters (all of them) and the user counters."""

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__(options)
        self.posts = beam.metrics.Metrics.counter("write", "post_counters")
        self.users = beam.metrics.Metrics.counter("write", "user_counters")

    def process(self, derived: CounterShard) -> Iterator[int]:
        """Write one shard; yields how many keys were written."""
        started = time.monotonic()
        image, users = derived.image, self.options.users
        self.writer.write_counters(image, users=users)
        posts = len(image.counter_posts) if users is None else 0
        self.posts.inc(posts)
        self.users.inc(len(image.counter_users))
        took = derived.derive_s + time.monotonic() - started
        say(f"counters shard {derived.shard}: {derived.applied:,} events, {posts:,} posts, "
            f"{len(image.counter_users):,} users written, {took:.1f} s")
        yield posts + len(image.counter_users)


class CompareCounters(StoreSink):
    """Dry-run sink: count the keys whose stored counters differ; write nothing."""

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__(options)
        self.drifted = beam.metrics.Metrics.counter("dry_run", "counters_that_would_change")

    def process(self, derived: CounterShard) -> Iterator[int]:
        """Compare one shard; yields how many keys would change."""
        changed = self.compare(derived.image)
        say(f"counters shard {derived.shard}: {changed:,} key(s) would change")
        yield changed

    def compare(self, image: StoreImage) -> int:
        """Keys of the image whose counters differ in CQL or Redis."""
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


def build(read: Any, options: RebuildOptions) -> None:
    """The graph from the parts read: derive per counter shard, write (or compare) it."""
    derived = (
        read
        | "GroupByCounterShard" >> GroupByKeyShard(Job.COUNTERS, options.shards)
        | "DeriveCounters" >> DeriveCounters(options)
    )
    if options.dry_run:
        written = derived | "CompareCounters" >> beam.ParDo(CompareCounters(options))
    else:
        written = derived | "WriteCounters" >> beam.ParDo(WriteCounters(options))
    # Progress steps (besides each part read): each counter shard derived and written.
    _ = written | "CounterShardsWritten" >> CountSteps(options.progress_file)


JOB = RebuildJob(name="counters", description=__doc__,
                 roles=("uploads", "follows", "engagements"), build=build, steps_per_shard=1)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the gate, run the pipeline; returns the exit code."""
    return run_job(JOB, argv)


if __name__ == "__main__":
    with settings_errors_exit("rebuild_counters"):
        sys.exit(run())
