"""A random workload that exercises every notification rule, with the stores' view of them.

Posts with captions mentioning others, unknown ids and their own authors; likes and
unlikes (the author's own too), comments with mentions and their deletes, follows and
unfollows over three UTC days, post deletes, redelivered events, event times out of
order. ``heavy_recipient`` adds one author with more groups than the per-recipient cap,
then deletes some of the newest, so a full Redis list must be refilled from CQL.

``stored_groups`` and ``cached_groups`` read what the writers left, in the reference's
shape (``tests.support.notifications_reference``); ``store_differences`` compares.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from feedline.rules.notification_book import newest_groups
from feedline.rules.notifications import Group
from feedline.workload import ProducedEvent
from jobs import flink_rest
from schemas.cql_statements import dt_to_ms
from schemas.event_contracts import new_event
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import NOTIFICATION_CAP, decode_group
from tests.support.notifications_reference import RefGroup

#: Two hours before midnight UTC: activity runs over three UTC days.
BASE = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)
MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]


class NotificationWorkload:
    """Random events of ``users`` users (seeded: the same seed gives the same events)."""

    def __init__(self, seed: int, users: int = 30, posts: int = 90, tag: str = "w") -> None:
        self.rng = random.Random(seed)
        self.users = [f"{tag}u{i:03d}" for i in range(users)]
        self.ghosts = [f"{tag}ghost{i}" for i in range(3)]  # mentioned, never acting
        self.posts = posts
        self.tag = tag
        self.serial = 0
        self.sent: list[ProducedEvent] = []

    def _event(self, kind: str, role: str, key: str, **fields: Any) -> ProducedEvent:
        self.serial += 1
        when = BASE + timedelta(seconds=self.rng.randint(0, 50 * 3600))  # out of order
        produced = ProducedEvent(role, key, new_event(
            kind, event_id=f"{self.tag}e{self.serial:07d}", event_time=when, **fields))
        self.sent.append(produced)
        return produced

    def _text(self, author: str) -> str:
        rng = self.rng
        words = ["nice", "look"]
        for _ in range(rng.randint(0, 3)):
            words.append("@" + rng.choice([*self.users, *self.ghosts, author]))
        if rng.random() < 0.1:
            words.append(f"mail me a@{rng.choice(self.users)}")  # not a mention
        rng.shuffle(words)
        return " ".join(words)

    def follows(self, count: int = 250) -> Iterator[ProducedEvent]:
        """Follows and unfollows (some repeated, some undone) among the users."""
        for _ in range(count):
            follower, followee = self.rng.sample(self.users, 2)
            kind = "unfollow" if self.rng.random() < 0.25 else "follow"
            yield self._event(kind, "follows", followee, follower_id=follower,
                              followee_id=followee)

    def activity(self) -> Iterator[ProducedEvent]:
        """Posts and their likes, comments, deletes."""
        rng = self.rng
        for n in range(self.posts):
            author = rng.choice(self.users)
            post = f"{self.tag}p{n:04d}"
            yield self._event("post_created", "uploads", author, author_id=author,
                              post_id=post, caption=self._text(author), media=MEDIA)
            for _ in range(rng.randint(0, 8)):
                user = rng.choice([*self.users, author])
                kind = "unlike" if rng.random() < 0.3 else "like"
                yield self._event(kind, "engagements", post, user_id=user, post_id=post,
                                  post_author_id=author)
            for c in range(rng.randint(0, 4)):
                user = rng.choice([*self.users, author])
                comment = f"c{c}"
                yield self._event("comment", "engagements", post, user_id=user, post_id=post,
                                  comment_id=comment, text=self._text(user),
                                  post_author_id=author)
                if rng.random() < 0.25:
                    yield self._event("comment_deleted", "engagements", post, user_id=user,
                                      post_id=post, comment_id=comment, post_author_id=author)
            if rng.random() < 0.08:
                yield self._event("post_deleted", "uploads", author, author_id=author,
                                  post_id=post)

    def heavy_recipient(self, groups: int, deleted: int) -> Iterator[ProducedEvent]:
        """One author with ``groups`` liked posts, then ``deleted`` of the newest deleted."""
        star, fan = f"{self.tag}star", self.users[0]
        posts = []
        for n in range(groups):
            post = f"{self.tag}s{n:04d}"
            yield self._event("post_created", "uploads", star, author_id=star, post_id=post,
                              caption="", media=MEDIA)
            like = self._event("like", "engagements", post, user_id=fan, post_id=post)
            posts.append((like.event.event_time_ms, post))
            yield like
        for _, post in sorted(posts, reverse=True)[:deleted]:
            yield self._event("post_deleted", "uploads", star, author_id=star, post_id=post)

    def redelivered(self, share: float = 0.03) -> list[ProducedEvent]:
        """A sample of the events sent so far, to send again (same event ids)."""
        return [p for p in self.sent if self.rng.random() < share]


def as_ref(group: Group) -> RefGroup:
    """A rules ``Group`` in the reference's tuple shape."""
    return (group.type, group.post_id, group.count, tuple(group.actors), group.latest_ms)


def stored_groups(session: Any) -> tuple[dict[tuple[str, str], RefGroup], list[str]]:
    """Every row of ``notification_groups`` by (recipient, group key), and the group keys
    found in more than one row (a move that left its old row behind)."""
    out: dict[tuple[str, str], RefGroup] = {}
    twice = []
    rows = session.execute("SELECT recipient_id, latest_at, group_key, type, post_id, count, "
                           "actors FROM notification_groups")
    for row in rows:
        slot = (row.recipient_id, row.group_key)
        if slot in out:
            twice.append(f"{slot} at {dt_to_ms(row.latest_at)}")
        out[slot] = (row.type, row.post_id, int(row.count), tuple(row.actors or ()),
                     dt_to_ms(row.latest_at))
    return out, twice


def cached_groups(client: redis.Redis, keys: RedisKeys,
                  recipients: set[str]) -> dict[str, list[tuple[str, RefGroup]]]:
    """Each recipient's cached list (ZSET order, newest first) with its payloads; a
    recipient without a ZSET maps to [] when the HASH is absent too."""
    out = {}
    for user in sorted(recipients):
        members = client.zrange(keys.notifications(user), "+inf", "-inf", byscore=True,
                                desc=True, withscores=True)
        payloads = client.hgetall(keys.notification_groups(user))
        listed = []
        for member, score in members:  # type: ignore[union-attr]
            raw = payloads.pop(member, None)  # type: ignore[union-attr]
            if raw is None:
                listed.append((member, ("missing payload", None, 0, (), int(score))))
                continue
            g = decode_group(raw)
            if g.latest_ms != int(score):
                listed.append((member, ("score differs", None, 0, (), int(score))))
                continue
            listed.append((member, (g.type, g.post_id, g.count, tuple(g.actors), g.latest_ms)))
        for member in payloads:  # type: ignore[union-attr]
            listed.append((member, ("payload without member", None, 0, (), 0)))
        out[user] = listed
    return out


def expected_cache(reference: dict[tuple[str, str], RefGroup],
                   cap: int) -> dict[str, list[tuple[str, RefGroup]]]:
    """Each recipient's newest ``cap`` groups, newest first, in the reference's shape."""
    per: dict[str, dict[str, Group]] = {}
    for (user, key), (kind, post, count, actors, latest) in reference.items():
        per.setdefault(user, {})[key] = Group(kind, post, count, actors, latest)
    return {user: [(key, as_ref(g)) for key, g in newest_groups(groups, cap)]
            for user, groups in per.items()}


def store_differences(session: Any, client: redis.Redis, keys: RedisKeys,
                      expected: dict[tuple[str, str], RefGroup],
                      cap: int = NOTIFICATION_CAP) -> list[str]:
    """What the stores hold that differs from the reference: every CQL row, every list."""
    stored, twice = stored_groups(session)
    diff = [f"CQL row left behind: {t}" for t in twice]
    for slot in sorted(stored.keys() | expected.keys()):
        if stored.get(slot) != expected.get(slot):
            diff.append(f"CQL {slot}: {stored.get(slot)} != expected {expected.get(slot)}")
    cache = expected_cache(expected, cap)
    recipients = {r for r, _ in stored} | {r for r, _ in expected}
    for user, listed in cached_groups(client, keys, recipients).items():
        want = cache.get(user, [])
        if listed != want:
            wrong = [m for m in listed if m not in want] + [m for m in want if m not in listed]
            diff.append(f"Redis {user}: {len(listed)} cached, {len(want)} expected, "
                        f"differing {wrong[:3]}")
    return diff


def python_errors(rest_url: str, job_id: str) -> list[str]:
    """The last line of each Python traceback in a job's exception history: a failure of
    the job's own code (a restart for want of a slot on a busy cluster is not one)."""
    history = flink_rest.call(rest_url, "GET", f"/jobs/{job_id}/exceptions")
    found = []
    for entry in (history or {}).get("exceptionHistory", {}).get("entries", []):
        trace = entry.get("stacktrace", "")
        if "Traceback" in trace:
            tail = trace[trace.index("Traceback"):].split("\n\tat ")[0].strip()
            found.append(tail.splitlines()[-1])
    return found
