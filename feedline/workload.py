"""A deterministic synthetic workload: a power-law social graph, posts and engagements.

The same seed always gives the same events (ids, times, order), so tests and
benchmarks can compute the reference state from exactly what was produced.

* Followers per user follow a Pareto law: most users have a few dozen, a few have
  thousands (the standard workload: 10,000 users, ~750,000 follow edges).
* Authors post with probability weighted by their own activity (also heavy-tailed).
* Each post draws likes and comments from its author's followers; a small share of
  likes are undone, comments deleted and posts deleted, so every rule is exercised.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.event_contracts import new_event

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
CONTENT_TYPES = ("image/jpeg", "image/png", "video/mp4")


def described(n: int, content_type: str, uri: str) -> dict[str, Any]:
    """What the media worker found, as the API puts it in the event, for every other post.

    Derived from the post's number (the random draws stay as they were): the odd posts'
    entries carry no metadata, like those of a ``post_created`` version 1 event.
    """
    if n % 2:
        return {}
    width, height = 1200 + 40 * (n % 10), 900 + 30 * (n % 7)
    found: dict[str, Any] = {"width": width, "height": height,
                             "placeholder": f"#{(n * 2654435761) & 0xFFFFFF:06x}"}
    if content_type.startswith("video/"):
        found["duration_ms"] = 1000 * (5 + n % 55)
    else:
        found["renditions"] = [
            {"uri": f"{uri}/w{side}.jpg", "width": side, "height": round(height * side / width),
             "content_type": "image/jpeg"} for side in (1080, 320)]
    return found


@dataclass(frozen=True)
class WorkloadSpec:
    """Size and shape of a workload."""

    users: int = 10_000
    posts: int = 5_000
    mean_followers: float = 75.0
    """Target mean in-degree (edges ~ users * mean_followers)."""
    max_followers: int = 5_000
    pareto_alpha: float = 1.6
    likes_per_post: float = 6.0
    comments_per_post: float = 1.5
    unlike_share: float = 0.1
    comment_delete_share: float = 0.1
    post_delete_share: float = 0.02
    unfollow_share: float = 0.01
    seed: int = 42


@dataclass(frozen=True)
class ProducedEvent:
    """An event with the topic role it belongs to and its partition key."""

    role: str
    key: str
    event: Any


def user_id(index: int) -> str:
    """The id of user ``index``."""
    return f"u{index:05d}"


def follower_counts(spec: WorkloadSpec, rng: random.Random) -> list[int]:
    """A heavy-tailed in-degree per user, scaled to the target mean."""
    raw = [rng.paretovariate(spec.pareto_alpha) for _ in range(spec.users)]
    scale = spec.mean_followers / (sum(raw) / len(raw))
    cap = min(spec.max_followers, spec.users - 1)
    return [max(1, min(cap, round(r * scale))) for r in raw]


class Workload:
    """Generates the events of one spec, in event-time order."""

    def __init__(self, spec: WorkloadSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)  # noqa: S311 (deterministic test data)
        self.clock = EPOCH
        self.serial = 0
        self.followers: dict[str, list[str]] = {}

    def _tick(self, ms: int = 1) -> datetime:
        self.clock += timedelta(milliseconds=ms)
        return self.clock

    def _event(self, kind: str, role: str, key: str, **fields: Any) -> ProducedEvent:
        self.serial += 1
        event_id = f"wl{self.spec.seed:x}e{self.serial:09d}"
        return ProducedEvent(role, key,
                             new_event(kind, event_id=event_id, event_time=self._tick(), **fields))

    def graph(self) -> Iterator[ProducedEvent]:
        """Follow events building the social graph (and a few unfollows)."""
        spec, rng = self.spec, self.rng
        users = [user_id(i) for i in range(spec.users)]
        for followee, count in zip(users, follower_counts(spec, rng), strict=True):
            fans = rng.sample(users, min(count + 1, len(users)))
            fans = [f for f in fans if f != followee][:count]
            self.followers[followee] = fans
            for fan in fans:
                yield self._event("follow", "follows", followee,
                                  follower_id=fan, followee_id=followee)
        for followee, fans in self.followers.items():
            for fan in fans:
                if rng.random() < spec.unfollow_share:
                    yield self._event("unfollow", "follows", followee,
                                      follower_id=fan, followee_id=followee)

    def activity(self) -> Iterator[ProducedEvent]:
        """Posts with their likes, comments and deletions, interleaved in time."""
        spec, rng = self.spec, self.rng
        users = [user_id(i) for i in range(spec.users)]
        weights = [rng.paretovariate(1.2) for _ in users]
        authors = rng.choices(users, weights=weights, k=spec.posts)
        for n, author in enumerate(authors):
            self._tick(rng.randint(5_000, 90_000))  # posts arrive seconds to minutes apart
            post_id = f"p{spec.seed:x}x{n:07d}"
            media = [{
                "media_id": f"m{spec.seed:x}x{n:07d}",
                "content_type": rng.choice(CONTENT_TYPES),
                "uri": f"gs://feedline-media/media/{author}/m{n:07d}",
            }]
            media[0].update(described(n, media[0]["content_type"], media[0]["uri"]))
            yield self._event("post_created", "uploads", author, author_id=author,
                              post_id=post_id, caption=f"post {n} by {author}", media=media)
            audience = self.followers.get(author) or users[:1]
            for _ in range(self._count(spec.likes_per_post)):
                fan = rng.choice(audience)
                yield self._event("like", "engagements", post_id, user_id=fan, post_id=post_id,
                                  post_author_id=author)
                if rng.random() < spec.unlike_share:
                    yield self._event("unlike", "engagements", post_id, user_id=fan,
                                      post_id=post_id, post_author_id=author)
            for c in range(self._count(spec.comments_per_post)):
                fan = rng.choice(audience)
                comment_id = f"c{n:07d}x{c}"
                yield self._event("comment", "engagements", post_id, user_id=fan,
                                  post_id=post_id, comment_id=comment_id,
                                  text=f"comment {c}", post_author_id=author)
                if rng.random() < spec.comment_delete_share:
                    yield self._event("comment_deleted", "engagements", post_id, user_id=fan,
                                      post_id=post_id, comment_id=comment_id,
                                      post_author_id=author)
            if rng.random() < spec.post_delete_share:
                yield self._event("post_deleted", "uploads", author, author_id=author,
                                  post_id=post_id)

    def _count(self, mean: float) -> int:
        # Geometric-ish spread around the mean, without numpy.
        return int(self.rng.expovariate(1 / mean)) if mean > 0 else 0

    def events(self) -> Iterator[ProducedEvent]:
        """The graph first, then the activity."""
        yield from self.graph()
        yield from self.activity()
