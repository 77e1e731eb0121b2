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

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
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

#: (created_ms, post_id, author_id) of one timeline row.
TimelineRow = tuple[int, str, str]
#: One reader's share of an author shard: timeline rows, followed celebrities, following rows.
ReaderPart = tuple[list[TimelineRow], set[str], list[tuple[str, int]]]


@dataclass
class AuthorShard:
    """The fan-out rules applied to one shard of authors."""

    shard: int
    image: StoreImage
    """The authors' derived state (their celebrity flags, outboxes, posts, followers)."""
    readers: dict[int, dict[str, ReaderPart]]
    """Their readers' rows, by reader shard."""


@dataclass
class ReaderShard:
    """One shard of readers, their rows merged from every author shard."""

    shard: int
    timelines: dict[str, list[TimelineRow]]
    followed: dict[str, set[str]]
    following: dict[str, list[tuple[str, int]]]


class DeriveAuthors(beam.DoFn):
    """Fan-out rules per author of one shard: the authors' image and their readers' rows."""

    def __init__(self, options: RebuildOptions) -> None:
        self.options = options
        self.events = beam.metrics.Metrics.counter("derive", "events")
        self.authors = beam.metrics.Metrics.counter("derive", "authors")
        self.rows = beam.metrics.Metrics.counter("derive", "timeline_rows")

    def process(self, element: tuple[int, Any]) -> Iterator[AuthorShard]:
        """Derive one shard."""
        from feedline.rebuild.image import apply_groups, key_groups

        started = time.monotonic()
        shard, batches = element
        options = self.options
        events = parse_shard(batches, options.since, options.until)
        image = StoreImage(options.rules)
        applied = apply_groups(image, key_groups(events, Job.FANOUT))
        readers = set(image.readers) | set(image.feed.timelines)
        readers |= set(image.feed.followed_celebrities)
        users = options.users
        if users is not None:
            readers &= users
        following: dict[str, list[tuple[str, int]]] = {}
        if options.all_tables:
            for (followee, follower), ms in image.feed.edges.items():
                following.setdefault(follower, []).append((followee, ms))
        out: dict[int, dict[str, ReaderPart]] = {}
        rows = 0
        for reader in readers:
            timeline = image.timeline_rows(reader)
            rows += len(timeline)
            out.setdefault(shard_of(reader, options.shards), {})[reader] = (
                timeline, set(image.feed.followed_celebrities.get(reader, ())),
                following.get(reader, []))
        if users is not None and shard == 0:  # every named user is written, even if empty
            for user in users:
                out.setdefault(shard_of(user, options.shards), {}).setdefault(
                    user, ([], set(), []))
        self.events.inc(applied)
        self.authors.inc(len(image.authors))
        self.rows.inc(rows)
        say(f"derive shard {shard}: {applied:,} events, {len(image.authors):,} authors, "
            f"{rows:,} timeline rows, {time.monotonic() - started:.1f} s")
        yield AuthorShard(shard, image, out)


def reader_parts(derived: AuthorShard) -> Iterable[tuple[int, dict[str, ReaderPart]]]:
    """An author shard's readers' rows, keyed by reader shard."""
    return derived.readers.items()


def merge_readers(element: tuple[int, Iterable[dict[str, ReaderPart]]]) -> ReaderShard:
    """One reader shard's rows from every author shard, merged per reader."""
    shard, parts = element
    merged = ReaderShard(shard, {}, {}, {})
    for part in parts:
        for reader, (rows, celebrities, edges) in part.items():
            merged.timelines.setdefault(reader, []).extend(rows)
            merged.followed.setdefault(reader, set()).update(celebrities)
            merged.following.setdefault(reader, []).extend(edges)
    return merged


class DeriveTimelines(beam.PTransform):
    """Author shards in; the authors' images and the readers' merged rows out. Pure.

    In: ``(author shard, batches of raw records)`` (``GroupByKeyShard(Job.FANOUT)``).
    Out: ``{"authors": AuthorShard, ..., "readers": ReaderShard, ...}``.
    """

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__()
        self.options = options

    def expand(self, shards: Any) -> Any:
        """Derive per author shard; regroup the readers' rows by reader shard."""
        authors = shards | "DeriveAuthors" >> beam.ParDo(DeriveAuthors(self.options))
        readers = (
            authors
            | "ReaderParts" >> beam.FlatMap(reader_parts)
            | "GroupByReaderShard" >> beam.GroupByKey()
            | "MergeReaders" >> beam.Map(merge_readers)
        )
        return {"authors": authors, "readers": readers}


class WriteAuthors(StoreSink):
    """Sink: the authors' celebrity flags, outboxes and post hashes (+ graph, profiles)."""

    def process(self, derived: AuthorShard) -> None:
        """Write one author shard."""
        self.writer.write_authors(derived.image, all_tables=self.options.all_tables)


class TimelineSink(StoreSink):
    """A sink of reader shards: each shard's users not done yet, a chunk at a time."""

    def setup(self) -> None:
        """Connect; read the checkpoint of users already done."""
        super().setup()
        self.done: set[str] = set()
        path = self.options.checkpoint
        if path and os.path.exists(path):
            with open(path) as handle:
                self.done = {line.strip() for line in handle if line.strip()}

    def process(self, readers: ReaderShard) -> Iterator[int]:
        """Write (or compare) one reader shard; yields how many users were written."""
        from feedline.rebuild.image import chunks

        users = sorted(u for u in readers.timelines if u not in self.done)
        written = sum(self.chunk(readers, chunk) for chunk in chunks(users, 500))
        say(f"timelines shard {readers.shard}: {written:,} of {len(users):,} users written"
            + (f" ({len(readers.timelines) - len(users):,} done before)"
               if self.done else ""))
        yield written

    def chunk(self, readers: ReaderShard, users: list[str]) -> int:
        """Handle some of a shard's users; how many were written."""
        raise NotImplementedError


class WriteTimelines(TimelineSink):
    """Sink: replace readers' timelines and followed celebrities (+ following)."""

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__(options)
        self.users_written = beam.metrics.Metrics.counter("write", "timelines")
        self.rows_written = beam.metrics.Metrics.counter("write", "timeline_rows")

    def setup(self) -> None:
        """Connect, read the checkpoint, start the rate limit (its share of ``--rate``)."""
        from feedline.rebuild.writer import Throttle

        super().setup()
        rate, workers = self.options.rate, self.options.workers
        self.throttle = Throttle(rate / max(1, workers) if rate else None)

    def chunk(self, readers: ReaderShard, users: list[str]) -> int:
        """Write some users, then note them in the checkpoint."""
        self.writer.write_timelines(readers.timelines, readers.followed, users)
        if self.options.all_tables:
            self.writer.write_following(readers.following, users)
        self.users_written.inc(len(users))
        self.rows_written.inc(sum(len(readers.timelines[u]) for u in users))
        if self.options.checkpoint:
            with open(self.options.checkpoint, "a") as handle:
                handle.write("".join(f"{u}\n" for u in users))
                handle.flush()
                os.fsync(handle.fileno())
        self.throttle.take(len(users))
        return len(users)


class CompareTimelines(TimelineSink):
    """Dry-run sink: report readers whose stored timelines differ; write nothing."""

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__(options)
        self.drifted = beam.metrics.Metrics.counter("dry_run", "timelines_that_would_change")
        self.entries = beam.metrics.Metrics.counter("dry_run", "entries_that_would_change")

    def setup(self) -> None:
        """Connect, read the checkpoint; nothing reported yet."""
        super().setup()
        self.reported = 0

    def chunk(self, readers: ReaderShard, users: list[str]) -> int:
        """Compare some users with both stores."""
        from feedline.rebuild.drift import read_cql_timelines, read_redis_users, user_drift

        cql = read_cql_timelines(self.writer.session, users)
        cached, celebrities, _ = read_redis_users(self.writer.redis, self.writer.keys, users)
        for user in users:
            want = {post: ms for ms, post, _ in readers.timelines[user]}
            drift = user_drift(user, expected_timeline=want,
                               expected_followed=readers.followed.get(user, set()),
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
        return 0


def build(read: Any, options: RebuildOptions) -> None:
    """The graph from the parts read: derive per author shard, write authors and timelines."""
    derived = (
        read
        | "GroupByAuthorShard" >> GroupByKeyShard(Job.FANOUT, options.shards)
        | "DeriveTimelines" >> DeriveTimelines(options)
    )
    # Progress steps (besides each part read): each author shard derived, each reader
    # shard written.
    _ = derived["authors"] | "AuthorShardsDerived" >> CountSteps(options.progress_file)
    if options.users is None and not options.dry_run:
        _ = derived["authors"] | "WriteAuthors" >> beam.ParDo(WriteAuthors(options))
    if options.dry_run:
        written = derived["readers"] | "CompareTimelines" >> beam.ParDo(
            CompareTimelines(options))
    else:
        written = derived["readers"] | "WriteTimelines" >> beam.ParDo(WriteTimelines(options))
    _ = written | "ReaderShardsWritten" >> CountSteps(options.progress_file)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The timelines job's own flags."""
    parser.add_argument("--all-tables", action="store_true",
                        help="also rewrite posts, user_posts, followers and following")
    parser.add_argument("--rate", type=float,
                        help="at most this many timelines written per second (default: no limit)")
    parser.add_argument("--checkpoint",
                        help="file of users done: appended as they are written, skipped on rerun")


JOB = RebuildJob(name="timelines", description=__doc__, roles=("uploads", "follows"),
                 build=build, steps_per_shard=2, add_flags=add_flags, everyone=", all users")


def run(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the gate, run the pipeline; returns the exit code."""
    return run_job(JOB, argv)


if __name__ == "__main__":
    with settings_errors_exit("rebuild_timelines"):
        sys.exit(run())
