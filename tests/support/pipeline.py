"""An isolated copy of the streaming pipeline on the real stack, for e2e tests.

Own topics, keyspace and Redis prefix; both jobs deployed under a unique suffix;
everything removed afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from kafka import KafkaAdminClient

from feedline.settings import (
    CqlSettings,
    FeedSettings,
    KafkaSettings,
    RedisSettings,
    StackSettings,
    StreamingSettings,
)
from feedline.stores.cql import connect, drop_keyspace, migrate
from jobs import flink_rest
from jobs.deploy import deploy
from jobs.localstack.kafka import ensure_topics
from jobs.specs import JOBS
from schemas.redis_keys import RedisKeys
from tests.support.compare import mismatches
from tests.support.reference import Expected
from tests.support.stores import read_state


@dataclass
class Pipeline:
    """Handles on one isolated pipeline."""

    stack: StackSettings
    streaming: StreamingSettings
    suffix: str
    session: Any
    redis: redis.Redis
    keys: RedisKeys
    job_ids: dict[str, str] = field(default_factory=dict)

    def deploy(self, name: str, from_savepoint: str | None = None) -> str:
        """Start one job of this pipeline."""
        self.job_ids[name] = deploy(self.stack, self.streaming, name, suffix=self.suffix,
                                    from_savepoint=from_savepoint)
        return self.job_ids[name]

    def wait_converged(self, expected: Expected, timeout_s: float = 240) -> list[str]:
        """Poll the stores until they equal the reference; returns what still differs."""
        deadline = time.monotonic() + timeout_s
        cap = self.streaming.feed.timeline_cap
        while True:
            diff = mismatches(read_state(self.session, self.redis, self.keys), expected, cap)
            if not diff or time.monotonic() > deadline:
                return diff
            self.assert_jobs_alive()
            time.sleep(2)

    def assert_jobs_alive(self) -> None:
        """Fail fast when a job died instead of waiting out the timeout."""
        for name, job_id in self.job_ids.items():
            state = flink_rest.job_state(self.stack.flink.rest_url, job_id)
            assert state not in ("FAILED", "CANCELED", "FINISHED"), f"{name} job is {state}"


def open_pipeline(stack: StackSettings, feed: FeedSettings) -> tuple[Pipeline, Callable[[], None]]:
    """Create the isolated resources; returns the pipeline and its clean-up."""
    suffix = f"-{uuid.uuid4().hex[:8]}"
    tag = suffix[1:]
    kafka = KafkaSettings(
        bootstrap_servers=stack.kafka.bootstrap_servers,
        uploads_topic=f"uploads_{tag}",
        follows_topic=f"follows_{tag}",
        engagements_topic=f"engagements_{tag}",
        partitions=2,
    )
    topics = {t: kafka.partitions for t in kafka.event_topics}
    topics.update({kafka.dlq_topic(t): 1 for t in kafka.event_topics})
    ensure_topics(kafka.bootstrap_servers, topics)
    keyspace = f"e2e_{tag}"
    migrate(stack.cql, keyspace=keyspace)
    cql = CqlSettings(**{**stack.cql.model_dump(), "keyspace": keyspace})
    prefix = f"e2e{tag}"
    streaming = StreamingSettings(
        kafka=kafka, cql=cql, redis=RedisSettings(url=stack.redis.url, key_prefix=prefix),
        storage=stack.storage, feed=feed, flink=stack.flink,
    )
    cluster, session = connect(cql, keyspace=keyspace)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    pipeline = Pipeline(stack, streaming, suffix, session, client, RedisKeys(prefix))

    def close() -> None:
        for name in JOBS:
            for job in flink_rest.running(stack.flink.rest_url, JOBS[name].job_name(suffix)):
                flink_rest.cancel(stack.flink.rest_url, job.job_id)
        cluster.shutdown()
        drop_keyspace(stack.cql, keyspace)
        stale = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if stale:
            client.delete(*stale)
        client.close()
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        try:
            admin.delete_topics(list(topics))
        finally:
            admin.close()

    return pipeline, close


def events_of(produced: Iterable[Any]) -> list[Any]:
    """The event objects of produced items."""
    return [p.event for p in produced]
