"""The feed rules on small, named scenarios (ARCHITECTURE.md, 'Rules the derived data
must obey'). The property tests cover the general case; these read as documentation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

from feedline.rules.engine import derive
from feedline.rules.fanout import RulesConfig
from feedline.rules.memory import FeedState, newest
from schemas.event_contracts import new_event

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
_ids = count()


def ev(kind: str, minute: int, **fields):
    when = T0 + timedelta(minutes=minute)
    return new_event(kind, event_id=f"ev{next(_ids):06d}", event_time=when, **fields)


def post(author: str, post_id: str, minute: int):
    media = [{"media_id": "m", "content_type": "image/jpeg", "uri": "gs://b/m"}]
    return ev("post_created", minute, author_id=author, post_id=post_id, caption="c", media=media)


def follow(follower: str, followee: str, minute: int, kind: str = "follow"):
    return ev(kind, minute, follower_id=follower, followee_id=followee)


def feed(state: FeedState, user: str, cap: int = 800) -> list[str]:
    return newest(state.timelines.get(user, {}), cap)


def test_fan_out_on_write_reaches_every_follower() -> None:
    s = derive([follow("f1", "a", 0), follow("f2", "a", 0), post("a", "p1", 1)], RulesConfig())
    assert feed(s, "f1") == feed(s, "f2") == ["p1"]
    assert s.posts["p1"].author_id == "a"


def test_follow_merges_only_the_newest_posts_before_it() -> None:
    events = [post("a", f"p{i}", i) for i in range(5)] + [follow("f", "a", 10)]
    s = derive(events, RulesConfig(follow_merge_limit=2))
    assert feed(s, "f") == ["p4", "p3"]


def test_unfollow_removes_and_refollow_merges_again() -> None:
    events = [follow("f", "a", 0), post("a", "p1", 1), follow("f", "a", 2, "unfollow")]
    s = derive(events, RulesConfig())
    assert feed(s, "f") == []
    s = derive([*events, follow("f", "a", 3)], RulesConfig())
    assert feed(s, "f") == ["p1"]


def test_older_follow_arriving_after_a_newer_unfollow_is_ignored() -> None:
    events = [post("a", "p1", 0), follow("f", "a", 5, "unfollow"), follow("f", "a", 4)]
    s = derive(events, RulesConfig())
    assert feed(s, "f") == []
    assert s.normalized().user_counters == {"a": {"posts": 1}}


def test_delete_retracts_everywhere_even_when_it_arrives_first() -> None:
    delete = ev("post_deleted", 5, author_id="a", post_id="p1")
    s = derive([delete, follow("f", "a", 0), post("a", "p1", 1)], RulesConfig())
    assert feed(s, "f") == []
    assert "p1" not in s.posts and "p1" in s.deleted_posts


def test_late_post_before_the_follow_pushes_the_oldest_merged_post_out() -> None:
    config = RulesConfig(follow_merge_limit=2)
    events = [post("a", "p1", 1), post("a", "p3", 3), follow("f", "a", 10), post("a", "p2", 2)]
    s = derive(events, config)
    assert feed(s, "f") == ["p3", "p2"]  # p1 fell out of the 2-post merge window


def test_celebrity_posts_go_to_the_outbox_and_readers_merge_it() -> None:
    config = RulesConfig(celebrity_threshold=2)
    fans = [follow(f"f{i}", "star", 0) for i in range(3)]
    s = derive([*fans, post("star", "p1", 1)], config)
    assert s.celebrities == {"star"}
    assert feed(s, "f0") == []
    assert s.outboxes["star"] == {"p1": s.posts["p1"].created_ms}
    assert s.followed_celebrities["f2"] == {"star"}


def test_crossing_the_threshold_moves_posts_both_ways() -> None:
    config = RulesConfig(celebrity_threshold=2)
    events = [follow("f0", "a", 0), follow("f1", "a", 0), post("a", "p1", 1)]
    below = derive(events, config)
    assert feed(below, "f0") == ["p1"] and not below.celebrities
    up = derive([*events, follow("f2", "a", 2)], config)
    assert up.celebrities == {"a"} and feed(up, "f0") == [] and "p1" in up.outboxes["a"]
    down = derive([*events, follow("f2", "a", 2), follow("f2", "a", 3, "unfollow")], config)
    assert not down.celebrities and feed(down, "f0") == ["p1"]
    assert "a" not in down.normalized().outboxes
    assert not down.normalized().followed_celebrities


def test_outbox_keeps_the_newest_cap_and_refills_after_a_delete() -> None:
    config = RulesConfig(celebrity_threshold=1, timeline_cap=2)
    events = [follow("f0", "a", 0), follow("f1", "a", 0)]
    events += [post("a", f"p{i}", i + 1) for i in range(4)]
    s = derive(events, config)
    assert newest(s.outboxes["a"], 10) == ["p3", "p2"]
    s = derive([*events, ev("post_deleted", 9, author_id="a", post_id="p3")], config)
    assert newest(s.outboxes["a"], 10) == ["p2", "p1"]


def test_likes_count_once_and_unlike_only_undoes_an_existing_like() -> None:
    events = [
        ev("unlike", 0, user_id="u1", post_id="p"),   # nothing to undo
        ev("like", 1, user_id="u1", post_id="p"),
        ev("like", 2, user_id="u1", post_id="p"),     # same user again
        ev("like", 3, user_id="u2", post_id="p"),
        ev("unlike", 4, user_id="u2", post_id="p"),
        ev("comment", 5, user_id="u3", post_id="p", comment_id="c1", text="hi"),
        ev("comment", 6, user_id="u3", post_id="p", comment_id="c2", text="yo"),
        ev("comment_deleted", 7, user_id="u3", post_id="p", comment_id="c1"),
    ]
    assert derive(events, RulesConfig()).post_counters["p"] == (1, 1)
    assert derive(events + events, RulesConfig()).post_counters["p"] == (1, 1)


def test_user_counters_follow_the_graph_and_posts() -> None:
    events = [follow("b", "a", 0), follow("c", "a", 0), follow("a", "b", 0),
              post("a", "p1", 1), post("a", "p2", 2),
              ev("post_deleted", 3, author_id="a", post_id="p1")]
    s = derive(events, RulesConfig()).normalized()
    assert s.user_counters["a"] == {"followers": 2, "following": 1, "posts": 1}
    assert s.user_counters["b"] == {"followers": 1, "following": 1}
