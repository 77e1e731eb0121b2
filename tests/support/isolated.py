"""Stores of one test module: a new keyspace, Redis key prefix and archive root on the
running stack, removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from feedline.settings import (
    BatchSettings,
    CqlSettings,
    FeedSettings,
    KafkaSettings,
    RedisSettings,
    StackSettings,
)
from feedline.stores.cluster_writes import delete_keys
from feedline.stores.cql import connect, drop_keyspace, migrate
from feedline.stores.object_store import storage_client
from tests.support.fixtures import unique


def wipe_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    delete_keys(client, f"{prefix}:*")


@contextmanager
def isolated_stores(stack: StackSettings, name: str, feed: FeedSettings,
                    kafka: KafkaSettings | None = None,
                    ) -> Iterator[tuple[BatchSettings, Any, redis.Redis]]:
    """Settings on a new keyspace, Redis prefix and archive root (and ``kafka``'s topics,
    the stack's by default), with a CQL session and a Redis client on them; everything is
    removed afterwards (but the topics)."""
    tag = unique(name)
    keyspace, prefix, root = f"ks_{tag}", f"fl{tag}", f"test_{tag}/events"
    migrate(stack.cql, keyspace=keyspace)
    settings = BatchSettings(
        kafka=kafka or stack.kafka,
        cql=CqlSettings(**{**stack.cql.model_dump(), "keyspace": keyspace}),
        redis=RedisSettings(url=stack.redis.url, key_prefix=prefix),
        storage=stack.storage, feed=feed, archive_prefix=root)
    cluster, session = connect(settings.cql, keyspace=keyspace)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        yield settings, session, client
    finally:
        cluster.shutdown()
        wipe_prefix(client, prefix)
        client.close()
        drop_keyspace(stack.cql, keyspace)
        bucket = storage_client(stack.storage).bucket(stack.storage.archive_bucket)
        for blob in bucket.list_blobs(prefix=f"test_{tag}/"):
            blob.delete()
