"""The feed read path on a 3-master Redis Cluster equals the single-node script's.

The same worlds (``test_api_feed_reader.build_world``: fanned-out timelines, celebrities'
outboxes, deletions, evictions, tied timestamps) are written to a single Redis in the
default layout and to a Redis Cluster in the cluster layout (``RedisKeys(cluster=True)``);
``ClusterFeedCache.page`` must answer exactly what ``FeedCache.page`` (``lua/page.lua``)
answers, page after page, and the cache-first reader must page through the same feed,
repairs included. Servers (``tests/support/redis_cluster.py``): the local stack's Redis
Cluster (``jobs.localstack.redis_cluster``, on ``local.redis_cluster_port``) and a single
Redis of the fixture's own.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
import redis
import redis.cluster
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from feedline.stores.cluster_cache import ClusterFeedCache, cluster_client
from feedline.stores.feed_cache import CachePage, FeedCache, PageStatus
from feedline.stores.feed_items import Position, newest_first
from feedline.stores.feed_reader import FeedReader
from feedline.stores.request_guards import RateLimited, RateLimiter
from jobs.localstack.redis_cluster import MASTERS
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys
from tests.integration import test_api_feed_reader as worlds
from tests.support.fake_store import FakeStore
from tests.support.redis_cluster import prefix, servers
from tests.support.waiting import CONTENT_READ_BUDGET_S

__all__ = ["prefix", "servers"]  # the fixtures


def _both(servers: tuple[str, str], prefix: str) -> tuple[Any, RedisKeys, Any, RedisKeys]:
    cluster_url, single_url = servers
    return (redis.Redis.from_url(single_url, decode_responses=True), RedisKeys(prefix),
            redis.cluster.RedisCluster.from_url(cluster_url, decode_responses=True),
            RedisKeys(prefix, cluster=True))


async def _caches(servers: tuple[str, str], single_keys: RedisKeys, cluster_keys: RedisKeys,
                  cap: int) -> tuple[FeedCache, ClusterFeedCache]:
    cluster_url, single_url = servers
    return (FeedCache(Redis.from_url(single_url, decode_responses=True), single_keys,
                      timeline_cap=cap),
            ClusterFeedCache(cluster_client(cluster_url, decode_responses=True,
                                            socket_timeout=5), cluster_keys, timeline_cap=cap))


async def _close(*caches: FeedCache) -> None:
    for cache in caches:
        await cache.redis.aclose()


def _cache_reader_sets(client: Any, keys: RedisKeys, store: FakeStore, cap: int) -> None:
    """The reader's timeline and a marked celebrity set cached (the pages then walk)."""
    timeline = newest_first(store.timelines.get("me", []))[:cap]
    if timeline:
        client.zadd(keys.timeline("me"), {p.post_id: p.created_ms for p in timeline})
    client.sadd(keys.followed_celebrities("me"), *store.celebrity_ids, COMPLETE_MEMBER)


async def _pages(cache: FeedCache, limit: int, lenient: bool,
                 slack: int = 3) -> list[CachePage]:
    """Every page a caller would read by following ``last`` (as FeedReader does)."""
    pages, after = [], None
    for _ in range(100):
        page = await cache.page("me", after, limit, fetch=limit + slack,
                                lenient_outboxes=lenient)
        pages.append(page)
        if page.status not in (PageStatus.MORE, PageStatus.CONTINUE, PageStatus.DEEP) \
                or page.last is None:
            return pages
        after = page.last
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("seed", range(60))
def test_cluster_pages_equal_the_single_node_script(servers: tuple[str, str], prefix: str,
                                                    seed: int) -> None:
    """Half the worlds as built (misses of every kind), half with the reader's sets cached."""
    single, single_keys, cluster, cluster_keys = _both(servers, prefix)
    rng = random.Random(seed)
    cap, limit, slack = rng.choice([2, 5, 50]), rng.randint(1, 6), rng.choice([0, 1, 3])
    for client, keys in ((single, single_keys), (cluster, cluster_keys)):
        store, _ = worlds.build_world(random.Random(seed), client, keys, cap)
        if seed % 2:
            _cache_reader_sets(client, keys, store, cap)

    async def read() -> None:
        plain, sharded = await _caches(servers, single_keys, cluster_keys, cap)
        try:
            for lenient in (False, True):
                expected = await _pages(plain, limit, lenient, slack)
                assert await _pages(sharded, limit, lenient, slack) == expected
        finally:
            await _close(plain, sharded)

    try:
        asyncio.run(read())
    finally:
        single.close()
        cluster.close()


@pytest.mark.parametrize("seed", range(15))
def test_cache_first_reader_on_the_cluster_equals_the_model(servers: tuple[str, str],
                                                            prefix: str, seed: int) -> None:
    """Misses, set completion and outbox repairs run on the cluster (the repair steps)."""
    _, _, cluster, keys = _both(servers, prefix)
    rng = random.Random(seed)
    cap, limit = rng.choice([2, 5, 50]), rng.randint(1, 6)
    store, expected = worlds.build_world(random.Random(seed), cluster, keys, cap)

    async def read() -> list[str]:
        client = cluster_client(servers[0], decode_responses=True, socket_timeout=5)
        # A test of what the pages hold: a slow sitting must not degrade them (the budget's
        # fallback is tested in test_redis_budget).
        reader = FeedReader(ClusterFeedCache(client, keys, timeline_cap=cap),
                            store, timeline_cap=cap,  # type: ignore[arg-type]
                            redis_budget_s=CONTENT_READ_BUDGET_S)
        try:
            return await worlds.page_through(reader, "me", limit)
        finally:
            await client.aclose()

    try:
        assert asyncio.run(read()) == expected
        # Whatever was missing is cached now: the timeline and a marked celebrity set.
        if store.timelines.get("me"):
            assert cluster.exists(keys.timeline("me"))
            assert cluster.sismember(keys.followed_celebrities("me"), COMPLETE_MEMBER)
    finally:
        cluster.close()


def test_ids_compare_byte_wise_and_ties_page_alike(servers: tuple[str, str],
                                                   prefix: str) -> None:
    single, single_keys, cluster, cluster_keys = _both(servers, prefix)
    ids = ["a", "Z", "é", "z", "ä", "a0", "~", "😀"]
    for client, keys in ((single, single_keys), (cluster, cluster_keys)):
        client.zadd(keys.timeline("me"), {i: 1_700_000_000_000 for i in ids[:5]})
        client.sadd(keys.followed_celebrities("me"), "c1", COMPLETE_MEMBER)
        client.zadd(keys.outbox("c1"), {i: 1_700_000_000_000 for i in ids[5:]})
        client.hset(keys.user_counters("c1"), "posts", 3)
        for i in ids:
            client.hset(keys.post(i), mapping={"post_id": i, "author_id": "x", "caption": i,
                                               "media": "[]", "created_ms": 1_700_000_000_000})
            client.hset(keys.post_counters(i), mapping={"likes": len(i), "comments": 1})

    async def read() -> list[CachePage]:
        plain, sharded = await _caches(servers, single_keys, cluster_keys, 50)
        try:
            for limit in (1, 2, 3, 8):
                pages = await _pages(plain, limit, False)
                assert await _pages(sharded, limit, False) == pages
            return pages
        finally:
            await _close(plain, sharded)

    try:
        pages = asyncio.run(read())
        order = [e.post_id for p in pages for e in p.entries]
        assert order == sorted(ids, key=lambda i: i.encode(), reverse=True)
    finally:
        single.close()
        cluster.close()


def test_rate_limit_counts_on_the_readers_slot_as_on_one_redis(servers: tuple[str, str],
                                                               prefix: str) -> None:
    single, single_keys, cluster, cluster_keys = _both(servers, prefix)
    for client, keys in ((single, single_keys), (cluster, cluster_keys)):
        client.zadd(keys.timeline("me"), {"p1": 1})
        client.sadd(keys.followed_celebrities("me"), COMPLETE_MEMBER)

    async def read() -> list[tuple[str, Any]]:
        plain, sharded = await _caches(servers, single_keys, cluster_keys, 50)
        outcomes: list[tuple[str, Any]] = []
        try:
            for cache, keys in ((plain, single_keys), (sharded, cluster_keys)):
                window = RateLimiter(cache.redis, keys, per_minute=3).window("me", 1_000_030.0)
                for _ in range(5):
                    try:
                        page = await cache.page("me", None, 5, fetch=8, rate=window)
                        outcomes.append((cache.keys.prefix, page.status))
                    except RateLimited as limited:
                        outcomes.append((cache.keys.prefix, limited.decision))
        finally:
            await _close(plain, sharded)
        return outcomes

    try:
        outcomes = asyncio.run(read())
        plain, sharded = outcomes[:5], outcomes[5:]
        assert [o for _, o in plain] == [o for _, o in sharded]
        assert [o for _, o in plain][:3] == [PageStatus.END] * 3
        assert all(isinstance(o, type(plain[3][1])) and not o.allowed for _, o in plain[3:])
        assert cluster.get(cluster_keys.rate_limit("me", 16_667)) == "3"
    finally:
        single.close()
        cluster.close()


def test_a_page_costs_one_round_trip_per_shard_per_step(servers: tuple[str, str],
                                                        prefix: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, cluster, keys = _both(servers, prefix)
    celebrities = [f"c{i}" for i in range(12)]
    cluster.zadd(keys.timeline("me"), {f"t{i}": 2_000 + i for i in range(20)})
    cluster.sadd(keys.followed_celebrities("me"), *celebrities, COMPLETE_MEMBER)
    for n, celebrity in enumerate(celebrities):
        cluster.zadd(keys.outbox(celebrity), {f"{celebrity}-{i}": 1_000 + 30 * i + n
                                              for i in range(5)})
        cluster.hset(keys.user_counters(celebrity), "posts", 5)
    for post_id in [f"t{i}" for i in range(20)] + [f"{c}-{i}" for c in celebrities
                                                   for i in range(5)]:
        cluster.hset(keys.post(post_id), mapping={"post_id": post_id, "author_id": "a",
                                                  "caption": "", "media": "[]",
                                                  "created_ms": 1})
    calls: Counter[str] = Counter()
    trips: list[tuple[str, str]] = []
    pipeline, command = ClusterNode.execute_pipeline, ClusterNode.execute_command

    async def counted_pipeline(node: ClusterNode, commands: Any) -> Any:
        trips.append(("pipeline", node.name))
        return await pipeline(node, commands)

    async def counted_command(node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        trips.append((str(args[0]), node.name))
        return await command(node, *args, **kwargs)

    async def read() -> CachePage:
        client = RedisCluster.from_url(servers[0], decode_responses=True)
        cache = ClusterFeedCache(client, keys, timeline_cap=50)
        try:
            await cache.page("me", None, 10, fetch=13)  # connects, loads the scripts
            monkeypatch.setattr(ClusterNode, "execute_pipeline", counted_pipeline)
            monkeypatch.setattr(ClusterNode, "execute_command", counted_command)
            return await cache.page("me", Position(1_100, "c0-3"), 10, fetch=13)
        finally:
            monkeypatch.undo()
            await client.aclose()

    try:
        page = asyncio.run(read())
    finally:
        cluster.close()
    assert page.status is PageStatus.MORE and len(page.entries) == 10
    calls.update(name for _, name in trips)
    # The reader's script, then at most one pipeline per node for the outboxes and one for
    # hydration: three round trips to a node at most, whatever the number of celebrities.
    assert trips[0][0] == "EVALSHA"
    assert max(calls.values()) <= 3 and len(calls) <= MASTERS
    assert len(trips) <= 1 + 2 * MASTERS


def test_post_lookups_counters_and_ping_on_the_cluster(servers: tuple[str, str],
                                                       prefix: str) -> None:
    single, single_keys, cluster, cluster_keys = _both(servers, prefix)
    posts = [f"p{i}" for i in range(30)]
    for client, keys in ((single, single_keys), (cluster, cluster_keys)):
        for n, post_id in enumerate(posts[:25]):
            client.hset(keys.post(post_id), mapping={
                "post_id": post_id, "author_id": f"a{n % 4}", "caption": f"c{n}",
                "media": "[]", "created_ms": 1_700_000_000_000 + n})
            if n % 3:
                client.hset(keys.post_counters(post_id), mapping={"likes": n, "comments": 1})
        client.hset(keys.user_counters("a1"), mapping={"followers": 7, "posts": 3})

    async def read() -> None:
        plain, sharded = await _caches(servers, single_keys, cluster_keys, 50)
        try:
            views = await sharded.post_views(posts)
            assert views == await plain.post_views(posts) and len(views) == 25
            for user in ("a1", "nobody"):
                assert await sharded.user_counts(user) == await plain.user_counts(user)
            assert await sharded.ping()
        finally:
            await _close(plain, sharded)

    try:
        asyncio.run(read())
    finally:
        single.close()
        cluster.close()
