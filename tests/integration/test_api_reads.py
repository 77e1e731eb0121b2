"""Read routes on the real stores: home feed (cache hit, miss and repair, capped timelines,
celebrity outboxes, deleted and evicted posts, Redis down), profiles, posts, users."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis
from starlette.testclient import TestClient

from feedline.settings import RedisSettings, ServingSettings
from feedline.stores.feed_cache import FeedCache
from schemas.redis_keys import COMPLETE_MEMBER
from serving.main import create_app
from tests.integration import test_api_stack
from tests.integration.test_api_stack import FEED, T0, Seeder, auth, described_media

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

# The shared fixtures (pytest finds fixtures among module attributes).
api_settings = test_api_stack.api_settings
client = test_api_stack.client
seeder = test_api_stack.seeder

FOLLOWED = {"friend1", "friend2", "celeb"}


@pytest.fixture
def world(seeder: Seeder) -> Seeder:
    """me follows friend1, friend2 and celeb (4 followers > threshold 3: a celebrity);
    stranger is followed by nobody; posts with tied timestamps; two posts deleted;
    likes and comments on one post; one post's media with dimensions and renditions."""
    for fan in ("me", "fan1", "fan2", "fan3"):
        seeder.follow(fan, "celeb")
    seeder.follow("me", "friend1")
    seeder.follow("me", "friend2")
    for n in range(9):
        seeder.post("friend1", f"f1p{n}")
        seeder.post("friend2", f"f2p{n}", described=n == 4)
        seeder.post("celeb", f"cp{n}")
        seeder.post("stranger", f"sp{n}")
    for post_id in ("tieA", "tieB", "tieC"):  # the same millisecond: ordered by id
        seeder.post("friend2", post_id, seconds=500)
    seeder.post("celeb", "ctie", seconds=500)
    seeder.delete("friend1", "f1p7")
    seeder.delete("celeb", "cp8")
    for fan in ("fan1", "fan2", "me"):
        seeder.like(fan, "f2p3")
    seeder.comment("fan1", "f2p3", "c1")
    return seeder


def read_all(client: TestClient, settings: ServingSettings, path: str, limit: int,
             user: str = "me") -> tuple[list[dict[str, Any]], list[str]]:
    items: list[dict[str, Any]] = []
    degraded: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get(path, params=params, headers=auth(settings, user))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        degraded.append(response.headers.get("x-feed-degraded", ""))
        cursor = page["next_cursor"]
        if cursor is None:
            return items, degraded
    raise AssertionError("paging did not end")


def described_out(settings: ServingSettings, post_id: str) -> list[dict[str, Any]]:
    """The media of a post seeded ``described``, as the API serves it (URLs, not URIs)."""
    entry = described_media(post_id)
    host = f"{settings.storage.emulator_host}/"

    def url(uri: str) -> str:
        return host + uri.removeprefix("gs://")

    return [{"media_id": entry["media_id"], "content_type": "image/jpeg",
             "url": url(entry["uri"]), "width": 1600, "height": 1200, "duration_ms": None,
             "renditions": [{"url": url(r["uri"]), "width": r["width"], "height": r["height"],
                             "content_type": r["content_type"]} for r in entry["renditions"]],
             "placeholder": "#336699"}]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["post_id"] for item in items]


@pytest.mark.parametrize("limit", [1, 4, 25, 100])
def test_home_feed_pages_through_everything_newest_first(
        client: TestClient, api_settings: ServingSettings, world: Seeder, redis_keys: Any,
        limit: int) -> None:
    redis, keys = redis_keys
    expected = world.newest_first(FOLLOWED)
    assert len(expected) > FEED.timeline_cap * 2  # deeper than Redis keeps: CQL serves the tail
    assert redis.zcard(keys.timeline("me")) == FEED.timeline_cap
    assert not set(redis.zrange(keys.timeline("me"), 0, -1)) & {f"cp{n}" for n in range(9)}
    items, degraded = read_all(client, api_settings, "/v1/feed", limit)
    assert ids(items) == expected
    assert set(degraded) == {""}


def test_items_are_hydrated_with_counters_and_media(client: TestClient,
                                                    api_settings: ServingSettings,
                                                    world: Seeder) -> None:
    items, _ = read_all(client, api_settings, "/v1/feed", 100)
    liked = next(item for item in items if item["post_id"] == "f2p3")
    assert liked["likes"] == 3 and liked["comments"] == 1
    assert liked["author_id"] == "friend2" and liked["caption"] == "f2p3"
    assert liked["media"] == [{  # no metadata in its event (as a post_created v1 has none)
        "media_id": "m-f2p3", "content_type": "image/jpeg",
        "url": f"{api_settings.storage.emulator_host}/feedline-media/media/m-f2p3",
        "width": None, "height": None, "duration_ms": None, "renditions": [],
        "placeholder": None}]
    described = next(item for item in items if item["post_id"] == "f2p4")
    assert described["media"] == described_out(api_settings, "f2p4")
    assert liked["created_at"].endswith("Z") and "T12:" in liked["created_at"]
    assert {"f1p7", "cp8"}.isdisjoint(ids(items))  # deleted posts never shown


def test_a_miss_is_served_from_cql_and_repairs_the_timeline(
        client: TestClient, api_settings: ServingSettings, world: Seeder,
        redis_keys: Any) -> None:
    redis, keys = redis_keys
    cached = redis.zrevrange(keys.timeline("me"), 0, -1, withscores=True)
    redis.delete(keys.timeline("me"), keys.followed_celebrities("me"))
    items, degraded = read_all(client, api_settings, "/v1/feed", 5)
    assert ids(items) == world.newest_first(FOLLOWED)
    assert set(degraded) == {""}
    assert redis.zrevrange(keys.timeline("me"), 0, -1, withscores=True) == cached
    assert redis.smembers(keys.followed_celebrities("me")) == {"celeb", COMPLETE_MEMBER}


def test_evicted_outbox_and_post_hashes_are_read_from_cql(
        client: TestClient, api_settings: ServingSettings, world: Seeder,
        redis_keys: Any) -> None:
    redis, keys = redis_keys
    redis.delete(keys.outbox("celeb"), keys.post("f2p8"), keys.post("cp7"))
    items, _ = read_all(client, api_settings, "/v1/feed", 6)
    assert ids(items) == world.newest_first(FOLLOWED)
    assert redis.exists(keys.outbox("celeb"))  # rebuilt from user_posts
    assert not redis.exists(keys.post("f2p8"))  # hashes are never re-created by readers


def test_a_post_deleted_in_cql_but_still_listed_is_never_shown(
        client: TestClient, api_settings: ServingSettings, world: Seeder, redis_keys: Any,
        cql_session: Any) -> None:
    redis, keys = redis_keys
    # A retraction that reached the CQL store while the timeline entry is still cached.
    cql_session.execute("UPDATE posts SET deleted = true WHERE post_id = 'f2p8'")
    redis.delete(keys.post("f2p8"))
    assert redis.zscore(keys.timeline("me"), "f2p8") is not None
    items, _ = read_all(client, api_settings, "/v1/feed", 3)
    assert "f2p8" not in ids(items)
    assert ids(items) == [p for p in world.newest_first(FOLLOWED) if p != "f2p8"]


def test_pages_stay_consistent_while_posts_arrive(client: TestClient,
                                                  api_settings: ServingSettings,
                                                  world: Seeder) -> None:
    before = world.newest_first(FOLLOWED)
    headers = auth(api_settings, "me")
    first = client.get("/v1/feed", params={"limit": 5}, headers=headers).json()
    world.post("friend1", "brand-new", seconds=1000)  # newer than everything listed
    world.post("celeb", "celeb-new", seconds=1001)
    seen = ids(first["items"])
    cursor = first["next_cursor"]
    while cursor:
        page = client.get("/v1/feed", params={"limit": 5, "cursor": cursor},
                          headers=headers).json()
        seen += ids(page["items"])
        cursor = page["next_cursor"]
    assert seen == before  # no duplicates, no gaps
    fresh = client.get("/v1/feed", params={"limit": 2}, headers=headers).json()
    assert ids(fresh["items"]) == ["celeb-new", "brand-new"]


def test_unfollow_takes_posts_out_of_the_feed(client: TestClient,
                                              api_settings: ServingSettings,
                                              world: Seeder) -> None:
    world.unfollow("me", "friend1")
    world.unfollow("me", "celeb")
    items, _ = read_all(client, api_settings, "/v1/feed", 10)
    assert ids(items) == world.newest_first({"friend2"})


def test_redis_down_serves_the_same_feed_from_cql_marked_degraded(
        api_settings: ServingSettings, world: Seeder) -> None:
    down = api_settings.model_copy(update={
        "redis": RedisSettings(url="redis://127.0.0.1:1/0", key_prefix="unused")})
    with TestClient(create_app(down)) as degraded_client:
        items, flags = read_all(degraded_client, down, "/v1/feed", 7)
        assert ids(items) == world.newest_first(FOLLOWED)
        assert set(flags) == {"redis"}
        liked = next(item for item in items if item["post_id"] == "f2p3")
        assert liked["likes"] == 3  # counters from the CQL store
        described = next(item for item in items if item["post_id"] == "f2p4")
        assert described["media"] == described_out(down, "f2p4")  # media_ref read back
        post = degraded_client.get("/v1/posts/f2p3", headers=auth(down, "me"))
        assert post.status_code == 200 and post.headers["x-feed-degraded"] == "redis"


def test_empty_feed_and_a_user_following_only_a_celebrity(
        client: TestClient, api_settings: ServingSettings, world: Seeder) -> None:
    nobody = client.get("/v1/feed", headers=auth(api_settings, "nobody"))
    assert nobody.status_code == 200
    assert nobody.json() == {"items": [], "next_cursor": None}
    items, _ = read_all(client, api_settings, "/v1/feed", 4, user="fan3")
    assert ids(items) == world.newest_first({"celeb"})


def test_profile_pages(client: TestClient, api_settings: ServingSettings,
                       world: Seeder) -> None:
    items, _ = read_all(client, api_settings, "/v1/users/friend2/posts", 4)
    assert ids(items) == world.newest_first({"friend2"})
    items, _ = read_all(client, api_settings, "/v1/users/celeb/posts", 3)
    assert ids(items) == world.newest_first({"celeb"})
    empty = client.get("/v1/users/nobody/posts", headers=auth(api_settings, "me")).json()
    assert empty == {"items": [], "next_cursor": None}


def test_cursors_belong_to_one_listing(client: TestClient, api_settings: ServingSettings,
                                       world: Seeder) -> None:
    headers = auth(api_settings, "me")
    cursor = client.get("/v1/feed", params={"limit": 2}, headers=headers).json()["next_cursor"]
    wrong = client.get("/v1/users/friend1/posts", params={"cursor": cursor}, headers=headers)
    assert wrong.status_code == 400
    other_user = client.get("/v1/feed", params={"cursor": cursor},
                            headers=auth(api_settings, "fan1"))
    assert other_user.status_code == 400


def test_get_post_and_404_once_deleted(client: TestClient, api_settings: ServingSettings,
                                       world: Seeder) -> None:
    headers = auth(api_settings, "stranger")
    post = client.get("/v1/posts/f2p3", headers=headers)
    assert post.status_code == 200
    assert post.json()["likes"] == 3 and post.json()["comments"] == 1
    for gone in ("f1p7", "no-such-post"):
        response = client.get(f"/v1/posts/{gone}", headers=headers)
        assert response.status_code == 404
        assert response.json()["type"].endswith("/post-not-found")


def test_user_counters(client: TestClient, api_settings: ServingSettings, world: Seeder,
                       redis_keys: Any) -> None:
    redis, keys = redis_keys
    headers = auth(api_settings, "me")
    assert client.get("/v1/users/celeb", headers=headers).json() == {
        "user_id": "celeb", "followers": 4, "following": 0, "posts": 9}
    assert client.get("/v1/users/me", headers=headers).json() == {
        "user_id": "me", "followers": 0, "following": 3, "posts": 0}
    redis.delete(keys.user_counters("celeb"))  # evicted: read from the CQL store
    assert client.get("/v1/users/celeb", headers=headers).json()["followers"] == 4
    assert client.get("/v1/users/nobody", headers=headers).json() == {
        "user_id": "nobody", "followers": 0, "following": 0, "posts": 0}


def test_a_stale_listing_row_never_breaks_paging(
        api_settings: ServingSettings, world: Seeder, redis_keys: Any,
        cql_session: Any) -> None:
    """A timeline row left at another time than its post's (a post_created replayed with a
    different event time): CQL paging must end, without duplicates or the stale row."""
    redis, keys = redis_keys
    stale = T0 + timedelta(seconds=900)  # newer than everything, so it comes first
    cql_session.execute(
        "INSERT INTO timelines (user_id, created_at, post_id, author_id) VALUES (%s, %s, %s, %s)",
        ("me", stale, "f1p0", "friend1"))
    expected = world.newest_first(FOLLOWED)
    down = api_settings.model_copy(update={
        "redis": RedisSettings(url="redis://127.0.0.1:1/0", key_prefix="unused")})
    with TestClient(create_app(down)) as degraded_client:
        for limit in (1, 3):
            items, _ = read_all(degraded_client, down, "/v1/feed", limit)
            assert ids(items) == expected
    # The cache path: the stale position cached, the post's hash evicted (read from CQL):
    # the post shows once, at its own time (served from the CQL rows past the cap).
    redis.zadd(keys.timeline("me"), {"f1p0": int(stale.timestamp() * 1000)})
    redis.delete(keys.post("f1p0"))
    with TestClient(create_app(api_settings)) as cached_client:
        items, _ = read_all(cached_client, api_settings, "/v1/feed", 2)
    assert ids(items) == expected


def test_a_followed_celebrity_without_posts_is_not_an_outbox_miss(
        api_settings: ServingSettings, world: Seeder, redis_keys: Any) -> None:
    """A counters hash without a posts field means no posts (nothing to repair); a missing
    hash means unknown."""
    redis, keys = redis_keys
    redis.sadd(keys.followed_celebrities("me"), "quiet", COMPLETE_MEMBER)
    redis.hset(keys.user_counters("quiet"), "followers", 5)

    async def status() -> str:
        client = AsyncRedis.from_url(api_settings.redis.url, decode_responses=True)
        try:
            cache = FeedCache(client, keys, timeline_cap=FEED.timeline_cap)
            return (await cache.page("me", None, 5, fetch=8)).status
        finally:
            await client.aclose()

    assert asyncio.run(status()) == "more"
    redis.delete(keys.user_counters("quiet"))
    assert asyncio.run(status()) == "outbox_miss"


@pytest.mark.parametrize("left", [set(), {"celeb"}])
def test_an_incomplete_followed_celebrity_set_is_completed_from_cql(
        client: TestClient, api_settings: ServingSettings, world: Seeder, redis_keys: Any,
        left: set[str]) -> None:
    """The timeline stays cached while the set was evicted (writers keep timelines warm,
    nothing but reads touches the set), or a writer's single add re-created part of it:
    the celebrity's posts must still be merged, and the set is repaired and marked."""
    redis, keys = redis_keys
    redis.delete(keys.followed_celebrities("me"))
    if left:
        redis.sadd(keys.followed_celebrities("me"), *left)
    items, degraded = read_all(client, api_settings, "/v1/feed", 5)
    assert ids(items) == world.newest_first(FOLLOWED)
    assert set(degraded) == {""}
    assert redis.smembers(keys.followed_celebrities("me")) == {"celeb", COMPLETE_MEMBER} | left


@pytest.mark.parametrize("left", [set(), {"someone"}])
def test_a_lost_celebrities_set_is_completed_and_the_outbox_repaired(
        client: TestClient, api_settings: ServingSettings, world: Seeder, redis_keys: Any,
        left: set[str]) -> None:
    """Redis lost the celebrities set and the outbox (a restart), or a writer's add since
    re-created part of the set: the celebrity's posts are still merged, the set completed
    from CQL and the outbox cached again."""
    redis, keys = redis_keys
    redis.delete(keys.celebrities(), keys.outbox("celeb"))
    if left:
        redis.sadd(keys.celebrities(), *left)
    items, degraded = read_all(client, api_settings, "/v1/feed", 5)
    assert ids(items) == world.newest_first(FOLLOWED)
    assert set(degraded) == {""}
    assert redis.smembers(keys.celebrities()) == {"celeb"} | left
    assert redis.exists(keys.outbox("celeb"))


def test_an_outbox_redis_will_not_cache_is_read_from_cql(
        client: TestClient, api_settings: ServingSettings, world: Seeder,
        redis_keys: Any) -> None:
    """A writer removed the author from the cached celebrities set after the reader's CQL
    read (its version says so): no outbox is cached, and the feed comes from CQL, whole."""
    redis, keys = redis_keys
    redis.delete(keys.celebrities(), keys.outbox("celeb"))
    after_the_read = (time.time() + 3600) * 1_000_000
    redis.hset(keys.versions(keys.celebrities()), "celeb", int(after_the_read))
    items, _ = read_all(client, api_settings, "/v1/feed", 5)
    assert ids(items) == world.newest_first(FOLLOWED)
    assert not redis.exists(keys.outbox("celeb"))
    assert not redis.sismember(keys.celebrities(), "celeb")
