"""An independent reference of the notification rules, recomputed from the whole history.

It shares no code with ``feedline.rules``: where the rules keep windows and registers and
update them event by event, this model looks at every event at once and states each
recipient's groups directly (``feedline/rules/notifications.py`` states the rules in
prose; this is that prose as a brute-force computation). Groups are plain tuples
``(type, post_id, count, actors, latest_ms)`` keyed by ``(recipient, group_key)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

RefGroup = tuple[str, str | None, int, tuple[str, ...], int]
_ID = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _v(e: Any) -> tuple[int, str]:
    return (e.event_time_ms, e.event_id)


def scan_mentions(text: str, limit: int) -> list[str]:
    """``@id`` tokens by a character scan: not after an id character, 1-64 id characters."""
    found: list[str] = []
    i = 0
    while i < len(text) and len(found) < limit:
        if text[i] == "@" and (i == 0 or text[i - 1] not in _ID):
            j = i + 1
            while j < len(text) and text[j] in _ID:
                j += 1
            name = text[i + 1:j]
            if 1 <= len(name) <= 64 and name not in found:
                found.append(name)
            i = j
        else:
            i += 1
    return found


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _top(entries: dict[str, tuple[int, str]], window: int) -> list[tuple[tuple[int, str], str]]:
    """The ``window`` newest (version, ident) pairs, newest first."""
    return sorted(((v, i) for i, v in entries.items()), reverse=True)[:window]


def reference_notifications(
    events: Iterable[Any], *, shown: int = 3, window: int = 16, max_mentions: int = 20,
    known_users_only: bool = False,
) -> dict[tuple[str, str], RefGroup]:
    """Every recipient's live groups for a set of events (order and duplicates ignored).

    ``known_users_only``: a mention notifies only a user who appears in some event as an
    actor, author, follower or followee.
    """
    unique = list({e.event_id: e for e in events}.values())
    out: dict[tuple[str, str], RefGroup] = {}
    by_post: dict[str, list[Any]] = defaultdict(list)
    follows: dict[str, list[Any]] = defaultdict(list)
    known: set[str] = set()
    for e in unique:
        if e.event_type in ("follow", "unfollow"):
            follows[e.followee_id].append(e)
            known |= {e.followee_id, e.follower_id}
        else:
            by_post[e.post_id].append(e)
            known.add(e.author_id if e.event_type.startswith("post_") else e.user_id)

    for post, evs in by_post.items():
        if any(e.event_type == "post_deleted" for e in evs):
            continue
        creates = sorted((e for e in evs if e.event_type == "post_created"), key=_v)
        if not creates:
            continue
        author = creates[0].author_id
        # likes: per actor, the newest like/unlike decides; the window ranks by newest like
        liked: dict[str, bool] = {}
        newest_like: dict[str, tuple[int, str]] = {}
        for e in sorted((e for e in evs if e.event_type in ("like", "unlike")), key=_v):
            if e.user_id == author:
                continue
            liked[e.user_id] = e.event_type == "like"
            if e.event_type == "like":
                newest_like[e.user_id] = _v(e)
        count = sum(liked.values())
        if count:
            top = _top(newest_like, window)
            actors = tuple(a for _, a in top if liked[a])[:shown]
            out[(author, f"like:{post}")] = ("like", post, count, actors, top[0][0][0])
        # comments: the newest create of an id gives its time, author and text
        created: dict[str, Any] = {}
        for e in sorted((e for e in evs if e.event_type == "comment"), key=_v):
            created[e.comment_id] = e
        deleted = {e.comment_id for e in evs if e.event_type == "comment_deleted"}
        others = {c: e for c, e in created.items() if e.user_id != author}
        live = [c for c in others if c not in deleted]
        if live:
            top = _top({c: _v(e) for c, e in others.items()}, window)
            commenters: list[str] = []
            for _, c in top:
                if c not in deleted and others[c].user_id not in commenters:
                    commenters.append(others[c].user_id)
            out[(author, f"comment:{post}")] = (
                "comment", post, len(live), tuple(commenters[:shown]), top[0][0][0])
        # mentions
        for user in scan_mentions(creates[0].caption, max_mentions):
            if user != author:
                out[(user, f"mention:{post}")] = (
                    "mention", post, 1, (author,), creates[0].event_time_ms)
        for c, e in created.items():
            if c in deleted:
                continue
            for user in scan_mentions(e.text, max_mentions):
                if user != e.user_id:
                    out[(user, f"mention:{post}:{c}")] = (
                        "mention", post, 1, (e.user_id,), e.event_time_ms)

    for followee, evs in follows.items():
        history: dict[str, list[Any]] = defaultdict(list)
        for e in evs:
            history[e.follower_id].append(e)
        day_of: dict[str, str] = {}
        for follower, fevs in history.items():
            fevs.sort(key=_v)
            if fevs[-1].event_type != "follow":
                continue
            unfollows = [_v(e) for e in fevs if e.event_type == "unfollow"]
            cutoff = unfollows[-1] if unfollows else (-1, "")
            day_of[follower] = _day(min(e.event_time_ms for e in fevs if _v(e) > cutoff))
        for day in sorted(set(day_of.values())):
            newest: dict[str, tuple[int, str]] = {}
            for e in evs:
                if e.event_type == "follow" and _day(e.event_time_ms) == day:
                    newest[e.follower_id] = max(newest.get(e.follower_id, _v(e)), _v(e))
            top = _top(newest, window)
            actors = tuple(f for _, f in top if day_of.get(f) == day)[:shown]
            count = sum(1 for d in day_of.values() if d == day)
            out[(followee, f"follow:{day}")] = ("follow", None, count, actors, top[0][0][0])

    if known_users_only:
        out = {slot: g for slot, g in out.items() if g[0] != "mention" or slot[0] in known}
    return out
