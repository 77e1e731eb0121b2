"""Verify users' derived data against the archive (`feedctl verify`, `jobs.verifier`).

`check` recomputes the users' home timelines, followed celebrities, user counters and
notification groups from the event archive with the rules, and compares them with the CQL
store and Redis (`feedline.rebuild.drift`).

**Live** (``live=True``), for a stack that keeps taking events while it is checked: the
events the archive and the stores may disagree on are the *tail* — every record at or past
the oldest offset some consumer of the event topics (the archiver, each streaming job) has
not committed yet. The order makes it exact: (1) those offsets are read, (2) then the
archive, so it holds everything before them, and every job has applied it; (3) the stores
are read; (4) then the tail up to the topics' end offsets *after* the store read, so any
event whose effect the stores show is either before (1) or in the tail. Users the tail can
have changed (`feedline.rebuild.tail`) are skipped, the others are checked. Live checks
the whole archive (no window).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from feedline.settings import BatchSettings, KafkaSettings

#: How long reading the tail (the records past the consumers' commits) may take.
TAIL_READ_S = 60.0


@dataclass
class UserCheck:
    """One user's comparison."""

    user: str
    problems: list[str]
    timeline_entries: int
    notification_groups: int | None
    """None when notifications were not checked."""

    @property
    def drift(self) -> bool:
        """Whether a store disagreed with the recomputation."""
        return bool(self.problems)


@dataclass
class Report:
    """What one verify found."""

    gate: str
    """``passed``, ``skipped`` or ``failed`` (then nothing was checked)."""
    users: list[UserCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Live: users the tail may have changed, not checked."""
    tail_records: int | None = None
    """Live: records in the tail; None when not live."""

    @property
    def checked(self) -> int:
        """Users compared."""
        return len(self.users)

    @property
    def drifted(self) -> list[str]:
        """Users with drift."""
        return [row.user for row in self.users if row.drift]

    def as_json(self) -> dict[str, Any]:
        """`feedctl verify --json`'s document."""
        return {"checked": self.checked, "drifted": len(self.drifted), "gate": self.gate,
                "skipped": list(self.skipped), "tail_records": self.tail_records,
                "users": [{"user": r.user, "drift": r.drift, "problems": list(r.problems),
                           "timeline_entries": r.timeline_entries,
                           "notification_groups": r.notification_groups}
                          for r in self.users]}


class BadArchive(ValueError):
    """The archive holds a record the rules cannot read (the quality gate says which)."""


def tail_start(kafka: KafkaSettings) -> dict[tuple[str, int], int]:
    """Per event-topic partition, the oldest offset a consumer of it has not committed.

    A consumer that never committed on a partition counts from its start (0: the broker
    reads from its earliest record).
    """
    from kafka import KafkaAdminClient, KafkaConsumer

    from jobs.exporter import consumers
    from jobs.lag import partition_lags

    admin = KafkaAdminClient(**kafka.client_options(), client_id="feedline-verify")
    consumer = KafkaConsumer(**kafka.client_options(), client_id="feedline-verify")
    try:
        start: dict[tuple[str, int], int] = {}
        for group, topics in consumers(kafka).values():
            for row in partition_lags(admin, consumer, group, topics):
                where = (row.topic, row.partition)
                start[where] = min(start.get(where, row.end), row.committed or 0)
        return start
    finally:
        consumer.close()
        admin.close()


def read_tail(kafka: KafkaSettings, start: dict[tuple[str, int], int],
              timeout_s: float = TAIL_READ_S) -> list[dict[str, Any]]:
    """Every record from ``start`` to the partitions' end offsets now, decoded.

    Records that are not JSON objects are left out: the jobs dead-letter them, they change
    nothing.
    """
    from kafka import KafkaConsumer, TopicPartition

    partitions = [TopicPartition(topic, p) for topic, p in sorted(start)]
    consumer = KafkaConsumer(**kafka.client_options(), client_id="feedline-verify",
                             enable_auto_commit=False,
                             auto_offset_reset="earliest")  # a start past retention
    try:
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, start[(tp.topic, tp.partition)])
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Kafka tail was not read in {timeout_s:.0f} s")
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    if message.offset >= ends[TopicPartition(message.topic,
                                                             message.partition)]:
                        continue
                    try:
                        record = json.loads(message.value)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        records.append(record)
        return records
    finally:
        consumer.close()


def check(settings: BatchSettings, *, users: Sequence[str] | None = None,
          sample: int | None = None, seed: int | None = None,
          since: datetime | None = None, until: datetime | None = None,
          counters: bool = True, notifications: bool = True, gate: bool = True,
          live: bool = False, progress: Callable[[str], Any] = print) -> Report:
    """Check the named users or a random sample of ``sample`` (module docstring).

    Raises `BadArchive` on a record the rules cannot read, and the clients' own errors when
    a store does not answer.
    """
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
    from feedline.rebuild.tail import touched_users
    from feedline.rules.fanout import RulesConfig
    from feedline.stores.cluster_writes import cache_client, cache_keys
    from feedline.stores.cql import connect
    from pipelines.batch.job import quality_gate

    if live and (since or until):
        raise ValueError("a live verify checks the whole archive: no --since or --until")
    kafka = settings.kafka
    if not gate:
        progress("quality gate skipped")
    elif not quality_gate(settings, [kafka.uploads_topic, kafka.follows_topic]
                          + ([kafka.engagements_topic] if notifications else []),
                          since, until, quarantine=False):
        return Report(gate="failed")
    start = tail_start(kafka) if live else {}
    began = time.monotonic()
    expected_notes = NotificationImage()
    post_mentions: dict[str, set[str]] = {}
    try:
        index = load_index(settings, since, until, progress=progress)
        if users is not None:
            chosen = sorted(set(users))
        else:
            universe = sorted(index.users())
            chosen = sorted(random.Random(seed).sample(  # noqa: S311 (sampling)
                universe, min(sample or 0, len(universe))))
        image = index.recompute(chosen, RulesConfig.from_settings(settings.feed),
                                counters=counters)
        if notifications:
            expected_notes = recompute_notifications(
                settings, since, until, chosen, progress=progress,
                post_mentions=post_mentions if live else None)
    except (ValueError, KeyError) as err:  # InvalidEvent is a ValueError
        raise BadArchive(str(err)) from err
    progress(f"recomputed {len(chosen):,} user(s) from {index.parts:,} archive parts "
             f"in {time.monotonic() - began:.1f} s")
    cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
    client = cache_client(settings.redis, decode_responses=True)
    try:
        cql = read_cql_timelines(session, chosen)
        cql_counters = read_cql_user_counters(session, chosen) if counters else {}
        keys = cache_keys(settings.redis)
        cached, followed, cached_counters = read_redis_users(client, keys, chosen)
        cql_notes = read_cql_notifications(session, chosen) if notifications else {}
        cached_notes = read_redis_notifications(client, keys, chosen) if notifications else {}
    finally:
        cluster.shutdown()
        client.close()
    report = Report(gate="passed" if gate else "skipped")
    if live:
        tail = read_tail(kafka, start)
        touched = touched_users(tail, index, post_mentions)
        report.tail_records = len(tail)
        report.skipped = [user for user in chosen if user in touched]
        progress(f"live: {len(tail):,} record(s) past the consumers' commits; "
                 f"{len(report.skipped):,} of {len(chosen):,} user(s) skipped")
    else:
        touched = set()
    for user in chosen:
        if user in touched:
            continue
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
        report.users.append(UserCheck(
            user, list(drift.problems), len(cql[user]),
            len(cql_notes[user]) if notifications else None))
    return report
