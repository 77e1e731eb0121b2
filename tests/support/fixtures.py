"""Fixtures on the real local stack, started once per test run (or reused when up).

Each test works in its own uuid-named topic, keyspace, key prefix or object prefix and
removes it afterwards. The stack is stopped at the end only if this run started it,
unless FEEDLINE_KEEP_STACK=1.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from kafka import KafkaAdminClient

from feedline.settings import RedisSettings, StackSettings, get_stack_settings
from feedline.stores.cluster_writes import cache_client, delete_keys
from feedline.stores.cql import connect, drop_keyspace, migrate
from feedline.stores.object_store import storage_client
from jobs.localstack import stack as local_stack
from jobs.localstack.kafka import ensure_topics
from jobs.localstack.redis_cluster import cluster_urls, redis_cluster_services
from schemas.redis_keys import RedisKeys


def _healthy(settings: StackSettings) -> bool:
    # The archiver service is not needed by tests (each test archives its own topics).
    return all(s.healthy for s in local_stack.status(settings) if s.essential)


def stack_settled(settings: StackSettings, timeout_s: float = 300) -> bool:
    """Whether the stack is healthy, waiting while its supervisor restarts a service (a
    fault test before may have killed one; starting it here too would race the restart)."""
    deadline = time.monotonic() + timeout_s
    while not _healthy(settings):
        if local_stack.supervisor_status(settings).pid is None or time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def with_redis_cluster(settings: StackSettings) -> StackSettings:
    """``settings`` with the local Redis Cluster started too (``local.redis_cluster``)."""
    return settings.model_copy(update={"local": settings.local.model_copy(
        update={"redis_cluster": True})})


@pytest.fixture(scope="session")
def stack() -> Iterator[StackSettings]:
    """The healthy local stack's settings, its Redis Cluster running too.

    The cluster tests and the API e2e's cluster variant use the stack's Redis Cluster: a
    stack that was up without it gets it started here (`feedctl local down` stops it).
    """
    settings = get_stack_settings()
    already_up = stack_settled(settings)
    settings = with_redis_cluster(settings)
    if not already_up:
        local_stack.up(settings, say=lambda m: print(f"[stack] {m}", flush=True))
    else:
        local_stack.start_services(redis_cluster_services(settings), settings,
                                   say=lambda m: print(f"[stack] {m}", flush=True))
    yield settings
    if not already_up and os.environ.get("FEEDLINE_KEEP_STACK") != "1":
        local_stack.down(settings, say=lambda m: print(f"[stack] {m}", flush=True))


def unique(prefix: str) -> str:
    """A short uuid-based name usable as topic, keyspace, key or object prefix."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def topic_factory(stack: StackSettings) -> Iterator[object]:
    """Creates uuid-named topics; deletes them after the test."""
    created: list[str] = []

    def make(partitions: int = 1) -> str:
        name = unique("t")
        ensure_topics(stack.kafka.bootstrap_servers, {name: partitions})
        created.append(name)
        return name

    yield make
    if created:
        admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
        try:
            admin.delete_topics(created)
        finally:
            admin.close()


@pytest.fixture
def keyspace(stack: StackSettings) -> Iterator[str]:
    """A fresh uuid-named keyspace with every migration applied; dropped afterwards."""
    name = unique("ks")
    migrate(stack.cql, keyspace=name)
    yield name
    drop_keyspace(stack.cql, name)


@pytest.fixture
def cql_session(stack: StackSettings, keyspace: str) -> Iterator[object]:
    """A driver session on the test's keyspace."""
    cluster, session = connect(stack.cql, keyspace=keyspace)
    yield session
    cluster.shutdown()


def cluster_cache(stack: StackSettings) -> RedisSettings:
    """The stack's Redis Cluster as a cache setting (a sandbox's ``cache``)."""
    return RedisSettings(url=cluster_urls(stack)[0], cluster=True)


def cache_url(stack: StackSettings, keys: RedisKeys) -> str:
    """The URL of the stack's Redis for ``keys``: its cluster's for the cluster layout."""
    return cluster_urls(stack)[0] if keys.cluster else stack.redis.url


def keyed_cache(stack: StackSettings, *,
                cluster: bool) -> Iterator[tuple[redis.Redis, RedisKeys]]:
    """A client of the stack's single Redis or of its Redis Cluster, and a unique key
    prefix in that layout; the prefix's keys are deleted after."""
    keys = RedisKeys(prefix=unique("fltest"), cluster=cluster)
    client = cache_client(RedisSettings(url=cache_url(stack, keys), cluster=cluster),
                          decode_responses=True)
    yield client, keys
    delete_keys(client, keys.pattern())
    client.close()


@pytest.fixture
def redis_keys(stack: StackSettings) -> Iterator[tuple[redis.Redis, RedisKeys]]:
    """A Redis client and a unique key prefix; the prefix's keys are deleted after."""
    yield from keyed_cache(stack, cluster=False)


@pytest.fixture
def object_prefix(stack: StackSettings) -> Iterator[str]:
    """A unique object prefix in the archive bucket; its objects are deleted after."""
    prefix = f"{unique('test')}/"
    yield prefix
    bucket = storage_client(stack.storage).bucket(stack.storage.archive_bucket)
    for blob in bucket.list_blobs(prefix=prefix):
        blob.delete()
