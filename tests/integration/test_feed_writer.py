"""FeedWriter on the real CQL store and Redis: order of effects on one row survives
batching and concurrency; a missing timeline is rebuilt whole; writes are idempotent."""

from __future__ import annotations

import time

import pytest

from feedline.rules.effects import (
    CelebritySet,
    MediaRef,
    OutboxAdd,
    PostCountersSet,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
    UserCounterSet,
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


def _counters(session, client, keys, post_id: str) -> tuple[tuple[int, int], dict[str, str]]:
    row = session.execute(
        session.prepare("SELECT likes, comments FROM post_counters WHERE post_id = ?"),
        (post_id,)).one()
    return (row.likes, row.comments), client.hgetall(keys.post_counters(post_id))


def test_a_write_older_than_the_rows_last_changes_neither_store(cql_session, redis_keys) -> None:
    client, keys = redis_keys
    writer = FeedWriter(cql_session, client, keys, timeline_cap=10)
    writer.write_stamped([(2_000_000, PostCountersSet("p1", 5, 1))])
    writer.write_stamped([(1_000_000, PostCountersSet("p1", 2, 0))])  # late, e.g. a replay
    assert _counters(cql_session, client, keys, "p1") == ((5, 1), {"likes": "5", "comments": "1"})
    add = TimelineAdd("r", "p9", 1_700_000_000_000, "a")
    writer.write_stamped([(3_000_000, add), (3_000_002, TimelineRemove("r", "p9", add.created_ms))])
    writer.write_stamped([(3_000_000, add)])  # the add again, after its removal
    assert _timeline_rows(cql_session, "r") == []
    assert client.zrange(keys.timeline("r"), 0, -1) == []


def test_streaming_writes_older_than_a_rebuild_lose_in_both_stores(cql_session, redis_keys) -> None:
    from feedline.rebuild.image import derive_image
    from feedline.rebuild.writer import ImageWriter
    from feedline.rules.fanout import RulesConfig
    from schemas.event_contracts import new_event

    client, keys = redis_keys
    like = new_event("like", user_id="u1", post_id="p1")
    rebuilt_at = 5_000_000
    ImageWriter(cql_session, client, keys, timeline_cap=10, write_time_us=rebuilt_at
                ).write_counters(derive_image([like], RulesConfig()))
    writer = FeedWriter(cql_session, client, keys, timeline_cap=10)
    writer.write_stamped([(rebuilt_at - 10, PostCountersSet("p1", 9, 9))])
    assert _counters(cql_session, client, keys, "p1") == ((1, 0), {"likes": "1", "comments": "0"})
    writer.write_stamped([(rebuilt_at + 10, PostCountersSet("p1", 7, 0))])
    assert _counters(cql_session, client, keys, "p1") == ((7, 0), {"likes": "7", "comments": "0"})


def test_media_metadata_is_stored_alike_by_streaming_and_the_rebuild(cql_session,
                                                                      redis_keys) -> None:
    from feedline.rebuild.image import derive_image
    from feedline.rebuild.writer import ImageWriter
    from feedline.rules.effects import Rendition
    from feedline.rules.fanout import RulesConfig
    from feedline.rules.keys import Job, apply_event, new_state, rule_keys
    from feedline.stores.post_store import media_of
    from schemas.event_contracts import new_event

    client, keys = redis_keys
    described = MediaRef("m2", "image/jpeg", "gs://b/renditions/m2/7/w1080.jpg", 1600, 1200,
                         None, (Rendition("gs://b/renditions/m2/7/w1080.jpg", 1080, 810,
                                          "image/jpeg"),
                                Rendition("gs://b/renditions/m2/7/w320.jpg", 320, 240,
                                          "image/jpeg")), "#405060")
    plain = MediaRef("m1", "image/png", "gs://b/media/m1")  # as a version 1 event has it
    event = new_event("post_created", author_id="a", post_id="p1", caption="hi",
                      media=[described.to_json(), plain.to_json()])
    [key] = rule_keys(event, Job.FANOUT)
    effects = apply_event(new_state(key), event, RulesConfig())
    FeedWriter(cql_session, client, keys, timeline_cap=10).write(effects)

    select = cql_session.prepare("SELECT media FROM posts WHERE post_id = ?")

    def stored() -> tuple[tuple[MediaRef, ...], str]:
        row = cql_session.execute(select, ("p1",)).one()
        return tuple(media_of(m) for m in row.media), client.hget(keys.post("p1"), "media")

    streamed = stored()
    assert streamed[0] == (described, plain)
    cql_session.execute("DELETE FROM posts WHERE post_id = 'p1'")
    client.delete(keys.post("p1"))
    rebuilt_at = time.time_ns() // 1000 + 60_000_000  # after the DELETE's server-side time
    ImageWriter(cql_session, client, keys, timeline_cap=10, write_time_us=rebuilt_at
                ).write_authors(derive_image([event], RulesConfig()), all_tables=True)
    assert stored() == streamed


def test_a_counter_of_an_uncached_user_fills_the_whole_hash_from_cql(cql_session,
                                                                     redis_keys) -> None:
    """A lost or evicted counters hash is never re-created with one field (its other fields
    would read as zeros, and a celebrity's posts as none): it is filled whole."""
    client, keys = redis_keys
    writer = FeedWriter(cql_session, client, keys, timeline_cap=5)
    writer.write([UserCounterSet("celeb", "followers", 20), UserCounterSet("celeb", "posts", 3)])
    # Fields never written stay absent (read as 0), as in the CQL row and the rebuild's.
    assert client.hgetall(keys.user_counters("celeb")) == {"followers": "20", "posts": "3"}
    client.delete(keys.user_counters("celeb"), keys.versions(keys.user_counters("celeb")))
    writer.write([UserCounterSet("celeb", "followers", 21)])
    assert client.hgetall(keys.user_counters("celeb")) == {"followers": "21", "posts": "3"}
    # The filled fields carry their CQL write times: an older write of one changes nothing.
    versions = client.hgetall(keys.versions(keys.user_counters("celeb")))
    assert set(versions) == {"followers", "posts"}
    writer.write_stamped([(int(versions["posts"]) - 1, UserCounterSet("celeb", "posts", 1))])
    assert client.hget(keys.user_counters("celeb"), "posts") == "3"


class _Stopped(Exception):
    pass


def test_a_replay_rebuilds_what_a_writer_stopped_before_rebuilding(cql_session,
                                                                   redis_keys) -> None:
    """A flush writes its Redis pipeline, then rebuilds the keys it found not cached (an
    outbox, a counters hash) or a full timeline that shrank. A writer stopped between
    the two leaves the versions moved on and the rebuild undone; the replay of the same
    stamped effects after the restore must still rebuild, though every write is stale."""
    client, keys = redis_keys
    t = 1_700_000_000_000
    posts = [PostUpsert(f"p{i}", "celeb", t + i, "", (), f"e{i}") for i in range(4)]
    timeline = [TimelineAdd("r", f"p{i}", t + i, "celeb") for i in range(4)]
    FeedWriter(cql_session, client, keys, timeline_cap=3).write_stamped(
        [(1_000 + i, e) for i, e in enumerate(posts + timeline)])
    assert client.zrevrange(keys.timeline("r"), 0, -1) == ["p3", "p2", "p1"]
    batch = [(2_000, CelebritySet("celeb", True)), (2_001, OutboxAdd("celeb", "p3", t + 3)),
             (2_002, UserCounterSet("celeb", "followers", 30)),
             (2_003, TimelineRemove("r", "p3", t + 3))]

    class StopsBeforeRebuilding(FeedWriter):
        def _reload(self, targets):
            raise _Stopped

    stopped = StopsBeforeRebuilding(cql_session, client, keys, timeline_cap=3)
    with pytest.raises(_Stopped):
        stopped.write_stamped(batch)
    assert client.zrevrange(keys.timeline("r"), 0, -1) == ["p2", "p1"]
    assert not client.exists(keys.outbox("celeb"))
    FeedWriter(cql_session, client, keys, timeline_cap=3).write_stamped(batch)  # the replay
    assert client.zrevrange(keys.outbox("celeb"), 0, -1) == ["p3", "p2", "p1"]
    assert client.zrevrange(keys.timeline("r"), 0, -1) == ["p2", "p1", "p0"]
    assert client.hgetall(keys.user_counters("celeb")) == {"followers": "30"}


def test_an_outbox_follows_the_celebrity_flag_whatever_order_they_come_in(cql_session,
                                                                          redis_keys) -> None:
    """The flag and the outbox writes of one author can reach the writer out of the rules'
    order across a restore that moved the author to another writer bucket: the outbox
    add first (not a celebrity yet: no outbox), then the flag (the outbox is built from
    the CQL store); and a flag cleared before the outbox clear drops the outbox."""
    client, keys = redis_keys
    t = 1_700_000_000_000
    writer = FeedWriter(cql_session, client, keys, timeline_cap=3)
    writer.write_stamped([(10, PostUpsert("p1", "star", t, "", (), "e1")),
                          (11, OutboxAdd("star", "p1", t))])
    assert not client.exists(keys.outbox("star"))
    writer.write_stamped([(5, CelebritySet("star", True))])  # older, written later
    assert client.zrevrange(keys.outbox("star"), 0, -1) == ["p1"]
    writer.write_stamped([(20, CelebritySet("star", False))])
    assert not client.exists(keys.outbox("star"))
    writer.write_stamped([(21, OutboxAdd("star", "p1", t))])  # a late add: still none
    assert not client.exists(keys.outbox("star"))
