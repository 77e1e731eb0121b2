"""Read a home feed from Redis.

The timeline is merged with followed celebrities' outboxes, hydrated with post payloads
and counters; deleted posts are left out.

The serving API builds on this; `feedctl feed` uses it to show a feed in the terminal.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import redis

from schemas.redis_hashes import decode_post, decode_post_counters
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys


@dataclass(frozen=True)
class FeedItem:
    """One hydrated post of a feed."""

    post_id: str
    author_id: str
    caption: str
    media: list[dict[str, Any]]
    created_ms: int
    likes: int
    comments: int


def read_feed(client: redis.Redis, keys: RedisKeys, user_id: str, limit: int) -> list[FeedItem]:
    """The newest ``limit`` posts of ``user_id``'s home feed (two Redis round trips)."""
    pipe = client.pipeline(transaction=False)
    pipe.zrevrange(keys.timeline(user_id), 0, limit - 1, withscores=True)
    pipe.smembers(keys.followed_celebrities(user_id))
    own, celebrities = pipe.execute()
    sources = [own]
    if celebrities:
        pipe = client.pipeline(transaction=False)
        for author in sorted(celebrities - {COMPLETE_MEMBER, COMPLETE_MEMBER.encode()}):
            pipe.zrevrange(keys.outbox(_text(author)), 0, limit - 1, withscores=True)
        sources.extend(pipe.execute())
    merged = heapq.merge(
        *[[(-score, _text(member)) for member, score in source] for source in sources]
    )
    ids: list[str] = []
    for _neg, post_id in merged:
        if post_id not in ids:
            ids.append(post_id)
        if len(ids) >= limit:
            break
    pipe = client.pipeline(transaction=False)
    for post_id in ids:
        pipe.hgetall(keys.post(post_id))
        pipe.hgetall(keys.post_counters(post_id))
    replies = pipe.execute()
    items = []
    for post, counters in zip(replies[::2], replies[1::2], strict=True):
        if not post:
            continue  # deleted since it was delivered
        p = decode_post({_text(k): _text(v) for k, v in post.items()})
        likes, comments = decode_post_counters(counters)
        items.append(FeedItem(p.post_id, p.author_id, p.caption, p.media, p.created_ms,
                              likes, comments))
    return items


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
