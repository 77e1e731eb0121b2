"""Redis: timelines as capped sorted sets of ids, stored compactly."""

from __future__ import annotations


def test_timeline_zset_newest_first_and_capped(redis_keys) -> None:
    client, keys = redis_keys
    key = keys.timeline("reader")
    pipe = client.pipeline(transaction=False)
    for i in range(1000):
        pipe.zadd(key, {f"p{i}": 1_700_000_000_000 + i})
    pipe.zremrangebyrank(key, 0, -801)  # keep the newest 800
    pipe.execute()
    assert client.zcard(key) == 800
    assert client.zrevrange(key, 0, 2) == ["p999", "p998", "p997"]
    assert client.zrevrange(key, -1, -1) == ["p200"]


def test_server_keeps_capped_timelines_in_compact_encoding(redis_keys) -> None:
    client, keys = redis_keys
    key = keys.timeline("compact")
    client.zadd(key, {f"{i:012d}": 1_700_000_000_000 + i for i in range(800)})
    assert client.object("encoding", key) == "listpack"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"


def test_post_hash_hydration_round_trip(redis_keys) -> None:
    client, keys = redis_keys
    client.hset(keys.post("p1"), mapping={"author_id": "a1", "caption": "hello"})
    client.hset(keys.post_counters("p1"), mapping={"likes": 3, "comments": 1})
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.post("p1"))
    pipe.hgetall(keys.post_counters("p1"))
    post, counters = pipe.execute()
    assert post == {"author_id": "a1", "caption": "hello"}
    assert counters == {"likes": "3", "comments": "1"}
