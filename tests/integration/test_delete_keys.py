"""``delete_keys`` (the sandboxes', benchmarks' and tests' clean-up) on the stack's single
Redis and on its Redis Cluster: every key of the pattern goes, in batches, on every node;
no other key does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from feedline.settings import StackSettings
from feedline.stores.cluster_writes import delete_keys, is_cluster
from schemas.redis_keys import RedisKeys
from tests.support.fixtures import keyed_cache


@pytest.fixture(params=["redis", "redis-cluster"])
def cache(stack: StackSettings,
          request: pytest.FixtureRequest) -> Iterator[tuple[redis.Redis, RedisKeys]]:
    yield from keyed_cache(stack, cluster=request.param == "redis-cluster")


def test_every_key_of_the_pattern_goes_and_no_other(
        cache: tuple[redis.Redis, RedisKeys]) -> None:
    client, keys = cache
    users = [f"u{n}" for n in range(250)]
    for user in users:  # 750 keys, 3 kinds, in many slots on a cluster
        client.zadd(keys.timeline(user), {"p1": 1})
        client.hset(keys.user_counters(user), "posts", 1)
        client.sadd(keys.followed_celebrities(user), "c1")
    kept = RedisKeys(f"{keys.prefix}kept", cluster=keys.cluster)  # shares the text, not ":"
    client.zadd(kept.timeline("u0"), {"p1": 1})
    try:
        if is_cluster(client):
            assert len({key_slot(k.encode()) for k in (keys.timeline(u) for u in users)}) > 100
        assert delete_keys(client, keys.pattern(), batch=64) == 750
        assert list(client.scan_iter(match=keys.pattern(), count=1000)) == []
        assert client.exists(kept.timeline("u0")) == 1
        assert delete_keys(client, keys.pattern()) == 0
    finally:
        delete_keys(client, kept.pattern())
