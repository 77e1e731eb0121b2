"""GET /v1/notifications, /unread_count and POST /read on the real Redis and Cassandra.

The groups are written straight into the stores through the declared layout
(``tests/support/notification_store.py``), as the notifications writer does; every read
goes through the API. Each test has its own keyspace and key prefix.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from feedline.settings import RedisSettings, ServingSettings
from serving.main import create_app
from tests.integration import test_api_stack
from tests.integration.test_api_stack import auth
from tests.support.notification_store import NotificationStore, StoredGroup

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

api_settings = test_api_stack.api_settings
client = test_api_stack.client

#: Newest first (latest_ms DESC, group_key DESC); two pairs share a time.
GROUPS = [StoredGroup(9_000, "mention:p9", 1, ("dan",)),
          StoredGroup(8_000, "like:p8", 3, ("cid", "bob", "ann")),
          StoredGroup(8_000, "comment:p8", 2, ("bob", "ann")),
          StoredGroup(7_000, "follow:2026-11-30", 2, ("eve", "fay")),
          StoredGroup(6_000, "like:p6", 1, ("ann",)),
          StoredGroup(6_000, "like:p5", 1, ("bob",))]


@pytest.fixture
def store(cql_session: Any, redis_keys: Any) -> NotificationStore:
    redis_client, keys = redis_keys
    return NotificationStore(cql_session, redis_client, keys)


def walk(client: TestClient, headers: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """Every page, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/v1/notifications", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("cached", [True, False], ids=["redis", "cql-then-repaired"])
def test_groups_newest_first_paged_with_items_as_documented(
        client: TestClient, api_settings: ServingSettings, store: NotificationStore,
        redis_keys: Any, cached: bool) -> None:
    store.add("bob", GROUPS, cache=cached)
    store.mark("bob", 7_000)
    headers = auth(api_settings, "bob")
    for limit in (1, 2, 4, 100):
        items = walk(client, headers, limit)
        assert [i["group_key"] for i in items] == [g.group_key for g in GROUPS]
    first = walk(client, headers, 100)
    assert first[1] == {"group_key": "like:p8", "type": "like", "post_id": "p8", "count": 3,
                        "actors": ["cid", "bob", "ann"],
                        "latest_at": "1970-01-01T00:00:08.000Z", "unread": True}
    assert first[3]["post_id"] is None and first[3]["type"] == "follow"
    assert [i["unread"] for i in first] == [True, True, True, False, False, False]
    redis_client, keys = redis_keys
    assert redis_client.zcard(keys.notifications("bob")) == len(GROUPS)  # cached or repaired
    assert client.get("/v1/notifications/unread_count",
                      headers=headers).json() == {"count": 3}


def test_mark_read_clears_unread_and_the_marker_never_moves_back(
        client: TestClient, api_settings: ServingSettings, store: NotificationStore,
        redis_keys: Any) -> None:
    now_ms = int(time.time() * 1000)
    store.add("bob", [StoredGroup(now_ms - 60_000, "like:p1"),
                      StoredGroup(now_ms - 120_000, "like:p2")], cache=True)
    headers = auth(api_settings, "bob")
    assert client.get("/v1/notifications/unread_count", headers=headers).json() == {"count": 2}
    response = client.post("/v1/notifications/read", json={}, headers=headers)
    assert response.status_code == 200, response.text
    marked = response.json()["read_through"]
    assert client.get("/v1/notifications/unread_count", headers=headers).json() == {"count": 0}
    assert not any(i["unread"] for i in walk(client, headers, 10))

    # A later marker (another device's clock ahead, in CQL and Redis) is not moved back.
    later = now_ms + 86_400_000
    store.mark("bob", later)
    redis_client, keys = redis_keys
    redis_client.set(keys.notifications_read("bob"), later)
    again = client.post("/v1/notifications/read", headers=headers)  # no body: same as {}
    assert again.status_code == 200
    assert again.json()["read_through"] > marked
    redis_client.delete(keys.notifications_read("bob"))  # evicted: read back from CQL
    store.add("bob", [StoredGroup(now_ms + 1_000, "like:p3")], cache=True)
    assert client.get("/v1/notifications/unread_count", headers=headers).json() == {"count": 0}
    assert int(redis_client.get(keys.notifications_read("bob"))) == later


def test_only_the_newest_500_are_served_and_counted(
        client: TestClient, api_settings: ServingSettings, store: NotificationStore,
        redis_keys: Any) -> None:
    groups = [StoredGroup(10_000 + i, f"like:p{i:04d}") for i in range(505)]
    store.add("bob", groups, cache=False)  # CQL holds every live group
    headers = auth(api_settings, "bob")
    from_cql = walk(client, headers, 100)
    newest = [g.group_key for g in sorted(groups, key=lambda g: -g.latest_ms)[:500]]
    assert [i["group_key"] for i in from_cql] == newest
    redis_client, keys = redis_keys
    assert redis_client.zcard(keys.notifications("bob")) == 500  # repaired: the newest 500
    assert [i["group_key"] for i in walk(client, headers, 100)] == newest
    # A ZSET over the cap (a writer that has not trimmed yet) is still served to the cap.
    redis_client.zadd(keys.notifications("bob"), {"like:old": 1})
    assert len(walk(client, headers, 100)) == 500
    assert client.get("/v1/notifications/unread_count",
                      headers=headers).json() == {"count": 500}


def test_a_missing_payload_is_read_from_cql(client: TestClient, api_settings: ServingSettings,
                                            store: NotificationStore, redis_keys: Any) -> None:
    store.add("bob", GROUPS, cache=True)
    redis_client, keys = redis_keys
    redis_client.hdel(keys.notification_groups("bob"), "like:p8")
    items = walk(client, auth(api_settings, "bob"), 100)
    assert [i["group_key"] for i in items] == [g.group_key for g in GROUPS]
    assert items[1]["count"] == 3


def test_bad_requests_are_problems(client: TestClient, api_settings: ServingSettings,
                                   store: NotificationStore) -> None:
    store.add("bob", GROUPS, cache=True)
    headers = auth(api_settings, "bob")
    for cursor in ("nope", "A" * 40):
        response = client.get("/v1/notifications", params={"cursor": cursor}, headers=headers)
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/invalid-cursor")
    # Another listing's cursor (the caller's feed, or another user's notifications).
    page = client.get("/v1/notifications", params={"limit": 1}, headers=headers).json()
    other = client.get("/v1/notifications", params={"cursor": page["next_cursor"]},
                       headers=auth(api_settings, "eve"))
    assert other.status_code == 400
    assert client.get("/v1/notifications", params={"limit": 0},
                      headers=headers).status_code == 422
    assert client.get("/v1/notifications", params={"limit": 101},
                      headers=headers).status_code == 422
    assert client.post("/v1/notifications/read", json={"x": 1},
                       headers=headers).status_code == 422
    for method, path in (("GET", "/v1/notifications"), ("GET", "/v1/notifications/unread_count"),
                         ("POST", "/v1/notifications/read")):
        response = client.request(method, path)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


def test_redis_down_serves_from_cql_marked_degraded(api_settings: ServingSettings,
                                                    store: NotificationStore) -> None:
    store.add("bob", GROUPS, cache=False)
    store.mark("bob", 7_000)
    broken = api_settings.model_copy(update={
        "redis": RedisSettings(url="redis://127.0.0.1:1/0", key_prefix="x")})
    headers = auth(broken, "bob")
    with TestClient(create_app(broken)) as down:
        response = down.get("/v1/notifications", headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["x-feed-degraded"] == "redis"
        assert [i["group_key"] for i in response.json()["items"]] == [
            g.group_key for g in GROUPS]
        unread = down.get("/v1/notifications/unread_count", headers=headers)
        assert unread.json() == {"count": 3} and unread.headers["x-feed-degraded"] == "redis"
        marked = down.post("/v1/notifications/read", json={}, headers=headers)
        assert marked.status_code == 200 and marked.headers["x-feed-degraded"] == "redis"
        assert down.get("/v1/notifications/unread_count", headers=headers).json() == {
            "count": 0}
