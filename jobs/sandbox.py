"""An isolated copy of the streaming pipeline on a running stack.

Its own topics, keyspace and Redis key prefix, both jobs deployable under a unique
suffix, everything removed by ``close``. The e2e tests and the benchmarks use it so they
never touch (or see) the stack's default data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from kafka import KafkaAdminClient

from feedline.settings import (
    CqlSettings,
    FeedSettings,
    FlinkSettings,
    RedisSettings,
    StackSettings,
    StreamingSettings,
)
from feedline.stores.cluster_writes import cache_client, cache_keys, delete_keys
from feedline.stores.cql import connect, drop_keyspace, migrate
from jobs import flink_rest, keeper
from jobs.deploy import deploy
from jobs.localstack.kafka import ensure_topics
from jobs.specs import JOBS
from schemas.redis_keys import RedisKeys


@dataclass
class Sandbox:
    """Handles on one isolated pipeline."""

    stack: StackSettings
    streaming: StreamingSettings
    suffix: str
    session: Any
    redis: redis.Redis
    keys: RedisKeys
    close: Callable[[], None]
    job_ids: dict[str, str] = field(default_factory=dict)

    def deploy(self, name: str, from_savepoint: str | None = None, *,
               wait_running_s: float = 900, keep: bool = False,
               parallelism: int | None = None) -> str:
        """Start one job of this sandbox; returns its Flink job id.

        Waits up to ``wait_running_s`` for its tasks to run: a hang guard, long enough for a
        loaded machine restoring a savepoint (one took more than 180 s with the CPU busy).
        ``parallelism`` overrides the sandbox's (a rescale: with ``from_savepoint``).
        """
        streaming = self.streaming
        if parallelism is not None:
            flink = streaming.flink.model_copy(update={"parallelism": parallelism})
            streaming = streaming.model_copy(update={"flink": flink})
        self.job_ids[name] = deploy(self.stack, streaming, name, suffix=self.suffix,
                                    from_savepoint=from_savepoint, wait_running_s=wait_running_s,
                                    keep=keep)
        return self.job_ids[name]

    def deploy_all(self, names: Sequence[str],
                   from_savepoints: Mapping[str, str] | None = None, *,
                   wait_running_s: float = 900, keep: bool = False,
                   parallelism: int | None = None) -> dict[str, str]:
        """Start several jobs of this sandbox side by side; their Flink job ids by name.

        Each `flink run` client is a JVM and a Python process, and the cluster takes the
        submissions in parallel, so jobs start sooner than with ``deploy`` one by one.

        ``from_savepoints`` gives the savepoint a job restores, by name. If one job fails to
        start, the others may run: ``close`` cancels them with the rest.
        """
        points = from_savepoints or {}
        with ThreadPoolExecutor(max_workers=max(1, len(names)),
                                thread_name_prefix="deploy") as pool:
            started = {name: pool.submit(self.deploy, name, points.get(name),
                                         wait_running_s=wait_running_s, keep=keep,
                                         parallelism=parallelism)
                       for name in names}
        return {name: future.result() for name, future in started.items()}

    def assert_jobs_alive(self) -> None:
        """Raise when a deployed job has ended (it should run until cancelled)."""
        for name, job_id in self.job_ids.items():
            state = flink_rest.job_state(self.stack.flink.rest_url, job_id)
            if state in flink_rest.TERMINAL:
                raise RuntimeError(f"{name} job {job_id} is {state}")


def open_sandbox(
    stack: StackSettings, feed: FeedSettings, flink: FlinkSettings | None = None,
    *, partitions: int = 2, cache: RedisSettings | None = None,
) -> Sandbox:
    """Create the isolated topics, keyspace and prefix; ``Sandbox.close`` removes them.

    ``cache``: the Redis the sandbox's jobs write to and its ``redis`` client reads, by its
    ``url`` and ``cluster`` (None: the stack's cache). A Redis Cluster's keys take the
    cluster layout.
    """
    cache = cache or stack.redis
    suffix = f"-{uuid.uuid4().hex[:8]}"
    tag = suffix[1:]
    kafka = stack.kafka.model_copy(update={  # the stack's brokers and credentials
        "uploads_topic": f"uploads_{tag}", "follows_topic": f"follows_{tag}",
        "engagements_topic": f"engagements_{tag}", "partitions": partitions})
    topics = {t: kafka.partitions for t in kafka.event_topics}
    topics.update({kafka.dlq_topic(t): 1 for t in kafka.event_topics})
    ensure_topics(kafka.bootstrap_servers, topics)
    keyspace = f"sandbox_{tag}"
    migrate(stack.cql, keyspace=keyspace)
    cql = CqlSettings(**{**stack.cql.model_dump(), "keyspace": keyspace})
    prefix = f"sb{tag}"
    sandbox_cache = RedisSettings(url=cache.url, cluster=cache.cluster, key_prefix=prefix)
    streaming = StreamingSettings(
        kafka=kafka, cql=cql, redis=sandbox_cache,
        storage=stack.storage, feed=feed, flink=flink or stack.flink,
    )
    cluster, session = connect(cql, keyspace=keyspace)
    client = cache_client(sandbox_cache, decode_responses=True)

    def close() -> None:
        for name in JOBS:
            keeper.forget(stack, JOBS[name].job_name(suffix))
            for job in flink_rest.running(stack.flink.rest_url, JOBS[name].job_name(suffix)):
                flink_rest.cancel(stack.flink.rest_url, job.job_id)
        cluster.shutdown()
        drop_keyspace(stack.cql, keyspace)
        delete_keys(client, f"{prefix}:*")
        client.close()
        admin = KafkaAdminClient(**kafka.client_options())
        try:
            admin.delete_topics(list(topics))
        finally:
            admin.close()

    return Sandbox(stack, streaming, suffix, session, client, cache_keys(sandbox_cache),
                   close)
