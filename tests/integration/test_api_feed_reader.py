"""The cache-first feed reader on the real Redis (its Lua page script), against a model.

Random worlds — friends' posts fanned out into a capped timeline, celebrities' posts in
capped outboxes, deleted posts, evicted timelines, outboxes and post hashes, tied
timestamps — are written to Redis the way the writer leaves them; the CQL side is an
in-memory store. Paging through the feed must give exactly the live posts of everyone
followed, newest first, without ever marking the page degraded.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from feedline.settings import StackSettings
from feedline.stores.feed_cache import FeedCache
from feedline.stores.feed_items import Position, PostView, newest_first
from feedline.stores.feed_reader import FeedReader
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys
from tests.support.fake_store import FakeStore
from tests.support.waiting import CONTENT_READ_BUDGET_S


def build_world(rng: random.Random, client: Any, keys: RedisKeys, cap: int) -> tuple[
        FakeStore, list[str]]:
    store = FakeStore()
    celebrities = [f"c{i}" for i in range(rng.randint(0, 3))]
    store.celebrity_ids = set(celebrities)
    store.following["me"] = {"f1", "f2", *celebrities}
    for n in range(rng.randint(0, 50)):
        author = rng.choice(["f1", "f2", *celebrities])
        post = Position(1_700_000_000_000 + rng.randint(0, 12), f"p{n:03d}")
        store.user_posts.setdefault(author, []).append(post)
        if author in ("f1", "f2"):
            store.timelines.setdefault("me", []).append(post)
        if rng.random() >= 0.15:  # else deleted: still listed, not live
            store.live[post.post_id] = PostView(post.post_id, author, "", (), post.created_ms)
    timeline = newest_first(store.timelines.get("me", []))[:cap]
    cached = bool(timeline) and rng.random() < 0.7
    if cached:
        client.zadd(keys.timeline("me"), {p.post_id: p.created_ms for p in timeline})
    # The set as a reader completed it, as the writer keeps it (unmarked), as a single
    # writer add left it after an eviction (partial), or evicted.
    shape = rng.choice(("complete", "unmarked", "partial", "evicted"))
    members = {"complete": [*celebrities, COMPLETE_MEMBER], "unmarked": celebrities,
               "partial": celebrities[:1], "evicted": []}[shape]
    if members:
        client.sadd(keys.followed_celebrities("me"), *members)
    for celebrity in celebrities:
        client.sadd(keys.celebrities(), celebrity)
        live = [p for p in newest_first(store.user_posts.get(celebrity, []))
                if p.post_id in store.live]
        if live[:cap] and rng.random() < 0.7:
            client.zadd(keys.outbox(celebrity), {p.post_id: p.created_ms for p in live[:cap]})
        if rng.random() < 0.8:
            client.hset(keys.user_counters(celebrity), "posts", len(live))
    for post_id, view in store.live.items():
        if rng.random() < 0.85:  # else evicted
            client.hset(keys.post(post_id), mapping={
                "post_id": post_id, "author_id": view.author_id, "caption": "",
                "media": "[]", "created_ms": view.created_ms})
    everyone = ["f1", "f2", *celebrities]
    expected = [p.post_id for p in newest_first(
        p for a in everyone for p in store.user_posts.get(a, [])) if p.post_id in store.live]
    return store, expected


async def page_through(reader: FeedReader, user: str, limit: int) -> list[str]:
    """Every post id of ``user``'s feed, page after page, each page served from the cache."""
    seen: list[str] = []
    after = None
    for _ in range(200):
        page = await reader.home(user, after, limit)
        assert page.degraded is None and len(page.items) <= limit
        seen += [item.post_id for item in page.items]
        after = page.next
        if after is None:
            return seen
    raise AssertionError("paging did not end")


@settings(max_examples=80, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), cap=st.sampled_from([2, 5, 50]), limit=st.integers(1, 6))
def test_cache_first_feed_equals_the_model(stack: StackSettings,
                                           redis_keys: tuple[Any, RedisKeys], seed: int,
                                           cap: int, limit: int) -> None:
    client, base = redis_keys
    keys = RedisKeys(f"{base.prefix}-{seed}-{cap}-{limit}")
    store, expected = build_world(random.Random(seed), client, keys, cap)

    async def read() -> list[str]:
        redis = Redis.from_url(stack.redis.url, decode_responses=True)
        # This test is about the page's content, not the read budget's fallback.
        reader = FeedReader(FeedCache(redis, keys, timeline_cap=cap), store,  # type: ignore[arg-type]
                            timeline_cap=cap, redis_budget_s=CONTENT_READ_BUDGET_S)
        try:
            return await page_through(reader, "me", limit)
        finally:
            await redis.aclose()

    try:
        assert asyncio.run(read()) == expected
    finally:
        stale = list(client.scan_iter(match=keys.pattern()))
        if stale:
            client.delete(*stale)


@pytest.mark.parametrize("cap", [3])
def test_repair_writes_the_newest_entries_only_where_nothing_is_cached(
        stack: StackSettings, redis_keys: tuple[Any, RedisKeys], cap: int) -> None:
    client, keys = redis_keys
    entries = [Position(1_700_000_000_000 + n, f"p{n}") for n in range(6)][::-1]

    async def run() -> tuple[bool, bool]:
        redis = Redis.from_url(stack.redis.url, decode_responses=True)
        cache = FeedCache(redis, keys, timeline_cap=cap)
        try:
            first = await cache.repair("me", entries, ["c1"])
            second = await cache.repair("me", entries[3:], ["c2"])
        finally:
            await redis.aclose()
        return first, second

    assert asyncio.run(run()) == (True, False)
    assert client.zrevrange(keys.timeline("me"), 0, -1) == ["p5", "p4", "p3"]
    # The set is completed (a union) and marked; later repairs leave a complete set alone.
    assert client.smembers(keys.followed_celebrities("me")) == {"c1", COMPLETE_MEMBER}
