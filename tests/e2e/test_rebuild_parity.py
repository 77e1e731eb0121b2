"""Parity: streaming and the batch rebuild give the same stores, exactly.

One event set (the feed workload plus the notification workload, with one recipient over
the notification cap) is produced to sandbox topics and processed by the three streaming
jobs until the stores equal the reference models (the feed jobs first, then the
notifications job from the topics' start: at most two task slots at a time); the archiver
drains the same topics into the archive. Then Redis and the timeline, counter and
notification tables are wiped and `feedctl rebuild all` runs: full dumps of every derived
table and every Redis key must equal the dumps taken before the wipe. Then every derived
table is wiped and rebuilt (`--all-tables`): equal again. At streaming parallelism 1 the
rebuilds run on Beam's Flink runner (`--runner flink`: the job server and the Beam venv of
`make beam-runner`), at parallelism 2 on the DirectRunner: each runner is held to one
streaming result, and the rebuild reads the same archive whatever the streaming parallelism
was. (Both runners after one streaming run cost this suite a rebuild more, on its slowest
test.)

The lateness bound is set (``feed.lateness_bound_s``, far longer than the workload's age),
and a few events dated years back are produced with the rest: both engines must refuse them
(``feedline.rules.retention.too_late`` on the records' broker append times), streaming as
``too_late`` dead letters, the rebuild by the arrivals the archiver kept. The references are
computed without them, so every store comparison is one of the bound's too.

The notifications job runs the code it is shipped with: set
``FEEDLINE_FLINK__SHIP_PYTHON_PATHS='["/path/to/checkout"]'`` to run a checkout's own.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from feedline.archive.archiver import Archiver
from feedline.rules.retention import TOO_LATE
from feedline.settings import BatchSettings, KafkaSettings, StackSettings
from feedline.stores.object_store import storage_client
from feedline.workload import EPOCH, ProducedEvent, Workload, user_id
from jobs import flink_rest
from jobs.dlq import inspect_dlq
from jobs.feedctl.rebuild import rebuild_all, rebuild_job
from jobs.load import produce
from jobs.sandbox import Sandbox, open_sandbox
from pipelines.batch import rebuild_timelines
from schemas.event_contracts import new_event
from schemas.redis_notifications import NOTIFICATION_CAP
from tests.e2e.test_streaming_e2e import FEED, SPEC
from tests.support.dump import TABLES, differences, dump_cql, dump_redis, wipe
from tests.support.notification_workload import (
    NotificationWorkload,
    cached_groups,
    expected_cache,
    python_errors,
    stored_groups,
)
from tests.support.notifications_reference import RefGroup, reference_notifications
from tests.support.pipeline import as_produced, events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.waiting import HANG_GUARD_S

#: 30 days longer than the workload's events are old (fixed times from
#: ``feedline.workload.EPOCH``), whenever the test runs; events dated 2020 are older still.
LATENESS_S = (datetime.now(UTC) - EPOCH).total_seconds() + 30 * 86_400
BOUNDED = FEED.model_copy(update={"lateness_bound_s": LATENESS_S})


def late_events(on_time: list[ProducedEvent]) -> list[ProducedEvent]:
    """Events dated 2020 that would change timelines, counters and notifications if
    applied: a follow, a post, a like and a comment on a workload post."""
    post = next(p.event for p in on_time if p.event.event_type == "post_created")
    at = datetime(2020, 1, 1, tzinfo=UTC)
    made = [
        new_event("follow", follower_id=user_id(0), followee_id=user_id(1), event_time=at),
        new_event("post_created", post_id="late-post", author_id=user_id(1),
                  caption="from 2020", media=post.media, event_time=at),
        new_event("like", user_id=user_id(2), post_id=post.post_id,
                  post_author_id=post.author_id, event_time=at),
        new_event("comment", user_id=user_id(3), post_id=post.post_id, comment_id="late-c",
                  text=f"hi @{user_id(4)}", post_author_id=post.author_id, event_time=at),
    ]
    return as_produced(made)


def dead_letters_too_late(kafka: KafkaSettings) -> dict[str, int]:
    """Per event topic, the ``too_late`` dead letters its jobs wrote."""
    return {topic: inspect_dlq(kafka, topic, samples=0).total[TOO_LATE]
            for topic in kafka.event_topics}


def cancel_all(sb: Sandbox) -> None:
    """Cancel the sandbox's running jobs and wait until they ended (their slots are free)."""
    url = sb.stack.flink.rest_url
    cancelled = [sb.job_ids.pop(name) for name in list(sb.job_ids)]
    for job_id in cancelled:
        flink_rest.cancel(url, job_id)
    deadline = time.monotonic() + HANG_GUARD_S
    while any(flink_rest.job_state(url, j) not in flink_rest.TERMINAL for j in cancelled):
        assert time.monotonic() < deadline, "cancelled jobs did not end"
        time.sleep(1)


def notifications_converged(sb: Sandbox, expected: dict[tuple[str, str], RefGroup]
                            ) -> list[str]:
    """Poll until CQL holds exactly the reference's groups and Redis the newest of each;
    what is wrong otherwise (a Python error of the job's own code stops the wait)."""
    deadline = time.monotonic() + HANG_GUARD_S
    cache = expected_cache(expected, NOTIFICATION_CAP)
    while True:
        stored, twice = stored_groups(sb.session)
        recipients = {r for r, _ in stored} | {r for r, _ in expected}
        listed = cached_groups(sb.redis, sb.keys, recipients)
        if stored == expected and not twice and all(
                listed[user] == cache.get(user, []) for user in recipients):
            return []
        errors = python_errors(sb.stack.flink.rest_url, sb.job_ids["notifications"])
        if errors or time.monotonic() > deadline:
            wrong = sorted(s for s in stored.keys() | expected.keys()
                           if stored.get(s) != expected.get(s))
            return [*errors, f"{len(wrong)} group(s) differ from the reference (e.g. "
                    f"{wrong[:2]}), {len(twice)} stored twice"]
        sb.assert_jobs_alive()
        time.sleep(2)


@pytest.mark.parametrize(("parallelism", "runner"), [
    pytest.param(1, "flink", id="1-flink"),
    pytest.param(2, "direct", id="2-direct"),
])
def test_rebuild_from_the_archive_equals_what_streaming_built(
        stack: StackSettings, parallelism: int, runner: str) -> None:
    sb = open_sandbox(stack, BOUNDED,
                      stack.flink.model_copy(update={"parallelism": parallelism}))
    root = f"parity_{uuid.uuid4().hex[:10]}"
    bucket = storage_client(stack.storage).bucket(stack.storage.archive_bucket)
    try:
        sb.deploy_all(("fanout", "counters"))
        noted = NotificationWorkload(seed=31, users=30, posts=90, tag="pn")
        # In event-time order, as the rebuild's leftover cells assume (``rebuild.image``).
        notes = sorted([*noted.follows(250), *noted.activity(),
                        *noted.heavy_recipient(NOTIFICATION_CAP + 20, 10)],
                       key=lambda p: (p.event.event_time_ms, p.event.event_id))
        on_time = [*Workload(SPEC).events(), *notes]
        late = late_events(on_time)
        produced = [*on_time, *late]
        kafka = sb.streaming.kafka
        produce(kafka, produced)
        # The references never see the late events: every engine must refuse them.
        expected = reference_for(events_of(on_time), FEED)
        assert expected.celebrities and expected.deleted_posts
        notified = reference_notifications(events_of(on_time), known_users_only=True)
        assert {g[0] for g in notified.values()} == {"like", "comment", "follow", "mention"}
        assert wait_converged(sb, expected) == []
        cancel_all(sb)
        sb.deploy("notifications")
        assert notifications_converged(sb, notified) == []
        cancel_all(sb)  # nothing may write behind the rebuild's back
        # Each late event was dead-lettered once, by the job that owns its topic's letters.
        topic_of = {role: topic for topic, role in kafka.topic_roles().items()}
        assert dead_letters_too_late(kafka) == {
            topic: sum(1 for p in late if topic_of[p.role] == topic)
            for topic in kafka.event_topics}
        archived = Archiver(kafka, stack.storage, topics=list(kafka.event_topics),
                            root=f"{root}/events", group_id=f"archiver-{root}").drain(HANG_GUARD_S)
        assert archived == len(produced)

        streaming_cql = dump_cql(sb.session)
        streaming_redis = dump_redis(sb.redis, sb.keys.prefix)
        assert streaming_cql["timelines"] and streaming_cql["user_counters"]
        assert len(streaming_cql["notification_groups"]) == len(notified)
        settings = BatchSettings(kafka=kafka, cql=sb.streaming.cql, redis=sb.streaming.redis,
                                 storage=stack.storage, feed=BOUNDED,
                                 archive_prefix=f"{root}/events")
        argv = ["--settings-json", settings.model_dump_json()]
        if runner == "flink":
            argv += ["--runner", "flink"]

        wipe(sb.session, sb.redis, sb.keys.prefix,
             ("timelines", "post_counters", "user_counters", "notification_groups"))
        assert rebuild_all(argv) == 0, runner
        assert differences(streaming_cql, dump_cql(sb.session)) == [], runner
        assert differences(streaming_redis, dump_redis(sb.redis, sb.keys.prefix)) == [], runner

        wipe(sb.session, sb.redis, sb.keys.prefix, tuple(TABLES))
        if runner == "flink":
            assert rebuild_job("timelines", [*argv, "--all-tables", "--no-gate"]) == 0
        else:
            assert rebuild_timelines.run([*argv, "--all-tables", "--no-gate"]) == 0
        assert rebuild_all([*argv, "--no-gate"]) == 0, runner
        assert differences(streaming_cql, dump_cql(sb.session)) == [], runner
        assert differences(streaming_redis, dump_redis(sb.redis, sb.keys.prefix)) == [], runner
    finally:
        sb.close()
        for blob in bucket.list_blobs(prefix=f"{root}/"):
            blob.delete()
