"""Realtime push, the pure parts: which effects are feed events, event ids and resume
points, the order a read hands entries out in, and the SSE frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import RulesConfig
from feedline.stores.push import PushEvent, feed_events, notification_event, queue
from feedline.stores.push_reader import PushMessage, order_entries
from schemas.event_contracts import new_event
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import GroupPayload
from schemas.redis_push import (
    PUSH_WINDOW,
    EntryId,
    entry,
    event_id,
    feed_data,
    parse_event_id,
    resume_after,
)
from serving.sse import frame

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Feed:
    """The fan-out rules, one event at a time, with the push events each one makes."""

    def __init__(self, celebrity_threshold: int = 100) -> None:
        self.engine = RulesEngine(RulesConfig(celebrity_threshold=celebrity_threshold,
                                              follow_merge_limit=50, timeline_cap=100))
        self.tick = 0

    def _at(self) -> datetime:
        self.tick += 1
        return T0 + timedelta(seconds=self.tick)

    def _apply(self, kind: str, **fields: object) -> list[tuple[str, str | None, str | None,
                                                                 str]]:
        effects = self.engine.apply(new_event(kind, event_time=self._at(), **fields))
        return [(e.event, e.user_id, e.author_id, e.data["post_id"])
                for e in feed_events(effects)]

    def follow(self, follower: str, followee: str) -> list:
        return self._apply("follow", follower_id=follower, followee_id=followee)

    def unfollow(self, follower: str, followee: str) -> list:
        return self._apply("unfollow", follower_id=follower, followee_id=followee)

    def post(self, author: str, post_id: str) -> list:
        return self._apply("post_created", author_id=author, post_id=post_id, caption="",
                           media=[{"media_id": "m", "content_type": "image/jpeg",
                                   "uri": "gs://b/m"}])

    def delete(self, author: str, post_id: str) -> list:
        return self._apply("post_deleted", author_id=author, post_id=post_id)


def test_a_new_post_is_a_feed_event_for_each_follower_and_its_delete_a_delete() -> None:
    feed = Feed()
    feed.follow("ann", "bob")
    feed.follow("cid", "bob")
    assert sorted(feed.post("bob", "p1")) == [("feed", "ann", None, "p1"),
                                               ("feed", "cid", None, "p1")]
    assert sorted(feed.delete("bob", "p1")) == [("delete", "ann", None, "p1"),
                                                 ("delete", "cid", None, "p1")]
    assert feed.delete("bob", "p1") == []  # a repeated delete changes nothing


def test_follow_merges_posts_in_and_unfollow_takes_them_out() -> None:
    feed = Feed()
    feed.post("bob", "p1")
    feed.post("bob", "p2")
    assert sorted(feed.follow("ann", "bob")) == [("feed", "ann", None, "p1"),
                                                  ("feed", "ann", None, "p2")]
    assert sorted(feed.unfollow("ann", "bob")) == [("delete", "ann", None, "p1"),
                                                    ("delete", "ann", None, "p2")]


def test_a_celebrity_post_is_one_event_on_the_author_stream() -> None:
    feed = Feed(celebrity_threshold=2)
    for follower in ("ann", "cid", "dan"):
        feed.follow(follower, "star")
    assert feed.post("star", "s1") == [("feed", None, "star", "s1")]
    assert feed.delete("star", "s1") == [("delete", None, "star", "s1")]


def test_crossing_the_celebrity_threshold_moves_posts_without_events() -> None:
    """The posts go from timelines to the outbox (or back): they never leave the feeds."""
    feed = Feed(celebrity_threshold=2)
    feed.follow("ann", "star")
    feed.follow("cid", "star")
    feed.post("star", "s1")
    assert feed.follow("dan", "star") == []  # ann's and cid's s1 moves to the outbox
    assert feed.unfollow("dan", "star") == []  # below the threshold: back to timelines
    assert feed.delete("star", "s1") == [("delete", "ann", None, "s1"),
                                         ("delete", "cid", None, "s1")]


def test_an_effect_without_push_meaning_makes_no_event() -> None:
    feed = Feed()
    assert feed.follow("ann", "bob") == []  # bob has no posts yet
    feed.post("bob", "p1")
    assert feed._apply("like", user_id="ann", post_id="p1", post_author_id="bob") == []


def test_notification_events_carry_the_group_or_its_end() -> None:
    group = GroupPayload("like", "p1", 3, ["c", "b", "a"], 5_000)
    event = notification_event("bob", "like:p1", group)
    assert (event.event, event.user_id) == ("notification", "bob")
    assert event.data == {"group_key": "like:p1", "type": "like", "post_id": "p1",
                          "count": 3, "actors": ["c", "b", "a"], "latest_ms": 5_000}
    gone = notification_event("bob", "follow:2026-11-30", None)
    assert (gone.data["type"], gone.data["count"]) == ("follow", 0)


def test_queue_appends_capped_entries_to_the_right_stream() -> None:
    class Pipe:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def xadd(self, key: str, fields: dict, maxlen: int, approximate: bool) -> None:
            self.calls.append((key, fields, maxlen, approximate))

    keys, pipe = RedisKeys("t"), Pipe()
    events = [PushEvent("feed", feed_data("p1", "bob", 7), user_id="ann"),
              PushEvent("feed", feed_data("s1", "star", 8), author_id="star")]
    assert queue(pipe, keys, events) == 2
    assert [c[0] for c in pipe.calls] == [keys.push("ann"), keys.author_push("star")]
    assert keys.push("ann").endswith("{ann}")  # the recipient's hash tag
    assert all(c[2] == PUSH_WINDOW and c[3] for c in pipe.calls)
    assert pipe.calls[0][1] == entry("feed", feed_data("p1", "bob", 7))


@pytest.mark.parametrize("text", ["", "1", "a-1", "1-", "-1", "1-2-3", "1-2@", "1 -2",
                                  "99999999999999999999999-0", "1-2@@"])
def test_malformed_event_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_event_id(text)


def test_event_ids_round_trip() -> None:
    assert parse_event_id(event_id("17-3", None)) == (EntryId(17, 3), None)
    assert parse_event_id(event_id("17-3", "star")) == (EntryId(17, 3), "star")


def test_resume_is_exact_on_the_source_stream_and_at_the_millisecond_elsewhere() -> None:
    last = parse_event_id("17-3@star")
    assert resume_after(last, "star") == EntryId(17, 3)
    assert resume_after(last, None) == EntryId(16, 2**64 - 1)  # all of ms 17 again
    assert resume_after(parse_event_id("0-5"), "star") == EntryId(0, 0)


def test_a_read_hands_out_oldest_first_and_never_past_a_stream_cut_short() -> None:
    def items(*ids: str) -> list[tuple[str, dict[str, str]]]:
        return [(i, {"e": "feed", "d": "{}"}) for i in ids]

    # The user's stream returned its full count (2): it may hold more after 20-0, so the
    # star's 25-0 waits for the next read, and the star's cursor stays before it.
    entries, cursors = order_entries([(None, items("10-0", "20-0")),
                                      ("star", items("15-0", "25-0"))], count=2)
    assert [(e.raw_id, e.source) for e in entries] == [("10-0", None), ("15-0", "star"),
                                                        ("20-0", None)]
    assert cursors == {None: EntryId(20, 0), "star": EntryId(15, 0)}
    entries, cursors = order_entries([(None, items("10-0")), ("star", items("10-0"))],
                                     count=2)
    assert [(e.raw_id, e.source) for e in entries] == [("10-0", None), ("10-0", "star")]


def test_frames_are_sse_lines_with_rfc3339_times() -> None:
    message = PushMessage("17-0@star", "feed",
                          orjson.dumps(feed_data("s1", "star", 1_764_460_800_123)).decode(),
                          "star")
    text = frame(message).decode()
    assert text.endswith("\n\n")
    lines = text.strip("\n").split("\n")
    assert lines[:2] == ["id: 17-0@star", "event: feed"]
    assert orjson.loads(lines[2].removeprefix("data: ")) == {
        "post_id": "s1", "author_id": "star", "created_at": "2025-11-30T00:00:00.123Z"}


def test_a_resume_is_told_when_entries_after_it_may_be_gone() -> None:
    from feedline.stores.push_reader import lost_after

    trimmed = {"length": 1000, "entries-added": 1500, "recorded-first-entry-id": "50-0"}
    assert lost_after(trimmed, EntryId(40, 0))
    assert not lost_after(trimmed, EntryId(50, 0))  # the oldest kept is the next one
    assert not lost_after(trimmed, EntryId(60, 3))
    whole = {"length": 7, "entries-added": 7, "recorded-first-entry-id": "50-0"}
    assert not lost_after(whole, EntryId(1, 0))  # nothing was ever trimmed
