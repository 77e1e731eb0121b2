"""The serving cache's read side: one Lua call per feed page, plus guarded repairs.

``page`` runs one script (``lua/page.lua``, whose header documents its KEYS and ARGV) that,
inside Redis, reads the home timeline after a cursor, merges the outboxes of the
celebrities the reader follows, and hydrates each post with its hash and counters — one
round trip for the common case. Its ``PageStatus`` tells the caller when Redis cannot
answer alone. Whether a set holds its whole listing follows ``schemas.redis_sets``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from redis.asyncio import Redis

from feedline.rules.effects import MediaRef
from feedline.stores.feed_items import Position, PostView
from feedline.stores.lua import source
from feedline.stores.request_guards import RateLimited, RateWindow
from schemas.redis_hashes import (
    POST_COUNTER_FIELDS,
    USER_COUNTER_FIELDS,
    decode_media,
    decode_post,
    decode_user_counters,
)
from schemas.redis_keys import RedisKeys
from schemas.redis_sets import FOLLOWED_CELEBRITIES, OUTBOX, TIMELINE


class PageStatus(StrEnum):
    """What the page script found (its first reply element)."""

    END = "end"
    """The page holds everything that follows the cursor."""
    MORE = "more"
    """The page is full; more follows."""
    CONTINUE = "continue"
    """A set was cut short: call again after ``CachePage.last``."""
    DEEP = "deep"
    """A set not whole ran out: the rest is only in the CQL store."""
    MISS = "miss"
    """No timeline cached."""
    CELEBRITIES_MISS = "celebrities_miss"
    """The followed-celebrity set is not marked complete."""
    OUTBOX_MISS = "outbox_miss"
    """Some followed celebrities' outboxes are not cached (``CachePage.absent``)."""
    LIMITED = "limited"
    """Over the rate limit (raised as ``RateLimited``, never returned)."""


@dataclass(frozen=True, slots=True)
class CachePage:
    """What the page script found (``status``: see ``PageStatus``).

    ``entries`` hold a ``PostView`` per hydrated post and a bare ``Position`` per post
    without a hash, in feed order.
    """

    status: PageStatus
    entries: tuple[PostView | Position, ...] = ()
    last: Position | None = None
    absent: tuple[str, ...] = ()


def page_call(k: RedisKeys, user_id: str, args: list[Any],
              rate: RateWindow | None) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV a page script (single node or cluster) starts with.

    KEYS: the reader's timeline, followed celebrities and, with ``rate``, the rate window's
    keys; ARGV: ``args``, the rate window's arguments (three blanks without one), then the
    followed-celebrity set's completeness marker.
    """
    keys = [TIMELINE.key(k, user_id), FOLLOWED_CELEBRITIES.key(k, user_id)]
    if rate is None:
        args = [*args, "", "", ""]
    else:
        keys.extend(rate.keys)
        args = [*args, *rate.args()]
    return keys, [*args, FOLLOWED_CELEBRITIES.marker]


def settled_page(reply: Sequence[Any], rate: RateWindow | None) -> CachePage | None:
    """The page a script's reply settles at once, else None (it holds entries to read).

    A miss gives its ``CachePage``; over the rate limit, ``RateLimited`` is raised.
    """
    status = reply[0]  # the cluster's head script has statuses of its own ("window")
    if status == PageStatus.LIMITED:
        assert rate is not None
        raise RateLimited(rate.decision(False, int(reply[1]), int(reply[2])))
    if status in (PageStatus.MISS, PageStatus.CELEBRITIES_MISS):
        return CachePage(PageStatus(status))
    return None


class FeedCache:
    """Feed reads and repairs on one key prefix (async client, ``decode_responses=True``)."""

    def __init__(self, client: Redis, keys: RedisKeys, *, timeline_cap: int) -> None:
        self.redis = client
        self.keys = keys
        self.cap = timeline_cap
        self._page = client.register_script(source("page.lua"))
        self._repair = client.register_script(source("repair.lua"))
        self._repair_outbox = client.register_script(source("repair_outbox.lua"))

    async def page(self, user_id: str, after: Position | None, limit: int, *,
                   fetch: int, lenient_outboxes: bool = False,
                   rate: RateWindow | None = None) -> CachePage:
        """One feed page from Redis; see ``CachePage`` for what can come back.

        With ``rate``, the request is first counted against the reader's rate limit in the
        same call; over it, ``RateLimited`` is raised and nothing is read.
        """
        k = self.keys
        keys, args = page_call(k, user_id, [
            k.outbox(""), k.post(""), k.post_counters(""), limit, fetch, self.cap,
            "" if after is None else after.created_ms, "" if after is None else after.post_id,
            "1" if lenient_outboxes else "0", k.user_counters("")], rate)
        args.append(OUTBOX.counter_field)
        reply = await self._page(keys=keys, args=args)
        if (settled := settled_page(reply, rate)) is not None:
            return settled
        status = PageStatus(reply[0])
        if status is PageStatus.OUTBOX_MISS:
            return CachePage(status, absent=tuple(reply[1]))
        last = Position(int(reply[1]), reply[2]) if reply[2] else None
        entries: list[PostView | Position] = []
        for item in reply[3:]:
            if len(item) == 2:
                entries.append(Position(int(item[1]), item[0]))
            else:
                post_id, created_ms, author_id, caption, media, likes, comments = item
                entries.append(PostView(post_id, author_id, caption, _media(media),
                                        int(created_ms), int(likes), int(comments)))
        return CachePage(status, tuple(entries), last)

    async def repair(self, user_id: str, timeline: Sequence[Position],
                     celebrities: Sequence[str]) -> bool:
        """Cache a timeline read from the CQL store, and complete the followed-celebrity set.

        No timeline is written where one was cached meanwhile (True when it was); an
        empty ``timeline`` only completes the set.
        """
        newest = timeline[: self.cap] if TIMELINE.capped else timeline
        args: list[Any] = [self.cap, len(newest)]
        for p in newest:
            args.extend((p.created_ms, p.post_id))
        args.append(FOLLOWED_CELEBRITIES.marker)
        args.extend(celebrities)
        k = self.keys
        wrote = await self._repair(
            keys=[TIMELINE.key(k, user_id), FOLLOWED_CELEBRITIES.key(k, user_id)], args=args)
        return bool(wrote)

    async def repair_outbox(self, author_id: str, posts: Sequence[Position],
                            celebrities: Sequence[str], read_at_us: int) -> bool:
        """Cache a celebrity's outbox read from the CQL store (guarded like ``repair``).

        ``celebrities``, read from the CQL store by a read that began at ``read_at_us``,
        complete the cached celebrities set first, except members a writer wrote since
        (``lua/repair_outbox.lua``).
        """
        if not posts and not celebrities:
            return False
        args: list[Any] = [self.cap, author_id, read_at_us, len(celebrities), *celebrities]
        for p in posts[: self.cap] if OUTBOX.capped else posts:
            args.extend((p.created_ms, p.post_id))
        k = self.keys
        every = k.celebrities()
        return bool(await self._repair_outbox(
            keys=[OUTBOX.key(k, author_id), every, k.versions(every)], args=args))

    async def post_views(self, post_ids: Sequence[str]) -> dict[str, PostView]:
        """Cached posts among ``post_ids`` with their counters (one pipelined round trip)."""
        if not post_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for post_id in post_ids:
            pipe.hgetall(self.keys.post(post_id))
            pipe.hmget(self.keys.post_counters(post_id), list(POST_COUNTER_FIELDS))
        replies = await pipe.execute()
        views = {}
        for post_id, post, counts in zip(post_ids, replies[::2], replies[1::2], strict=True):
            if post:
                views[post_id] = view_from_hash(post, counts[0], counts[1])
        return views

    async def user_counts(self, user_id: str) -> dict[str, int] | None:
        """The user's counters hash, or None when it is not cached."""
        pending = cast(Awaitable[dict[str, str]],
                       self.redis.hgetall(self.keys.user_counters(user_id)))
        found = await pending
        if not found:
            return None
        counts = decode_user_counters(found)
        return {name: counts.get(name, 0) for name in USER_COUNTER_FIELDS}

    async def ping(self) -> bool:
        """PING answered."""
        return bool(await self.redis.ping())


def _refs(media: list[dict[str, Any]]) -> tuple[MediaRef, ...]:
    return tuple([MediaRef.from_json(m) for m in media])


def _media(text: str) -> tuple[MediaRef, ...]:
    return _refs(decode_media(text))


def view_from_hash(post: dict[str, str], likes: str | None, comments: str | None) -> PostView:
    """A ``PostView`` from a post hash (``schemas.redis_hashes``) and counter values."""
    decoded = decode_post(post)
    return PostView(decoded.post_id, decoded.author_id, decoded.caption, _refs(decoded.media),
                    decoded.created_ms, int(likes or 0), int(comments or 0))
