"""Fixtures for the API's route tests on the real stack, and the app's own health checks.

Each test gets its own keyspace, Redis key prefix and topics; the app is built with
``create_app(settings)`` pointing at them and driven in-process. Read tests seed the stores
with the same rules and writer the streaming jobs use (``RulesEngine`` + ``FeedWriter``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from starlette.testclient import TestClient

from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import RulesConfig
from feedline.settings import (
    ApiSettings,
    CqlSettings,
    FeedSettings,
    KafkaSettings,
    RedisSettings,
    ServingSettings,
    StackSettings,
)
from feedline.stores.feed_writer import FeedWriter
from schemas.event_contracts import Event, new_event
from serving.auth import issue_token
from serving.main import create_app
from tests.support.fixtures import cache_url
from tests.support.waiting import CONTENT_READ_BUDGET_S

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

FEED = FeedSettings(timeline_cap=8, celebrity_threshold=3, follow_merge_limit=50)
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def api_settings(stack: StackSettings, keyspace: str, redis_keys: Any,
                 topic_factory: Any) -> ServingSettings:
    """Settings of an app on this test's keyspace, key prefix and topics."""
    _client, keys = redis_keys
    kafka = KafkaSettings(bootstrap_servers=stack.kafka.bootstrap_servers,
                          uploads_topic=topic_factory(), follows_topic=topic_factory(),
                          engagements_topic=topic_factory(), media_topic=topic_factory(),
                          partitions=1)
    return ServingSettings(
        environment="test", kafka=kafka,
        cql=CqlSettings(**{**stack.cql.model_dump(), "keyspace": keyspace}),
        redis=RedisSettings(url=cache_url(stack, keys), key_prefix=keys.prefix,
                            cluster=keys.cluster, read_budget_s=CONTENT_READ_BUDGET_S),
        storage=stack.storage, feed=FEED,
        api=ApiSettings(rate_limit_per_minute=100_000, celebrity_cache_s=0,
                        kafka_max_block_ms=3000, kafka_delivery_timeout_ms=5000,
                        gc_freeze=False),
    )


@pytest.fixture
def client(api_settings: ServingSettings) -> Iterator[TestClient]:
    """The app, in-process."""
    with TestClient(create_app(api_settings)) as test_client:
        yield test_client


def auth(settings: ServingSettings, user_id: str) -> dict[str, str]:
    """Headers of a request made by ``user_id``."""
    return {"Authorization": f"Bearer {issue_token(settings.api.jwt_secret, user_id, ttl_s=600)}"}


def described_media(post_id: str) -> dict[str, Any]:
    """A post_created media entry with what the media worker found (dimensions, renditions)."""
    base = f"gs://feedline-media/renditions/m-{post_id}/1"
    return {"media_id": f"m-{post_id}", "content_type": "image/jpeg", "uri": f"{base}/w1080.jpg",
            "width": 1600, "height": 1200, "placeholder": "#336699",
            "renditions": [{"uri": f"{base}/w{w}.jpg", "width": w, "height": w * 3 // 4,
                            "content_type": "image/jpeg"} for w in (1080, 320)]}


@dataclass
class Seeder:
    """Applies events to the stores exactly as the streaming jobs would."""

    writer: FeedWriter
    engine: RulesEngine
    live: dict[str, tuple[int, str]] = field(default_factory=dict)  # post -> (ms, author)
    tick: int = 0

    def at(self, seconds: float | None = None) -> datetime:
        """A distinct event time (or the one given)."""
        if seconds is None:
            self.tick += 1
            seconds = self.tick
        return T0 + timedelta(seconds=seconds)

    def apply(self, event: Event) -> Event:
        self.writer.write(self.engine.apply(event))
        return event

    def follow(self, follower: str, followee: str) -> None:
        self.apply(new_event("follow", follower_id=follower, followee_id=followee,
                             event_time=self.at()))

    def unfollow(self, follower: str, followee: str) -> None:
        self.apply(new_event("unfollow", follower_id=follower, followee_id=followee,
                             event_time=self.at()))

    def post(self, author: str, post_id: str, *, seconds: float | None = None,
             caption: str = "", described: bool = False) -> int:
        """A post of one photo; ``described``: with the metadata the API puts in the event."""
        when = self.at(seconds)
        media = described_media(post_id) if described else {
            "media_id": f"m-{post_id}", "content_type": "image/jpeg",
            "uri": f"gs://feedline-media/media/m-{post_id}"}
        event = self.apply(new_event(
            "post_created", author_id=author, post_id=post_id, caption=caption or post_id,
            event_time=when, media=[media]))
        self.live[post_id] = (event.event_time_ms, author)
        return event.event_time_ms

    def delete(self, author: str, post_id: str) -> None:
        self.apply(new_event("post_deleted", author_id=author, post_id=post_id,
                             event_time=self.at()))
        self.live.pop(post_id, None)

    def like(self, user: str, post_id: str) -> None:
        self.apply(new_event("like", user_id=user, post_id=post_id,
                             post_author_id=self.live[post_id][1], event_time=self.at()))

    def comment(self, user: str, post_id: str, comment_id: str) -> None:
        self.apply(new_event("comment", user_id=user, post_id=post_id, comment_id=comment_id,
                             text="nice", event_time=self.at()))

    def newest_first(self, authors: set[str]) -> list[str]:
        """Live posts of ``authors`` in feed order."""
        posts = [(ms, pid.encode(), pid) for pid, (ms, a) in self.live.items() if a in authors]
        return [pid for _ms, _b, pid in sorted(posts, reverse=True)]


@pytest.fixture
def seeder(cql_session: Any, redis_keys: Any) -> Seeder:
    """Writes rule effects into this test's keyspace and key prefix."""
    client, keys = redis_keys
    writer = FeedWriter(cql_session, client, keys, timeline_cap=FEED.timeline_cap)
    config = RulesConfig(celebrity_threshold=FEED.celebrity_threshold,
                         follow_merge_limit=FEED.follow_merge_limit,
                         timeline_cap=FEED.timeline_cap)
    return Seeder(writer, RulesEngine(config))


def consume(settings: ServingSettings, topic: str,
            count: int | None = None) -> list[tuple[bytes | None, dict[str, Any]]]:
    """The (key, event) pairs in partition 0 of ``topic``, up to its end offset now.

    The API answers 202 only after the acks=all acknowledgement, so what a test wrote is
    below the end offset: reading to it is exact on any machine (no idle timeout). With
    ``count``, exactly that many records must be there.
    """
    import json

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                             enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    end = consumer.end_offsets([partition])[partition]
    found = []
    try:
        while consumer.position(partition) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                found.extend((r.key, json.loads(r.value)) for r in records if r.offset < end)
    finally:
        consumer.close()
    assert count is None or len(found) == count, f"{len(found)} records in {topic}, not {count}"
    return found


def test_readyz_reports_every_dependency_up(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready",
                               "checks": {"redis": "ok", "kafka": "ok", "cql": "ok"}}


def test_readyz_names_the_one_dependency_down(api_settings: ServingSettings) -> None:
    broken = api_settings.model_copy(update={
        "redis": RedisSettings(url="redis://127.0.0.1:1/0", key_prefix="x")})
    with TestClient(create_app(broken)) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]
    assert response.json()["checks"]["cql"] == "ok"
