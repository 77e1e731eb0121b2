"""``redis.cluster`` picks the cluster key layout, client and page (no server needed)."""

from __future__ import annotations

import asyncio

from feedline.settings import ServingSettings
from feedline.stores.cluster_cache import ClusterFeedCache, ReachableCluster, feed_cache
from feedline.stores.feed_cache import FeedCache
from feedline.stores.feed_items import Position, PostView
from feedline.stores.feed_reader import REDIS_DOWN, FeedReader
from schemas.redis_keys import RedisKeys
from serving.resources import Resources
from tests.support.fake_store import FakeStore
from tests.support.unreachable import UNREACHABLE


def _settings(cluster: bool) -> ServingSettings:
    return UNREACHABLE.model_copy(update={"redis": UNREACHABLE.redis.model_copy(
        update={"cluster": cluster})})


def test_single_node_stays_the_default() -> None:
    resources = Resources(UNREACHABLE)
    try:
        assert not resources.keys.cluster
        assert type(resources.cache) is FeedCache
    finally:
        asyncio.run(resources.close())


def test_the_cluster_setting_builds_the_cluster_cache_without_io() -> None:
    resources = Resources(_settings(cluster=True))
    try:
        assert resources.keys.cluster
        assert isinstance(resources.cache, ClusterFeedCache)
        assert isinstance(resources.redis, ReachableCluster)
        assert resources.keys.timeline("u1").endswith(":{u1}")
    finally:
        asyncio.run(resources.close())


def test_feed_cache_follows_the_key_layout() -> None:
    client = ReachableCluster.from_url("redis://127.0.0.1:1/0")
    assert isinstance(feed_cache(client, RedisKeys("t", cluster=True), timeline_cap=5),
                      ClusterFeedCache)


def test_an_unreachable_cluster_is_redis_down_and_the_feed_comes_from_the_store() -> None:
    store = FakeStore()
    post = Position(1_700_000_000_000, "p1")
    store.following["me"] = {"f1"}
    store.timelines["me"] = [post]
    store.live["p1"] = PostView("p1", "f1", "", (), post.created_ms)

    async def read() -> tuple[Exception | None, list[str], str | None]:
        client = ReachableCluster.from_url("redis://127.0.0.1:1/0", decode_responses=True,
                                           socket_timeout=0.5, socket_connect_timeout=0.5)
        cache = ClusterFeedCache(client, RedisKeys("t", cluster=True), timeline_cap=5)
        raised: Exception | None = None
        try:
            await cache.page("me", None, 3, fetch=6)
        except Exception as error:
            raised = error
        reader = FeedReader(cache, store, timeline_cap=5)  # type: ignore[arg-type]
        page = await reader.home("me", None, 3)
        await client.aclose()
        return raised, [p.post_id for p in page.items], page.degraded

    raised, items, degraded = asyncio.run(read())
    assert isinstance(raised, REDIS_DOWN)
    assert items == ["p1"] and degraded == "redis"
