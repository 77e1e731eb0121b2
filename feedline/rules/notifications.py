"""Notification rules: who is told what, grouped and retractable. Pure, no I/O.

A user is notified when someone else likes their post, comments on it, follows them or
mentions them (``@user_id`` in a caption or a comment; ``mentioned_users``). Never for
their own action. Groups, each one row of the recipient's list:

| type    | group key                                        | one per          | actors     |
|---------|--------------------------------------------------|------------------|------------|
| like    | ``like:POST``                                    | post             | likers     |
| comment | ``comment:POST``                                 | post             | commenters |
| follow  | ``follow:YYYY-MM-DD``                            | UTC day of start | followers  |
| mention | ``mention:POST`` / ``mention:POST:COMMENT``      | caption/comment  | its author |

**Keys.** One rule key owns each group, and that key's events suffice to compute it:

* ``npost:POST`` (post_created, post_deleted, like, unlike, comment, comment_deleted) owns
  the post's like and comment groups and its mentions. The recipient of a like is the
  post's author, which only ``post_created`` states (``post_author_id`` is optional in
  the engagement events), so the post keys its groups: a post's notifications exist
  while the post is live (created and not deleted) and all vanish when it is deleted.
* ``recipient:USER`` owns the user's follow groups (follows keyed by followee) and gates
  the mentions of the user (below); every event the user takes part in reaches it.

**Exact counts.** A count is the number of others whose engagement is current: likes by
the same last-writer-wins register per (post, actor) as ``counters`` (so a like counts
once, an unlike undoes only a like that exists, duplicates change nothing), live
comments (a delete wins), current followers (``fanout.Edge``; the day is that of the
follow that started the current following, the followers table's ``followed_at``).
Counting a retraction exactly needs to know whether *that* actor is counted, so each key
keeps one small register per actor (``PostRegisters``, ``FollowerRegisters``): no bounded
summary can answer "does actor X like this post" for 100,000 likers. Those registers are
a map, one entry per actor, of which an event reads or writes a few (its actor's and the
window's): a streaming job is to hold them in keyed map state, never re-serialising them
whole. Everything else a key holds is its summary (``PostSummary``,
``RecipientSummary``), bounded whatever the like count.

**Actors shown, exactly.** Each group keeps a window of its ``window`` newest entries
*ever* (likers by their newest like, comments by time, followers by their newest follow
that day), retracted ones included. The actors shown are the window's entries that are
still present, newest first, at most ``shown_actors``: so after many retractions among
the newest, a group may show fewer actors than it counts — never a wrong one. The window
is a function of the event set (the top ``window`` of a set), so every arrival order, a
replay and the rebuild show the same actors. ``latest_at`` is the time of the newest
entry the group ever had (a retraction takes the actor out, not the group back in time).

**Bounds.** The summary of a post holds two windows, two counts and the caption's
mentions (at most ``max_mentions``), whatever its likes; a recipient's holds one count
and window per day that has follows (bounded per day, growing with the days) and, while
the user is unknown, the held mentions (at most ``group_cap``). A post's first
``post_created`` (and a delete) walks its registers once; every other event costs
O(window). The per-recipient cap (the newest ``group_cap`` groups,
``notification_book.newest_groups``) is applied where a recipient's whole list is: the
stores keep every live group, Redis and the API serve the newest ``group_cap``.

**Modules.** This one holds what is shared and the post rules;
``notification_recipients`` the follow groups and the mention gate; ``notification_book``
the recipients' lists in memory and the keys run in one process (``NotificationEngine``).

Mentions: ``@`` then a user id (1-64 of ``A-Za-z0-9_-``), not preceded by an id
character (so ``a@b`` is not one) and not longer than 64; the first ``max_mentions``
distinct ids of a text count. **Unknown users**: a mention notifies only a known user,
one who appears in some event as an actor, author, follower or followee (feedline has no
user registry; a user exists once they have acted or been followed). A post key cannot
know that, so its mention items are candidates (``is_mention``), sent on to the
mentioned user's ``recipient`` key
(``notification_recipients.apply_mention_candidate``), which every event of that user
also reaches: a known user's key passes mentions on; an unknown one's holds them (the
newest ``group_cap``, as only those could be shown) and releases them when the user
first appears. So the result is the same in any order; it is exact unless more than
``group_cap`` mentions of a not-yet-known id were held and one of the newest was
retracted before the user appeared (an older one is not brought back).
"""

from __future__ import annotations

import re
from bisect import insort
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from feedline.rules.effects import (
    NotificationDelete,
    NotificationEffect,
    NotificationUpsert,
)
from feedline.rules.fanout import Version

LIKE, COMMENT, FOLLOW, MENTION = "like", "comment", "follow", "mention"
NOTIFICATION_TYPES = (LIKE, COMMENT, FOLLOW, MENTION)

_ID_CHARS = "A-Za-z0-9_-"
#: A mention: ``@user_id`` not glued to a preceding id character, at most 64 characters.
MENTION_PATTERN = re.compile(rf"(?<![{_ID_CHARS}])@([{_ID_CHARS}]{{1,64}})(?![{_ID_CHARS}])")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class NotificationParams:
    """The knobs of the notification rules."""

    shown_actors: int = 3
    """Actors an item shows, newest first."""
    window: int = 16
    """Newest entries a group remembers (shown actors come from these)."""
    max_mentions: int = 20
    """Distinct ids of one caption or comment that notify."""
    group_cap: int = 500
    """Groups a recipient sees: the newest ones."""


DEFAULT_PARAMS = NotificationParams()


@dataclass(frozen=True, slots=True)
class Group:
    """One notification group as the recipient sees it."""

    type: str
    post_id: str | None
    count: int
    actors: tuple[str, ...]
    latest_ms: int


#: (recipient_id, group_key): where a group lives.
Slot = tuple[str, str]


def mentioned_users(text: str, limit: int) -> tuple[str, ...]:
    """The first ``limit`` distinct user ids mentioned in ``text``, in order."""
    found: list[str] = []
    for match in MENTION_PATTERN.finditer(text):
        if match[1] not in found:
            found.append(match[1])
            if len(found) == limit:
                break
    return tuple(found)


def like_key(post_id: str) -> str:
    """Group key of a post's likes."""
    return f"like:{post_id}"


def comment_key(post_id: str) -> str:
    """Group key of a post's comments."""
    return f"comment:{post_id}"


def follow_key(day: str) -> str:
    """Group key of the followers of one UTC day (``YYYY-MM-DD``)."""
    return f"follow:{day}"


def mention_key(post_id: str, comment_id: str | None = None) -> str:
    """Item key of a mention in a post's caption, or in one of its comments."""
    return f"mention:{post_id}" if comment_id is None else f"mention:{post_id}:{comment_id}"


def utc_day(ms: int) -> str:
    """The UTC calendar day of an epoch-milliseconds time."""
    return (_EPOCH + timedelta(milliseconds=ms)).date().isoformat()


@dataclass
class Window:
    """The ``size`` newest entries ever offered, one per ident at its newest version."""

    size: int
    entries: list[tuple[Version, str]] = field(default_factory=list)
    """Oldest first."""

    def offer(self, version: Version, ident: str) -> None:
        """Remember ``ident`` at ``version`` if it is among the newest (versions only grow)."""
        for index, (known, other) in enumerate(self.entries):
            if other == ident:
                if version <= known:
                    return
                del self.entries[index]
                break
        if len(self.entries) >= self.size and version <= self.entries[0][0]:
            return
        insort(self.entries, (version, ident))
        if len(self.entries) > self.size:
            del self.entries[0]

    def newest_first(self) -> Iterator[tuple[Version, str]]:
        """Entries, newest first."""
        return reversed(self.entries)

    def newest_ms(self) -> int:
        """Time of the newest entry (the window must not be empty)."""
        return self.entries[-1][0][0]


# --- posts: likes, comments, mentions -------------------------------------------------------


@dataclass
class LikeRegister:
    """One actor's like of the post: last writer wins, plus its newest like."""

    version: Version
    liked: bool
    newest_like: Version | None

    def apply(self, version: Version, like: bool) -> None:
        """Apply a like or unlike (any order, any duplicates)."""
        if version > self.version:
            self.version, self.liked = version, like
        if like and (self.newest_like is None or version > self.newest_like):
            self.newest_like = version


@dataclass
class CommentRecord:
    """One comment: its newest create (time, author, mentions) and whether it was deleted."""

    created: Version | None = None
    actor: str = ""
    mentioned: tuple[str, ...] = ()
    deleted: bool = False

    @property
    def live(self) -> bool:
        """Created and not deleted."""
        return self.created is not None and not self.deleted


@dataclass
class PostRegisters:
    """Per-actor and per-comment registers of one post (a keyed map in a streaming job)."""

    likes: dict[str, LikeRegister] = field(default_factory=dict)
    comments: dict[str, CommentRecord] = field(default_factory=dict)


@dataclass
class PostSummary:
    """The bounded part of a post's notification state."""

    post_id: str
    params: NotificationParams = DEFAULT_PARAMS
    author_id: str | None = None
    created: Version | None = None
    """The earliest create (it names the author, like ``fanout``)."""
    caption_mentions: tuple[str, ...] = ()
    deleted: bool = False
    likes: int = 0
    """Actors currently liking, the author included."""
    live_comments: int = 0
    author_live_comments: int = 0
    like_window: Window = field(default_factory=lambda: Window(DEFAULT_PARAMS.window))
    comment_window: Window = field(default_factory=lambda: Window(DEFAULT_PARAMS.window))
    revision: int = 0

    @property
    def live(self) -> bool:
        """Created and not deleted: its notifications exist."""
        return self.created is not None and not self.deleted


@dataclass
class PostNotificationState:
    """Keyed state of a post's notifications (key ``npost:POST``)."""

    summary: PostSummary
    registers: PostRegisters = field(default_factory=PostRegisters)


def post_state(post_id: str, params: NotificationParams = DEFAULT_PARAMS) -> PostNotificationState:
    """The state of a post before its first event."""
    summary = PostSummary(post_id, params, like_window=Window(params.window),
                          comment_window=Window(params.window))
    return PostNotificationState(summary)


def _post_groups(s: PostSummary, r: PostRegisters) -> dict[Slot, Group]:
    """The post's like and comment groups and caption mentions, as they are now."""
    if not s.live or s.author_id is None or s.created is None:
        return {}
    author, post, shown = s.author_id, s.post_id, s.params.shown_actors
    groups: dict[Slot, Group] = {}
    author_like = r.likes.get(author)
    likes = s.likes - int(author_like is not None and author_like.liked)
    if likes > 0:
        actors = [a for _, a in s.like_window.newest_first() if r.likes[a].liked][:shown]
        groups[(author, like_key(post))] = Group(
            LIKE, post, likes, tuple(actors), s.like_window.newest_ms())
    comments = s.live_comments - s.author_live_comments
    if comments > 0:
        commenters: list[str] = []
        for _, comment_id in s.comment_window.newest_first():
            comment = r.comments[comment_id]
            if comment.live and comment.actor not in commenters:
                commenters.append(comment.actor)
                if len(commenters) == shown:
                    break
        groups[(author, comment_key(post))] = Group(
            COMMENT, post, comments, tuple(commenters), s.comment_window.newest_ms())
    for user in s.caption_mentions:
        groups[(user, mention_key(post))] = Group(MENTION, post, 1, (author,), s.created[0])
    return groups


def _comment_mentions(s: PostSummary, r: PostRegisters, comment_id: str) -> dict[Slot, Group]:
    """The mention items of one comment, as they are now."""
    comment = r.comments.get(comment_id)
    if not s.live or comment is None or comment.created is None or comment.deleted:
        return {}
    key, when = mention_key(s.post_id, comment_id), comment.created[0]
    return {(user, key): Group(MENTION, s.post_id, 1, (comment.actor,), when)
            for user in comment.mentioned if user != comment.actor}


def _all_post_groups(s: PostSummary, r: PostRegisters) -> dict[Slot, Group]:
    groups = _post_groups(s, r)
    if s.live:
        for comment_id in r.comments:
            groups.update(_comment_mentions(s, r, comment_id))
    return groups


def _rederive(s: PostSummary, r: PostRegisters) -> None:
    """Windows and the author's counts from the registers (once the author is known)."""
    author = s.author_id
    s.like_window = Window(s.params.window)
    for actor, like in r.likes.items():
        if actor != author and like.newest_like is not None:
            s.like_window.offer(like.newest_like, actor)
    s.comment_window = Window(s.params.window)
    s.author_live_comments = 0
    for comment_id, comment in r.comments.items():
        if comment.created is None:
            continue
        if comment.actor == author:
            s.author_live_comments += int(comment.live)
        else:
            s.comment_window.offer(comment.created, comment_id)


def apply_post_notification(state: PostNotificationState, event: Any) -> list[NotificationEffect]:
    """Apply one event of a post (upload or engagement); returns the effects, in order."""
    s, r = state.summary, state.registers
    if s.deleted:
        return []  # a deleted post's notifications are gone for good
    kind, version = event.event_type, (int(event.event_time_ms), str(event.event_id))
    if kind == "post_created":
        before = _all_post_groups(s, r)
        if s.created is None or version < s.created:
            s.created, s.author_id = version, event.author_id
            s.caption_mentions = tuple(
                u for u in mentioned_users(event.caption, s.params.max_mentions)
                if u != event.author_id)
            _rederive(s, r)
        return diff_groups(s, before, _all_post_groups(s, r), event)
    if kind == "post_deleted":
        before = _all_post_groups(s, r)
        s.deleted = True
        state.registers = PostRegisters()  # nothing of a deleted post ever shows again
        return diff_groups(s, before, {}, event)
    if kind in ("like", "unlike"):
        before = _post_groups(s, r)
        _apply_like(s, r, event.user_id, version, kind == "like")
        return diff_groups(s, before, _post_groups(s, r), event)
    if kind in ("comment", "comment_deleted"):
        comment_id = event.comment_id
        before = {**_post_groups(s, r), **_comment_mentions(s, r, comment_id)}
        _apply_comment(s, r, event, comment_id, version)
        after = {**_post_groups(s, r), **_comment_mentions(s, r, comment_id)}
        return diff_groups(s, before, after, event)
    raise ValueError(f"{kind} does not concern a post's notifications")


def _apply_like(s: PostSummary, r: PostRegisters, actor: str, version: Version,
                like: bool) -> None:
    register = r.likes.get(actor)
    was = register is not None and register.liked
    if register is None:
        register = r.likes[actor] = LikeRegister(version, like, version if like else None)
    else:
        register.apply(version, like)
    s.likes += int(register.liked) - int(was)
    if s.author_id is not None and actor != s.author_id and register.newest_like is not None:
        s.like_window.offer(register.newest_like, actor)


def _apply_comment(s: PostSummary, r: PostRegisters, event: Any, comment_id: str,
                   version: Version) -> None:
    comment = r.comments.setdefault(comment_id, CommentRecord())
    was_live, was_actor = comment.live, comment.actor
    if event.event_type == "comment":
        if comment.created is None or version > comment.created:
            comment.created, comment.actor = version, event.user_id
            comment.mentioned = mentioned_users(event.text, s.params.max_mentions)
    else:
        comment.deleted = True
    s.live_comments += int(comment.live) - int(was_live)
    author = s.author_id
    if author is None:
        return  # counted by author and windowed once the post's create names the author
    s.author_live_comments += (int(comment.live and comment.actor == author)
                               - int(was_live and was_actor == author))
    if comment.created is not None and comment.actor != author:
        s.comment_window.offer(comment.created, comment_id)


# --- effects -------------------------------------------------------------------------------


class Revisioned(Protocol):
    """A key's summary, counting the effects it emitted."""

    revision: int


def diff_groups(owner: Revisioned, before: dict[Slot, Group], after: dict[Slot, Group],
                event: Any) -> list[NotificationEffect]:
    """The upserts and deletes turning ``before`` into ``after``, in slot order."""
    effects: list[NotificationEffect] = []
    when, event_id = int(event.event_time_ms), str(event.event_id)
    for slot in sorted(before.keys() | after.keys()):
        old, new = before.get(slot), after.get(slot)
        if old == new:
            continue
        owner.revision += 1
        recipient, key = slot
        if new is None:
            assert old is not None
            effects.append(NotificationDelete(recipient, key, old.latest_ms, when, event_id,
                                              owner.revision))
        else:
            effects.append(NotificationUpsert(
                recipient, key, new.type, new.post_id, new.count, new.actors, new.latest_ms,
                None if old is None else old.latest_ms, when, event_id, owner.revision))
    return effects


def is_mention(effect: object) -> bool:
    """A mention item's effect, which a post key emits as a candidate for the gate."""
    return (isinstance(effect, NotificationUpsert | NotificationDelete)
            and effect.group_key.startswith(f"{MENTION}:"))
