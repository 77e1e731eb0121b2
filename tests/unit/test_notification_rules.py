"""Unit tests of the notification rules, one behaviour each, with plain events."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from feedline.rules.counters import PostEngagementState, apply_engagement
from feedline.rules.effects import NotificationDelete, NotificationUpsert
from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import (
    NOTIFICATION_ROUTES,
    ROUTES,
    Job,
    KeyKind,
    RuleKey,
    apply_event,
    new_state,
    rule_keys,
)
from feedline.rules.notification_book import NotificationEngine
from feedline.rules.notification_recipients import RecipientNotificationState, recipient_state
from feedline.rules.notifications import (
    DEFAULT_PARAMS,
    NotificationParams,
    PostNotificationState,
    apply_post_notification,
    mentioned_users,
)
from schemas.event_contracts import new_event
from schemas.redis_notifications import NOTIFICATION_CAP

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def post(post_id: str = "p1", author: str = "ann", caption: str = "", t: float = 0) -> Any:
    return new_event("post_created", author_id=author, post_id=post_id, caption=caption,
                     media=MEDIA, event_time=at(t))


def like(user: str, post_id: str = "p1", t: float = 1, kind: str = "like") -> Any:
    return new_event(kind, user_id=user, post_id=post_id, event_time=at(t))


def comment(user: str, cid: str, text: str = "nice", post_id: str = "p1", t: float = 1) -> Any:
    return new_event("comment", user_id=user, post_id=post_id, comment_id=cid, text=text,
                     event_time=at(t))


def follow(follower: str, followee: str, when: datetime, kind: str = "follow") -> Any:
    return new_event(kind, follower_id=follower, followee_id=followee, event_time=when)


class Notifications(NotificationEngine):
    """The notifications job's keys, in memory, and the book their effects fill."""

    def apply(self, *events: Any) -> list[Any]:
        effects: list[Any] = []
        for event in events:
            effects.extend(NotificationEngine.apply(self, event))
        return effects

    def groups(self, user: str) -> dict[str, tuple]:
        return {k: (g.type, g.count, g.actors) for k, g in self.book.groups.get(user, {}).items()}


def test_likes_comments_and_mentions_of_others_notify() -> None:
    n = Notifications()
    n.apply(post(caption="with @cat"), like("bob"), like("dan", t=2), comment("cat", "c1", "@bob!"))
    assert n.groups("ann") == {"like:p1": ("like", 2, ("dan", "bob")),
                               "comment:p1": ("comment", 1, ("cat",))}
    assert n.groups("cat") == {"mention:p1": ("mention", 1, ("ann",))}
    assert n.groups("bob") == {"mention:p1:c1": ("mention", 1, ("cat",))}


def test_own_actions_never_notify() -> None:
    n = Notifications()
    n.apply(post(caption="me @ann"), like("ann"), comment("ann", "c1", "@ann again"),
            comment("bob", "c2", "@bob is me"))
    assert n.groups("ann") == {"comment:p1": ("comment", 1, ("bob",))}
    assert n.groups("bob") == {}
    # The contract refuses a self-follow; the rules ignore one anyway.
    self_follow = SimpleNamespace(event_type="follow", follower_id="ann", followee_id="ann",
                                  event_time_ms=1, event_id="e-self-follow")
    state = recipient_state("ann")
    assert apply_event(state, self_follow, RulesConfig()) == []


def test_mention_syntax() -> None:
    assert mentioned_users("hi @bob, @cat-1 and @dan_2!", 20) == ("bob", "cat-1", "dan_2")
    assert mentioned_users("mail a@bob or x_@cat", 20) == ()  # glued to an id: no mention
    assert mentioned_users("@" + "x" * 65 + " @" + "y" * 64, 20) == ("y" * 64,)
    assert mentioned_users("@a @b @a @c", 2) == ("a", "b")  # distinct, first ones, capped
    assert mentioned_users("@@bob @ alone @", 20) == ("bob",)
    assert mentioned_users("(@bob)@cat", 20) == ("bob", "cat")  # ")" is no id character


def test_likes_before_the_post_wait_for_its_author() -> None:
    n = Notifications()
    n.apply(like("bob"), like("ann"), comment("cat", "c1", "@dan"), like("dan", "p9"))
    assert n.book.groups == {}  # who is the recipient? only post_created says
    n.apply(post())
    assert n.groups("ann") == {"like:p1": ("like", 1, ("bob",)),
                               "comment:p1": ("comment", 1, ("cat",))}
    assert n.groups("dan") == {"mention:p1:c1": ("mention", 1, ("cat",))}


def test_mentions_of_unknown_users_are_held_until_they_appear() -> None:
    n = Notifications()
    n.apply(post(caption="hi @ghost @dan @eve"), comment("bob", "c1", "@dan @eve"),
            comment("bob", "c2", "@eve"))
    assert set(n.book.groups) == {"ann"}  # nobody mentioned has appeared in any event
    n.apply(new_event("comment_deleted", user_id="bob", post_id="p1", comment_id="c2",
                      event_time=at(5)))
    released = n.apply(follow("dan", "zed", at(6)))  # dan acts: known, mentions released
    assert [(e.group_key, e.previous_latest_ms) for e in released
            if isinstance(e, NotificationUpsert) and e.recipient_id == "dan"] == [
        ("mention:p1", None), ("mention:p1:c1", None)]
    assert n.groups("dan") == {"mention:p1": ("mention", 1, ("ann",)),
                               "mention:p1:c1": ("mention", 1, ("bob",))}
    n.apply(follow("fay", "eve", at(7)))  # being followed makes eve known too
    assert set(n.groups("eve")) == {"mention:p1", "mention:p1:c1", "follow:2026-11-30"}
    assert "ghost" not in n.book.groups
    # Known users get later mentions at once, and their retraction.
    n.apply(comment("bob", "c3", "@dan", t=8))
    assert "mention:p1:c3" in n.groups("dan")
    n.apply(new_event("comment_deleted", user_id="bob", post_id="p1", comment_id="c3",
                      event_time=at(9)))
    assert "mention:p1:c3" not in n.groups("dan")


def test_an_unknown_users_held_mentions_keep_the_newest_cap() -> None:
    n = Notifications(NotificationParams(group_cap=3))
    for i in range(5):
        n.apply(post(f"p{i}", "bob", caption="@ghost", t=i))
    n.apply(like("ghost", "p0", t=10))  # ghost appears
    assert sorted(n.groups("ghost")) == ["mention:p2", "mention:p3", "mention:p4"]
    assert [e.revision for e in n.apply(post("p5", "bob", caption="@ghost", t=11))] == [4]


def test_retractions_count_down_and_an_empty_group_disappears() -> None:
    n = Notifications()
    n.apply(post(), like("bob", t=1), like("cat", t=2), comment("dan", "c1", "@eve", t=3),
            like("eve", "p9"))
    assert "mention:p1:c1" in n.groups("eve")
    effects = n.apply(like("cat", t=4, kind="unlike"))
    assert [type(e) for e in effects] == [NotificationUpsert]
    assert n.groups("ann")["like:p1"] == ("like", 1, ("bob",))
    assert n.apply(like("cat", t=4, kind="unlike")) == []  # an unlike of no like: nothing
    assert n.apply(like("zed", t=5, kind="unlike")) == []
    n.apply(like("bob", t=6, kind="unlike"),
            new_event("comment_deleted", user_id="dan", post_id="p1", comment_id="c1",
                      event_time=at(7)))
    assert n.groups("ann") == {} and n.groups("eve") == {}


def test_a_deleted_post_takes_all_its_notifications_with_it() -> None:
    n = Notifications()
    n.apply(like("cat", "p9"), like("eve", "p9"))  # cat and eve are known users
    n.apply(post(caption="@cat"), like("bob"), comment("dan", "c1", "@eve"))
    assert set(n.book.groups) == {"ann", "cat", "eve"}
    effects = n.apply(new_event("post_deleted", author_id="ann", post_id="p1", event_time=at(9)))
    assert {type(e) for e in effects} == {NotificationDelete}
    assert n.book.groups == {}
    assert n.apply(like("fay", t=10), comment("gus", "c2", "@cat", t=10), post()) == []


def test_redelivered_events_change_nothing_and_effects_carry_the_event_order() -> None:
    n = Notifications()
    created, liked = post(), like("bob", t=3)
    first = n.apply(created, liked)
    assert n.apply(liked, created) == []
    (upsert,) = first  # the create alone notifies nobody; the like does
    assert (upsert.event_time_ms, upsert.event_id) == (liked.event_time_ms, liked.event_id)
    moved = n.apply(like("cat", t=5))[0]
    assert isinstance(moved, NotificationUpsert)
    assert (moved.previous_latest_ms, moved.latest_ms) == (liked.event_time_ms,
                                                           liked.event_time_ms + 2000)
    assert moved.revision > upsert.revision
    late = n.apply(like("dan", t=2))[0]  # an older like: the newest write, an older event
    assert late.revision > moved.revision and late.event_time_ms < moved.event_time_ms
    assert late.count == 3 and late.latest_ms == moved.latest_ms


def test_follow_groups_are_per_utc_day_of_the_follow() -> None:
    n = Notifications()
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    n.apply(follow("bob", "ann", midnight - timedelta(milliseconds=1)),
            follow("cat", "ann", midnight), follow("dan", "ann", midnight + timedelta(hours=23)))
    assert n.groups("ann") == {"follow:2026-11-30": ("follow", 1, ("bob",)),
                               "follow:2026-12-01": ("follow", 2, ("dan", "cat"))}
    # cat had already followed the day before (that event arrives late): cat moves there.
    n.apply(follow("cat", "ann", midnight - timedelta(hours=1)))
    assert n.groups("ann") == {"follow:2026-11-30": ("follow", 2, ("bob", "cat")),
                               "follow:2026-12-01": ("follow", 1, ("dan",))}
    effects = n.apply(follow("bob", "ann", midnight + timedelta(hours=1), kind="unfollow"))
    assert n.groups("ann")["follow:2026-11-30"] == ("follow", 1, ("cat",))
    assert len(effects) == 1
    n.apply(follow("dan", "ann", midnight + timedelta(days=1), kind="unfollow"))
    assert set(n.groups("ann")) == {"follow:2026-11-30"}


def test_the_recipient_sees_the_newest_500_groups_exactly() -> None:
    assert DEFAULT_PARAMS.group_cap == NOTIFICATION_CAP == 500
    n = Notifications()
    for i in range(600):
        n.apply(post(f"p{i}", t=i), like("bob", f"p{i}", t=i + 0.5))
    visible = n.book.visible("ann")
    assert len(visible) == 500
    assert [key for key, _ in visible[:2]] == ["like:p599", "like:p598"]
    assert visible[-1][0] == "like:p100"
    # The cap is a view of every live group: retracting a visible one shows the next.
    n.apply(new_event("post_deleted", author_id="ann", post_id="p599", event_time=at(700)))
    visible = n.book.visible("ann")
    assert len(visible) == 500 and visible[0][0] == "like:p598" and visible[-1][0] == "like:p99"


class CountingDict(dict):
    """A dict counting the entries read or written (the per-event cost of the registers)."""

    touched = 0

    def __getitem__(self, key: Any) -> Any:
        CountingDict.touched += 1
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        CountingDict.touched += 1
        return super().get(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        CountingDict.touched += 1
        super().__setitem__(key, value)


def _like(user: str, ms: int, kind: str = "like") -> Any:
    """A like without schema validation (100,000 of them): only what the rules read."""
    return SimpleNamespace(event_type=kind, event_time_ms=ms, event_id=f"e{ms:012d}",
                           user_id=user, post_id="p1")


def test_a_post_with_100000_likes_keeps_a_bounded_summary_and_exact_counts() -> None:
    state = new_state(RuleKey(KeyKind.NOTIFIED_POST, "p1"))
    assert isinstance(state, PostNotificationState)
    state.registers.likes = CountingDict()
    apply_post_notification(state, post())
    base = post().event_time_ms
    sizes, most_touched = {}, 0
    for i in range(100_000):
        CountingDict.touched = 0
        effects = apply_post_notification(state, _like(f"user{i:06d}", base + 1000 + i))
        most_touched = max(most_touched, CountingDict.touched)
        assert isinstance(effects[-1], NotificationUpsert) and effects[-1].count == i + 1
        if i + 1 in (100, 100_000):
            sizes[i + 1] = len(pickle.dumps(state.summary))
    # The summary is the same size for 100 likes and for 100,000: windows, counts, ids.
    bound = 100 * (2 * DEFAULT_PARAMS.window + DEFAULT_PARAMS.max_mentions) + 500
    assert sizes[100_000] < bound and sizes[100_000] - sizes[100] < 16
    # Each like reads or writes a few registers (the window's), not the 100,000.
    assert most_touched <= 2 * DEFAULT_PARAMS.window + 6
    assert len(state.registers.likes) == 100_000  # one register per actor, a keyed map

    # Retracting a liker far outside the window is exact: the count drops, the shown
    # actors (the newest) stay; a repeated or unknown unlike changes nothing.
    newest = ("user099999", "user099998", "user099997")
    (down,) = apply_post_notification(state, _like("user000005", base + 200_000, "unlike"))
    assert isinstance(down, NotificationUpsert)
    assert (down.count, down.actors) == (99_999, newest)
    assert apply_post_notification(state, _like("user000005", base + 200_001, "unlike")) == []
    assert apply_post_notification(state, _like("nobody", base + 200_002, "unlike")) == []
    # Retracting a shown one shows the next newest still present.
    (shown,) = apply_post_notification(state, _like("user099999", base + 200_003, "unlike"))
    assert isinstance(shown, NotificationUpsert)
    assert shown.actors == ("user099998", "user099997", "user099996")


def test_counts_agree_with_the_counters_job_minus_the_authors_own() -> None:
    events = [post(), like("bob", t=1), like("ann", t=2), like("bob", t=3),
              like("cat", t=4), like("cat", t=5, kind="unlike"), like("cat", t=4.5),
              like("dan", t=6, kind="unlike"), like("dan", t=5.5)]
    counters = PostEngagementState("p1")
    for e in events[1:]:
        apply_engagement(counters, event_type=e.event_type, user_id=e.user_id,
                         version=(e.event_time_ms, e.event_id))
    n = Notifications()
    n.apply(*events)
    author_likes = 1  # ann liked her own post
    assert n.book.groups["ann"]["like:p1"].count == counters.counts()[0] - author_likes == 1


def test_the_notification_keys_are_gated_off_the_existing_jobs() -> None:
    like_event = like("bob")
    assert set(NOTIFICATION_ROUTES) == set(ROUTES)
    assert rule_keys(like_event) == (RuleKey(KeyKind.POST, "p1"),)
    assert rule_keys(like_event, Job.NOTIFICATIONS) == (
        RuleKey(KeyKind.NOTIFIED_POST, "p1"), RuleKey(KeyKind.RECIPIENT, "bob"))
    followed = follow("bob", "ann", at(0))
    assert RuleKey(KeyKind.RECIPIENT, "ann") not in rule_keys(followed)
    assert rule_keys(followed, Job.NOTIFICATIONS) == (
        RuleKey(KeyKind.RECIPIENT, "ann"), RuleKey(KeyKind.RECIPIENT, "bob"))
    engine = RulesEngine()
    engine.apply(post())
    engine.apply(like_event)
    assert all(key.job is not Job.NOTIFICATIONS for key in engine.states)
    for key, text, kind in ((RuleKey(KeyKind.NOTIFIED_POST, "p1"), "npost:p1",
                             PostNotificationState),
                            (RuleKey(KeyKind.RECIPIENT, "ann"), "recipient:ann",
                             RecipientNotificationState)):
        assert key.text == text and RuleKey.parse(text, Job.NOTIFICATIONS) == key
        assert isinstance(new_state(key), kind) and key.job is Job.NOTIFICATIONS
    state = pickle.loads(pickle.dumps(new_state(RuleKey(KeyKind.NOTIFIED_POST, "p1"))))
    assert apply_event(state, post(), RulesConfig()) == []
