"""Property tests: the incremental rules equal the reference model for any event set,
in any order, with any duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedline.rules.engine import derive
from feedline.rules.fanout import RulesConfig
from feedline.rules.memory import FeedState
from schemas.event_contracts import new_event
from tests.support.reference import Expected, reference_for

USERS = [f"u{i}" for i in range(6)]
BASE = datetime(2026, 11, 21, tzinfo=UTC)


@st.composite
def event_lists(draw: st.DrawFn) -> list:
    n = draw(st.integers(min_value=1, max_value=40))
    events = []
    for i in range(n):
        kind = draw(st.sampled_from(
            ["post_created"] * 4 + ["post_deleted", "follow", "follow", "follow", "unfollow",
             "like", "like", "unlike", "comment", "comment_deleted"]
        ))
        when = BASE + timedelta(seconds=draw(st.integers(0, 12)))
        eid = f"evt{i:05d}"
        author = draw(st.sampled_from(USERS))
        post_id = f"{author}-p{draw(st.integers(0, 4))}"
        user = draw(st.sampled_from(USERS))
        if kind == "post_created":
            media = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]
            e = new_event(kind, event_id=eid, event_time=when, author_id=author,
                          post_id=post_id, caption="", media=media)
        elif kind == "post_deleted":
            e = new_event(kind, event_id=eid, event_time=when, author_id=author, post_id=post_id)
        elif kind in ("follow", "unfollow"):
            followee = draw(st.sampled_from([u for u in USERS if u != user]))
            e = new_event(kind, event_id=eid, event_time=when, follower_id=user,
                          followee_id=followee)
        elif kind in ("like", "unlike"):
            e = new_event(kind, event_id=eid, event_time=when, user_id=user, post_id=post_id)
        else:
            e = new_event(kind, event_id=eid, event_time=when, user_id=user, post_id=post_id,
                          comment_id=f"c{draw(st.integers(0, 2))}",
                          **({"text": "nice"} if kind == "comment" else {}))
        events.append(e)
    return events


CONFIGS = st.builds(
    RulesConfig,
    celebrity_threshold=st.integers(1, 4),
    follow_merge_limit=st.integers(0, 3),
    timeline_cap=st.integers(1, 4),
)


def assert_matches(state: FeedState, expected: Expected, config: RulesConfig) -> None:
    got = state.normalized()
    assert got.timelines == expected.timelines
    assert got.celebrities == expected.celebrities
    assert got.followed_celebrities == expected.followed_celebrities
    assert got.edges == expected.edges
    assert {p: (u.author_id, u.created_ms) for p, u in got.posts.items()} == expected.live_posts
    assert got.deleted_posts == expected.deleted_posts
    assert got.outboxes == {a: o for a, o in expected.outboxes.items() if o}
    assert got.post_counters == expected.post_counters
    assert got.user_counters == expected.user_counters


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), config=CONFIGS, data=st.data())
def test_any_order_and_duplicates_give_the_reference_state(events, config, data) -> None:
    order = data.draw(st.permutations(events), label="order")
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=8), label="duplicates")
    positions = data.draw(st.lists(st.integers(0, len(order)), min_size=len(dupes),
                                   max_size=len(dupes)), label="positions")
    replayed = list(order)
    for event, at in zip(dupes, positions, strict=True):
        replayed.insert(at, event)
    assert_matches(derive(replayed, config), reference_for(events, config), config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), config=CONFIGS, cut=st.integers(0, 40))
def test_replaying_a_suffix_after_a_restart_changes_nothing(events, config, cut) -> None:
    # A restart from a checkpoint re-reads everything after it: a suffix arrives twice.
    cut = min(cut, len(events))
    assert_matches(derive(events + events[cut:], config), reference_for(events, config), config)
