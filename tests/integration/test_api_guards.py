"""The request guards on the real stack: rate limits with Redis down, per-client limits of
unauthenticated traffic, and the guards kept in their own Redis (``redis.guards_url``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from starlette.testclient import TestClient

from feedline.settings import RedisSettings, ServingSettings, StackSettings
from feedline.stores.request_guards import IdempotencyRecords, IdempotentRecord
from serving.main import create_app
from tests.integration import test_api_stack
from tests.integration.test_api_stack import Seeder, auth

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

api_settings = test_api_stack.api_settings
client = test_api_stack.client
seeder = test_api_stack.seeder


def limited(settings: ServingSettings, **api: Any) -> ServingSettings:
    return settings.model_copy(update={"api": settings.api.model_copy(update=api)})


@pytest.mark.usefixtures("held_rate_clock")
def test_with_redis_down_feeds_come_from_cql_and_stay_rate_limited(
        api_settings: ServingSettings, seeder: Seeder) -> None:
    seeder.follow("alice", "bob")
    seeder.post("bob", "bp1")
    down = limited(api_settings, rate_limit_per_minute=3).model_copy(update={
        "redis": RedisSettings(url="redis://127.0.0.1:1/0", key_prefix="unused")})
    with TestClient(create_app(down)) as c:
        pages = [c.get("/v1/feed", headers=auth(down, "alice")) for _ in range(4)]
        assert [p.status_code for p in pages] == [200, 200, 200, 429]
        assert all(p.headers["x-feed-degraded"] == "redis" for p in pages[:3])
        assert [item["post_id"] for item in pages[0].json()["items"]] == ["bp1"]
        assert int(pages[3].headers["retry-after"]) >= 1
        # One budget for every route, counted in this process while Redis is down.
        assert c.get("/v1/users/bob", headers=auth(down, "alice")).status_code == 429
        assert c.get("/v1/feed", headers=auth(down, "carol")).status_code == 200


@pytest.mark.usefixtures("held_rate_clock")
def test_bad_token_floods_and_readyz_are_limited_per_client_in_redis(
        api_settings: ServingSettings, redis_keys: Any) -> None:
    client, keys = redis_keys
    settings = limited(api_settings, anonymous_rate_limit_per_minute=3)
    bad = {"Authorization": "Bearer not-a-jwt"}
    with TestClient(create_app(settings), client=("192.0.2.7", 1000)) as c:
        assert [c.get("/v1/feed", headers=bad).status_code for _ in range(4)] == [
            401, 401, 401, 429]
        assert c.get("/readyz").status_code == 429  # the same budget
        assert c.get("/v1/feed", headers=auth(settings, "alice")).status_code == 200
    # Counted in Redis (shared by every worker), under the client's address.
    assert list(client.scan_iter(match=f"{keys.prefix}:rl:ip:192.0.2.7:*"))
    # A second app (another worker) sees the same count.
    with TestClient(create_app(settings), client=("192.0.2.7", 1001)) as other:
        assert other.get("/v1/feed", headers=bad).status_code == 429


@pytest.fixture
def guards_redis(stack: StackSettings, redis_keys: Any) -> Iterator[tuple[str, redis.Redis]]:
    """Database 1 of the stack's Redis standing in for a separate guards Redis."""
    _client, keys = redis_keys
    url = stack.redis.url.rsplit("/", 1)[0] + "/1"
    client = redis.Redis.from_url(url, decode_responses=True)
    yield url, client
    stale = list(client.scan_iter(match=keys.pattern(), count=1000))
    if stale:
        client.delete(*stale)
    client.close()


@pytest.mark.usefixtures("held_rate_clock")
def test_guards_live_in_their_own_redis_when_configured(
        api_settings: ServingSettings, seeder: Seeder, redis_keys: Any,
        guards_redis: tuple[str, redis.Redis]) -> None:
    cache, keys = redis_keys
    url, guards = guards_redis
    seeder.follow("alice", "bob")
    seeder.post("bob", "bp1")
    settings = limited(api_settings, rate_limit_per_minute=3).model_copy(update={
        "redis": api_settings.redis.model_copy(update={"guards_url": url})})
    with TestClient(create_app(settings)) as c:
        pages = [c.get("/v1/feed", headers=auth(settings, "alice")) for _ in range(4)]
        assert [p.status_code for p in pages] == [200, 200, 200, 429]
        assert "x-feed-degraded" not in pages[0].headers  # the page still came from the cache
        write = c.put("/v1/users/carol/follow",
                      headers={**auth(settings, "bob"), "Idempotency-Key": "follow-carol"})
        assert write.status_code == 202
    assert list(guards.scan_iter(match=f"{keys.prefix}:rl:alice:*"))
    assert guards.get(keys.idempotency("bob", "follow-carol"))
    assert not list(cache.scan_iter(match=f"{keys.prefix}:rl:*"))
    assert cache.get(keys.idempotency("bob", "follow-carol")) is None


# --- Idempotency-Key records: compact once acknowledged, bounded per user -----------------


def test_an_acknowledged_record_keeps_only_the_fingerprint_and_the_response(
        client: TestClient, api_settings: ServingSettings, seeder: Seeder,
        redis_keys: Any) -> None:
    cache, keys = redis_keys
    seeder.post("bob", "bp1")
    text = "\U0001F600" * 2200  # the longest comment, of characters JSON may escape
    headers = {**auth(api_settings, "alice"), "Idempotency-Key": "long-comment"}
    first = client.post("/v1/posts/bp1/comments", headers=headers, json={"text": text})
    assert first.status_code == 202
    stored = cache.get(keys.idempotency("alice", "long-comment"))
    assert len(stored.encode()) < 1024  # the event (tens of KB here) is gone
    assert json.loads(stored) == {"fingerprint": json.loads(stored)["fingerprint"],
                                  "response": first.json(), "acknowledged": True}
    again = client.post("/v1/posts/bp1/comments", headers=headers, json={"text": text})
    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers["idempotent-replayed"] == "true"


def test_each_user_keeps_at_most_max_keys_records(api_settings: ServingSettings,
                                                  redis_keys: Any) -> None:
    cache, keys = redis_keys
    settings = limited(api_settings, idempotency_max_keys_per_user=2)
    with TestClient(create_app(settings)) as c:
        def follow(user: str, followee: str, key: str) -> Any:
            return c.put(f"/v1/users/{followee}/follow",
                         headers={**auth(settings, user), "Idempotency-Key": key})

        first = [follow("alice", f"f{n}", f"k{n}") for n in range(3)]
        assert [r.status_code for r in first] == [202, 202, 202]
        assert [cache.exists(keys.idempotency("alice", f"k{n}")) for n in range(3)] == [0, 1, 1]
        index = keys.idempotency("alice", "#index")
        assert sorted(cache.zrange(index, 0, -1)) == [keys.idempotency("alice", "k1"),
                                                      keys.idempotency("alice", "k2")]
        assert 0 < cache.pttl(index) <= settings.api.idempotency_ttl_s * 1000
        # The newest keys still replay; the dropped one is a new request again.
        assert follow("alice", "f2", "k2").json() == first[2].json()
        renewed = follow("alice", "f0", "k0")
        assert renewed.status_code == 202 and "idempotent-replayed" not in renewed.headers
        assert renewed.json()["event_id"] != first[0].json()["event_id"]
        # Another user's records are not touched.
        assert follow("bob", "f9", "k0").status_code == 202
        assert cache.exists(keys.idempotency("alice", "k2"))


def test_the_index_forgets_records_that_expired_by_themselves(stack: StackSettings,
                                                                redis_keys: Any) -> None:
    cache, keys = redis_keys

    async def scenario() -> None:
        client = AsyncRedis.from_url(stack.redis.url, decode_responses=True)
        records = IdempotencyRecords(client, keys, ttl_s=60, max_keys=2)
        record = IdempotentRecord("f", "{}", {"event_id": "e"})
        now = 1_000_000.0
        for n in range(2):
            await records.claim("carol", f"k{n}", record, now_s=now)
        # Two minutes on, both have expired: a third key is recorded without dropping any.
        await records.claim("carol", "k2", record, now_s=now + 120)
        await client.aclose()

    asyncio.run(scenario())
    assert cache.zrange(keys.idempotency("carol", "#index"), 0, -1) == [
        keys.idempotency("carol", "k2")]
    assert cache.exists(keys.idempotency("carol", "k0"))  # not dropped: only forgotten
