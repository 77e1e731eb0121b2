"""Property tests: the incremental notification rules equal the brute-force reference for
any event set, in any order, with redelivered events and replays after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedline.rules.notification_book import NotificationEngine
from feedline.rules.notifications import NotificationParams
from schemas.event_contracts import new_event
from tests.support.notifications_reference import reference_notifications

USERS = [f"u{i}" for i in range(5)]
POSTS = ["p0", "p1", "p2"]
#: Ten seconds before midnight UTC: the follow groups cross a day boundary.
BASE = datetime(2026, 11, 30, 23, 59, 50, tzinfo=UTC)
TEXTS = ["nice", "@u1 hi", "@u2 @u1 @u3 @u2", "mail a@u1", "@u0!", "@ghost look", "@u4@u3",
         "@u5 @u1"]
MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]


@st.composite
def event_lists(draw: st.DrawFn) -> list:
    n = draw(st.integers(min_value=1, max_value=45))
    events = []
    for i in range(n):
        kind = draw(st.sampled_from(
            ["post_created"] * 3 + ["post_deleted"] + ["like"] * 4 + ["unlike"] * 2
            + ["comment"] * 3 + ["comment_deleted", "follow", "follow", "follow", "unfollow"]))
        when = BASE + timedelta(seconds=draw(st.integers(0, 20)))
        common: dict[str, Any] = {"event_id": f"evt{i:05d}", "event_time": when}
        post = draw(st.sampled_from(POSTS))
        user = draw(st.sampled_from([*USERS, "u5"]))  # u5: mentioned, appears only sometimes
        if kind == "post_created":
            # Mostly the post's own author; sometimes another (the earliest create wins).
            author = draw(st.sampled_from([f"u{POSTS.index(post)}"] * 3 + USERS))
            caption = draw(st.sampled_from(TEXTS))
            e = new_event(kind, author_id=author, post_id=post, caption=caption, media=MEDIA,
                          **common)
        elif kind == "post_deleted":
            e = new_event(kind, author_id=f"u{POSTS.index(post)}", post_id=post, **common)
        elif kind in ("follow", "unfollow"):
            followee = draw(st.sampled_from([u for u in USERS if u != user]))
            e = new_event(kind, follower_id=user, followee_id=followee, **common)
        elif kind in ("like", "unlike"):
            e = new_event(kind, user_id=user, post_id=post, **common)
        else:
            number = draw(st.integers(0, 4))  # a comment id certifies its author
            extra: dict[str, Any] = (
                {"text": draw(st.sampled_from(TEXTS))} if kind == "comment" else {})
            e = new_event(kind, user_id=USERS[number], post_id=post, comment_id=f"c{number}",
                          **extra, **common)
        events.append(e)
    return events


PARAMS = st.builds(NotificationParams, shown_actors=st.integers(1, 3), window=st.integers(1, 4),
                   max_mentions=st.integers(1, 3))


def incremental(events: list, params: NotificationParams) -> dict:
    """The groups the rules' effects leave, one keyed state per notification key."""
    engine = NotificationEngine(params)
    for event in events:
        engine.apply(event)
    return {(recipient, key): (g.type, g.post_id, g.count, g.actors, g.latest_ms)
            for recipient, groups in engine.book.groups.items() for key, g in groups.items()}


def expected(events: list, params: NotificationParams) -> dict:
    return reference_notifications(events, shown=params.shown_actors, window=params.window,
                                   max_mentions=params.max_mentions, known_users_only=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), params=PARAMS, data=st.data())
def test_any_order_with_redeliveries_gives_the_reference_groups(events, params, data) -> None:
    order = data.draw(st.permutations(events), label="order")
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=8), label="redelivered")
    positions = data.draw(st.lists(st.integers(0, len(order)), min_size=len(dupes),
                                   max_size=len(dupes)), label="positions")
    replayed = list(order)
    for event, at in zip(dupes, positions, strict=True):
        replayed.insert(at, event)
    assert incremental(replayed, params) == expected(events, params)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), params=PARAMS, cut=st.integers(0, 45))
def test_replaying_a_suffix_after_a_restart_changes_nothing(events, params, cut) -> None:
    cut = min(cut, len(events))
    assert incremental(events + events[cut:], params) == expected(events, params)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists())
def test_the_default_params_agree_too(events) -> None:
    params = NotificationParams()
    assert incremental(events, params) == expected(events, params)
