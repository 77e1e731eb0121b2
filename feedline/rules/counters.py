"""Counter rules: likes, comments, followers, following, posts. Pure, no I/O.

Keyed state holds what is needed to count exactly and to stay idempotent: a
last-writer-wins register per (post, user) like, a tombstone per comment and post, and
the follow registers of ``feedline.rules.fanout.Edge``. So a duplicate, a replay or any
arrival order gives the same numbers, and sinks write absolute values (never increments).

* a like counts once per user; an unlike undoes only a like that exists (an unlike with
  no like before it, or a like older than the newest unlike, leaves the count alone);
* a comment counts until it is deleted (a delete arriving first still wins);
* followers / following count current follow edges; posts count created, undeleted posts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from feedline.rules.effects import Effect, PostCountersSet, UserCounterSet
from feedline.rules.fanout import Edge, Version


@dataclass
class LikeRegister:
    """Last-writer-wins: liked or not, decided by the newest event."""

    version: Version
    liked: bool


@dataclass
class CommentState:
    """A comment counts while created and not deleted."""

    created: bool = False
    deleted: bool = False


@dataclass
class PostEngagementState:
    """Keyed state of the counters job for one post."""

    post_id: str
    likes: dict[str, LikeRegister] = field(default_factory=dict)
    comments: dict[str, CommentState] = field(default_factory=dict)

    def counts(self) -> tuple[int, int]:
        """(likes, comments) now."""
        likes = sum(1 for r in self.likes.values() if r.liked)
        comments = sum(1 for c in self.comments.values() if c.created and not c.deleted)
        return likes, comments


def apply_engagement(
    state: PostEngagementState,
    *,
    event_type: str,
    user_id: str,
    version: Version,
    comment_id: str | None = None,
) -> list[Effect]:
    """Apply like / unlike / comment / comment_deleted; emits the counts if they changed."""
    before = state.counts()
    if event_type in ("like", "unlike"):
        current = state.likes.get(user_id)
        if current is None or version > current.version:
            state.likes[user_id] = LikeRegister(version, event_type == "like")
    elif event_type in ("comment", "comment_deleted"):
        if comment_id is None:
            raise ValueError(f"{event_type} needs a comment_id")
        comment = state.comments.setdefault(comment_id, CommentState())
        if event_type == "comment":
            comment.created = True
        else:
            comment.deleted = True
    else:
        raise ValueError(f"not an engagement event: {event_type}")
    after = state.counts()
    if after == before:
        return []
    return [PostCountersSet(state.post_id, *after)]


@dataclass
class UserCounterState:
    """Keyed state of the counters job for one user."""

    user_id: str
    followers: dict[str, Edge] = field(default_factory=dict)
    following: dict[str, Edge] = field(default_factory=dict)
    posts: dict[str, CommentState] = field(default_factory=dict)
    _tally: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)
    """``counts()`` kept up to date by ``apply_user_event``; None until first asked (a state
    pickled before this field existed reads the class default and recounts once)."""

    def counts(self) -> dict[str, int]:
        """followers, following and posts now (O(1) once counted)."""
        if self._tally is None:
            self._tally = self.recount()
        return dict(self._tally)

    def recount(self) -> dict[str, int]:
        """followers, following and posts counted from the registers."""
        return {
            "followers": sum(1 for e in self.followers.values() if e.following),
            "following": sum(1 for e in self.following.values() if e.following),
            "posts": sum(1 for p in self.posts.values() if p.created and not p.deleted),
        }


def apply_user_event(
    state: UserCounterState,
    *,
    relation: str,
    other_id: str,
    version: Version,
    positive: bool,
) -> list[Effect]:
    """Apply one event seen from this user's side; emits the counters that changed.

    ``relation`` is ``followed_by`` (someone follows / unfollows this user),
    ``follows`` (this user follows / unfollows ``other_id``) or ``post`` (this user
    created / deleted post ``other_id``); ``positive`` is follow or create.
    """
    before = state.counts()
    if relation == "followed_by":
        edge = state.followers.setdefault(other_id, Edge())
        name, was = "followers", edge.following
        edge.apply(version, positive)
        now = edge.following
    elif relation == "follows":
        edge = state.following.setdefault(other_id, Edge())
        name, was = "following", edge.following
        edge.apply(version, positive)
        now = edge.following
    elif relation == "post":
        post = state.posts.setdefault(other_id, CommentState())
        name, was = "posts", post.created and not post.deleted
        if positive:
            post.created = True
        else:
            post.deleted = True
        now = post.created and not post.deleted
    else:
        raise ValueError(f"unknown relation {relation!r}")
    # Only the touched register can change a count: adjust it instead of recounting.
    after = dict(before)
    after[name] += int(now) - int(was)
    state._tally = dict(after)
    return [
        UserCounterSet(state.user_id, name, value)
        for name, value in after.items()
        if before[name] != value
    ]
