"""Pruning the fan-out state under a lateness bound, on the real stack: exact after it.

With ``feed.lateness_bound_s`` = L, the fan-out job's watermark is the Kafka records'
append time, and an unfollow at event time t leaves a tombstone that goes once the
watermark passes t + L (``operators.FanoutOperator``): no event older than the horizon
W - L can be admitted any more, so nothing it could tell apart is lost. A deleted post
goes too once it is outside every follow-merge window still to be asked for. Here
followers follow an author, half unfollow; the author posts seven times and deletes its
oldest post (more than ``follow_merge_limit`` posts back) and its newest (within the
window a new follow gets: kept). The tombstones and the old post are pruned (the job's
``edges_pruned`` and ``posts_pruned`` metrics count them: the watermark is pushed on by
records sent to every partition of both topics), then some followers follow again, the
pruned post is deleted again and the author posts once more: the stores must equal the
reference model of every event, computed with nothing pruned.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feedline.settings import FeedSettings, KafkaSettings, StackSettings
from feedline.workload import ProducedEvent
from jobs import flink_rest
from jobs.load import produce, producer
from jobs.sandbox import open_sandbox
from schemas.event_contracts import Event, encode_event, new_event
from tests.support.pipeline import as_produced, events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.waiting import eventually

#: The lateness bound: an event may arrive up to 30 s after its own time.
LATENESS_S = 30
FEED = FeedSettings(celebrity_threshold=50, follow_merge_limit=4, timeline_cap=12,
                    lateness_bound_s=LATENESS_S)
MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]
AUTHOR = "ret-author"
FOLLOWERS = [f"ret-f{i}" for i in range(8)]
UNFOLLOWED = FOLLOWERS[:4]


def _post(post_id: str, at: datetime, author: str = AUTHOR) -> Event:
    return new_event("post_created", post_id=post_id, author_id=author, caption=post_id,
                     media=MEDIA, event_time=at)


def _ticks(kafka: KafkaSettings, serial: int) -> list[ProducedEvent]:
    """One event, dated now, to every partition of the uploads and follows topics (the
    watermark is the smallest of the partitions' newest append times)."""
    client = producer(kafka)
    sent = []
    try:
        for topic in (kafka.uploads_topic, kafka.follows_topic):
            for partition in sorted(client.partitions_for(topic)):
                name = f"tick{serial}-{partition}"
                event = (_post(name, datetime.now(UTC), author=f"ret-tick-{partition}")
                         if topic == kafka.uploads_topic else
                         new_event("follow", follower_id=f"ret-tock-{name}",
                                   followee_id=f"ret-tick-{partition}"))
                client.send(topic, key=event.key, value=encode_event(event),
                            partition=partition)
                sent.append(event)
        client.flush()
    finally:
        client.close()
    return as_produced(sent)


def test_tombstones_pruned_behind_the_watermark_change_nothing(stack: StackSettings) -> None:
    sb = open_sandbox(stack, FEED)
    rest = stack.flink.rest_url
    kafka = sb.streaming.kafka
    try:
        fanout = sb.deploy_all(("fanout", "counters"))["fanout"]
        # Dated just before they are sent (after the deploys): well inside the bound.
        start = datetime.now(UTC) - timedelta(seconds=5)
        at = [start + timedelta(milliseconds=10 * i) for i in range(100)]
        first = as_produced([
            *[new_event("follow", follower_id=f, followee_id=AUTHOR, event_time=at[i])
              for i, f in enumerate(FOLLOWERS)],
            _post("ret-p1", at[10]),
            *[_post(f"ret-q{i}", at[11 + i]) for i in range(5)],
            *[new_event("unfollow", follower_id=f, followee_id=AUTHOR, event_time=at[20 + i])
              for i, f in enumerate(UNFOLLOWED)],
            _post("ret-p2", at[30]),
            *[new_event("post_deleted", post_id=p, author_id=AUTHOR, event_time=at[40 + i])
              for i, p in enumerate(["ret-p1", "ret-q4"])],
        ])
        produce(kafka, first)
        produced = list(first)

        def pruned() -> bool:
            # Records arriving later than t + L push the watermark past every tombstone's
            # pruning time; until then the ticks only add events (all in the reference).
            produced.extend(_ticks(kafka, len(produced)))
            edges = flink_rest.operator_metric(rest, fanout, "fan-out-state", "edges_pruned")
            posts = flink_rest.operator_metric(rest, fanout, "fan-out-state", "posts_pruned")
            assert edges <= len(UNFOLLOWED) and posts <= 1, (edges, posts)
            return edges == len(UNFOLLOWED) and posts == 1

        eventually(pruned, "the unfollow tombstones and the old deleted post pruned",
                   timeout_s=20 * LATENESS_S, every_s=5.0)
        now = datetime.now(UTC)
        again = as_produced([
            *[new_event("follow", follower_id=f, followee_id=AUTHOR, event_time=now)
              for f in UNFOLLOWED[:2]],
            new_event("unfollow", follower_id=UNFOLLOWED[2], followee_id=AUTHOR,
                      event_time=now),
            new_event("post_deleted", post_id="ret-p1", author_id=AUTHOR, event_time=now),
            _post("ret-p3", now + timedelta(milliseconds=5)),
        ])
        produce(kafka, again)
        produced += again

        expected = reference_for(events_of(produced), FEED)
        assert {f for f in FOLLOWERS if "ret-p3" in expected.timelines.get(f, {})} == {
            *FOLLOWERS[4:], *UNFOLLOWED[:2]}
        # Followed again: the window of the 4 newest posts, the deleted ret-q4 among them.
        assert set(expected.timelines[UNFOLLOWED[0]]) == {"ret-q2", "ret-q3", "ret-p2", "ret-p3"}
        assert wait_converged(sb, expected) == []
    finally:
        sb.close()
