"""FeedWriter on the real CQL store and Redis: order of effects on one row survives
batching and concurrency; a missing timeline is rebuilt whole; writes are idempotent."""

from __future__ import annotations

from feedline.rules.effects import (
    MediaRef,
    PostCountersSet,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
)
from feedline.stores.feed_writer import FeedWriter


def _timeline_rows(session, user: str) -> list[str]:
    stmt = session.prepare("SELECT post_id FROM timelines WHERE user_id = ?")
    return [r.post_id for r in session.execute(stmt, (user,))]


def test_effects_on_one_row_keep_their_order_within_a_write(cql_session, redis_keys) -> None:
    client, keys = redis_keys
    writer = FeedWriter(cql_session, client, keys, timeline_cap=5, batch_size=3)
    add = TimelineAdd("reader", "p1", 1_700_000_000_000, "a")
    remove = TimelineRemove("reader", "p1", 1_700_000_000_000)
    # 40 flips of the same row spread over many batches run concurrently: the last wins.
    writer.write([add, remove] * 20 + [add])
    assert _timeline_rows(cql_session, "reader") == ["p1"]
    writer.write([remove, add] * 20 + [remove])
    assert _timeline_rows(cql_session, "reader") == []


def test_missing_timeline_is_rebuilt_from_cql_and_capped(cql_session, redis_keys) -> None:
    client, keys = redis_keys
    writer = FeedWriter(cql_session, client, keys, timeline_cap=3)
    writer.write([TimelineAdd("r", f"p{i}", 1_700_000_000_000 + i, "a") for i in range(6)])
    assert client.zrevrange(keys.timeline("r"), 0, -1) == ["p5", "p4", "p3"]
    client.delete(keys.timeline("r"))  # evicted
    writer.write([TimelineAdd("r", "p6", 1_700_000_000_006, "a")])
    assert client.zrevrange(keys.timeline("r"), 0, -1) == ["p6", "p5", "p4"]
    writer.write([TimelineRemove("r", "p6", 1_700_000_000_006)])  # full timeline shrinks
    assert client.zrevrange(keys.timeline("r"), 0, -1) == ["p5", "p4", "p3"]


def test_writing_the_same_effects_twice_changes_nothing(cql_session, redis_keys) -> None:
    client, keys = redis_keys
    writer = FeedWriter(cql_session, client, keys, timeline_cap=10)
    effects = [
        PostUpsert("p1", "a", 1_700_000_000_000, "hi", (MediaRef("m", "image/png", "gs://b/m"),),
                   "evt00000001"),
        PostCountersSet("p1", 3, 1),
    ]
    writer.write(effects)
    writer.write(effects)
    row = cql_session.execute(
        cql_session.prepare("SELECT likes, comments FROM post_counters WHERE post_id = ?"),
        ("p1",)).one()
    assert (row.likes, row.comments) == (3, 1)
    assert client.hgetall(keys.post_counters("p1")) == {"likes": "3", "comments": "1"}
    assert client.hget(keys.post("p1"), "caption") == "hi"
