"""Rebuild every recipient's notifications from the event archive (the notifications job's data).

    archive parts ─read─▶ (key shard, records) ─group─▶ post rules per npost:POST
        ├─ like / comment groups, mention candidates ─▶ (recipient shard, parts) ─┐
        └─ events of each recipient:USER ──────────────▶ (recipient shard, parts) ─┤
                                        group ◀─────────────────────────────────────┘
        ─▶ per recipient: its events and candidates through the gate, in event-time
           order ─▶ final groups ─▶ notification_groups (CQL), then the Redis list

The quality gate runs first. The rules are the streaming job's (``feedline.rules``),
applied per key over that key's events (``feedline.rebuild.notifications``). Each
recipient's CQL partition and Redis list are replaced whole at one write time, so running
the job again changes nothing; read markers are the users' own and stay.

    python -m pipelines.batch.rebuild_notifications [--since T] [--until T] [--users U,V]
        [--dry-run] [--quarantine] [beam flags]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from feedline.rebuild.notifications import Groups, RecipientPart
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


def recipient_shard(user_id: str, shards: int) -> int:
    """The shard of a recipient's ``recipient:USER`` key (where its events already are)."""
    return shard_of(f"recipient:{user_id}", shards)


@dataclass
class NotificationShard:
    """The recipients of one shard, derived."""

    shard: int
    groups: dict[str, Groups]
    """recipient -> live groups (only those with some)."""
    recipients: set[str]
    """Recipients whose stored notifications are replaced (cleared when they have none)."""
    derive_s: float
    """Seconds the derivation took."""

    @property
    def group_count(self) -> int:
        """Live groups derived."""
        return sum(len(g) for g in self.groups.values())


class DeriveKeyShard(beam.DoFn):
    """Hop one: a key shard's npost keys run, every recipient's share sent to its shard."""

    def __init__(self, options: RebuildOptions) -> None:
        self.options = options
        self.events = beam.metrics.Metrics.counter("derive", "notification_events")
        self.posts = beam.metrics.Metrics.counter("derive", "notified_posts")

    def process(self, element: tuple[int, Any]) -> Iterator[tuple[int, dict[str, RecipientPart]]]:
        """Run one shard's post keys; yields (recipient shard, recipient -> part)."""
        from feedline.rebuild.image import key_groups
        from feedline.rebuild.notifications import derive_post_key
        from feedline.rules.keys import KeyKind

        shard, batches = element
        options = self.options
        events = parse_shard(batches, options.since, options.until)
        # An event reaches the shard of each of its keys: each shard runs its own keys.
        groups = {k: v for k, v in key_groups(events, Job.NOTIFICATIONS).items()
                  if shard_of(k.text, options.shards) == shard}
        out: dict[int, dict[str, RecipientPart]] = {}
        for key in sorted(groups):
            if key.kind is KeyKind.NOTIFIED_POST:
                shares = derive_post_key(key.ident, groups[key])
                self.posts.inc()
            else:
                shares = {key.ident: RecipientPart(events=groups[key])}
            self.events.inc(len(groups[key]))
            for user, share in shares.items():
                target = out.setdefault(recipient_shard(user, options.shards), {})
                target.setdefault(user, RecipientPart()).merge(share)
        yield from out.items()


class DeriveRecipientShard(beam.DoFn):
    """Hop two: each recipient of a shard through its gate, with the post keys' groups."""

    def __init__(self, options: RebuildOptions) -> None:
        self.options = options
        self.groups = beam.metrics.Metrics.counter("derive", "notification_groups")

    def process(self, element: tuple[int, Iterable[dict[str, RecipientPart]]]
                ) -> Iterator[NotificationShard]:
        """Derive one recipient shard (only the named users with ``users``)."""
        from feedline.rebuild.notifications import derive_parts

        started = time.monotonic()
        shard, shares = element
        parts: dict[str, RecipientPart] = {}
        for share in shares:
            for user, part in share.items():
                parts.setdefault(user, RecipientPart()).merge(part)
        users = self.options.users
        image = derive_parts(parts, None if users is None else users & set(parts))
        derived = NotificationShard(shard, image.groups, image.recipients,
                                    time.monotonic() - started)
        self.groups.inc(derived.group_count)
        yield derived


class DeriveNotifications(beam.PTransform):
    """Key shards in, recipients' final groups out. Pure.

    In: ``(key shard, batches of raw records)`` (``GroupByKeyShard(Job.NOTIFICATIONS)``).
    Out: ``NotificationShard``, one per recipient shard that has recipients.
    """

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__()
        self.options = options

    def expand(self, shards: Any) -> Any:
        """Run the post keys, regroup by recipient, run the recipients."""
        return (
            shards
            | "DeriveKeyShard" >> beam.ParDo(DeriveKeyShard(self.options))
            | "GroupByRecipientShard" >> beam.GroupByKey()
            | "DeriveRecipientShard" >> beam.ParDo(DeriveRecipientShard(self.options))
        )


class WriteNotifications(StoreSink):
    """Sink: replace each recipient's notification groups (CQL, then Redis)."""

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__(options)
        self.recipients = beam.metrics.Metrics.counter("write", "notification_recipients")
        self.rows = beam.metrics.Metrics.counter("write", "notification_groups")

    def process(self, derived: NotificationShard) -> Iterator[int]:
        """Write one shard; yields how many recipients were replaced."""
        started = time.monotonic()
        self.writer.write_notifications(derived.groups, derived.recipients)
        self.recipients.inc(len(derived.recipients))
        self.rows.inc(derived.group_count)
        took = derived.derive_s + time.monotonic() - started
        say(f"notifications shard {derived.shard}: {len(derived.recipients):,} recipients, "
            f"{derived.group_count:,} groups written, {took:.1f} s")
        yield len(derived.recipients)


class CompareNotifications(StoreSink):
    """Dry-run sink: count the recipients whose stored notifications differ; write nothing."""

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__(options)
        self.drifted = beam.metrics.Metrics.counter("dry_run", "recipients_that_would_change")

    def process(self, derived: NotificationShard) -> Iterator[int]:
        """Compare one shard; yields how many recipients would change."""
        from feedline.rebuild.drift import (
            notification_problems,
            read_cql_notifications,
            read_redis_notifications,
        )

        users = sorted(derived.recipients)
        cql = read_cql_notifications(self.writer.session, users)
        cached = read_redis_notifications(self.writer.redis, self.writer.keys, users)
        changed = 0
        for user in users:
            problems = notification_problems(derived.groups.get(user, {}), cql[user],
                                             cached[user])
            if problems:
                changed += 1
                if changed <= 20:
                    say(f"would change notifications of {user}: " + "; ".join(problems))
        say(f"notifications shard {derived.shard}: {changed:,} recipient(s) would change")
        self.drifted.inc(changed)
        yield changed


def build(read: Any, options: RebuildOptions) -> None:
    """The graph from the parts read: derive per recipient, write (or compare) it."""
    derived = (
        read
        | "GroupByKeyShard" >> GroupByKeyShard(Job.NOTIFICATIONS, options.shards)
        | "DeriveNotifications" >> DeriveNotifications(options)
    )
    if options.dry_run:
        written = derived | "CompareNotifications" >> beam.ParDo(CompareNotifications(options))
    else:
        written = derived | "WriteNotifications" >> beam.ParDo(WriteNotifications(options))
    # Progress steps (besides each part read): each recipient shard derived and written.
    _ = written | "RecipientShardsWritten" >> CountSteps(options.progress_file)


JOB = RebuildJob(name="notifications", description=__doc__,
                 roles=("uploads", "follows", "engagements"), build=build, steps_per_shard=1)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the gate, run the pipeline; returns the exit code."""
    return run_job(JOB, argv)


if __name__ == "__main__":
    with settings_errors_exit("rebuild_notifications"):
        sys.exit(run())
