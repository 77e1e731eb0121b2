"""Read posts, timelines, profiles, counters and the follow graph from the CQL store.

The API's system-of-record reads through a ``CqlClient``: every statement is prepared
once; every call is asynchronous and raises ``StoreUnavailable`` when the store cannot
answer. Keyset pages use the multi-column slice ``(created_at, post_id) < (?, ?)``,
which follows the tables' clustering order ``(created_at DESC, post_id DESC)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from feedline.rules.effects import MediaRef, Rendition
from feedline.stores.cql_client import CqlClient
from feedline.stores.feed_items import Position, PostView
from schemas.cql_statements import READS, dt_to_ms, ms_to_dt


@dataclass(frozen=True, slots=True)
class StoredPost:
    """A row of the posts table (``deleted`` posts keep a tombstone row)."""

    post_id: str
    author_id: str
    caption: str
    media: tuple[MediaRef, ...]
    created_ms: int
    deleted: bool

    def view(self, likes: int = 0, comments: int = 0) -> PostView:
        """The post hydrated with its counters."""
        return PostView(self.post_id, self.author_id, self.caption, self.media,
                        self.created_ms, likes, comments)


class PostStore:
    """Asynchronous reads of one keyspace."""

    def __init__(self, client: CqlClient, *, celebrity_cache_s: float = 5.0) -> None:
        self.client = client
        self.celebrity_cache_s = celebrity_cache_s
        self._celebrities: tuple[float, frozenset[str]] | None = None

    async def _rows(self, name: str, *params: Any) -> list[Any]:
        return await self.client.execute(READS[name], params)

    async def ping(self) -> str:
        """The server's release version (a cheap round trip to a coordinator)."""
        rows = await self._rows("ping")
        return str(rows[0].release_version) if rows else "?"

    # --- listings -------------------------------------------------------------------------

    async def _page(self, table: str, owner: str, after: Position | None,
                    limit: int) -> list[Position]:
        if after is None:
            rows = await self._rows(f"{table}_first", owner, limit)
        else:
            rows = await self._rows(f"{table}_after", owner, ms_to_dt(after.created_ms),
                                    after.post_id, limit)
        return [Position(dt_to_ms(r.created_at), r.post_id) for r in rows]

    async def timeline_page(self, user_id: str, after: Position | None,
                            limit: int) -> list[Position]:
        """Up to ``limit`` entries of the home timeline after ``after``, newest first."""
        return await self._page("timeline", user_id, after, limit)

    async def user_posts_page(self, author_id: str, after: Position | None,
                              limit: int) -> list[Position]:
        """Up to ``limit`` of the author's posts after ``after``, newest first."""
        return await self._page("user_posts", author_id, after, limit)

    # --- posts and counters ---------------------------------------------------------------

    async def post(self, post_id: str) -> StoredPost | None:
        """The row of one post (deleted ones included), or None when there is none."""
        rows = await self._rows("post", post_id)
        return _stored(rows[0]) if rows and rows[0].author_id is not None else None

    async def post_views(self, post_ids: Sequence[str]) -> dict[str, PostView]:
        """Live posts among ``post_ids``, hydrated with counters (deleted ones left out)."""
        if not post_ids:
            return {}
        requests: list[tuple[str, Sequence[Any]]] = []
        for post_id in post_ids:
            requests.append((READS["post"], (post_id,)))
            requests.append((READS["post_counters"], (post_id,)))
        replies = await self.client.execute_many(requests)
        views: dict[str, PostView] = {}
        for post_id, post_rows, counter_rows in zip(post_ids, replies[::2], replies[1::2],
                                                    strict=True):
            if not post_rows or post_rows[0].author_id is None or post_rows[0].deleted:
                continue
            counts = counter_rows[0] if counter_rows else None
            views[post_id] = _stored(post_rows[0]).view(
                (counts.likes or 0) if counts else 0, (counts.comments or 0) if counts else 0)
        return views

    async def user_counts(self, user_id: str) -> dict[str, int]:
        """followers, following and posts of a user (zeros when unknown)."""
        rows = await self._rows("user_counters", user_id)
        row = rows[0] if rows else None
        return {name: int(getattr(row, name) or 0) if row else 0
                for name in ("followers", "following", "posts")}

    # --- follow graph ---------------------------------------------------------------------

    async def following(self, user_id: str) -> list[str]:
        """Everyone ``user_id`` follows."""
        return [r.followee_id for r in await self._rows("followees", user_id)]

    async def celebrities(self) -> frozenset[str]:
        """Authors above the celebrity threshold (a small table, cached briefly)."""
        cached = self._celebrities
        if cached is not None and time.monotonic() - cached[0] < self.celebrity_cache_s:
            return cached[1]
        found = frozenset(r.author_id for r in await self._rows("celebrities"))
        self._celebrities = (time.monotonic(), found)
        return found

    async def followed_celebrities(self, user_id: str) -> list[str]:
        """Celebrities ``user_id`` follows: the ``following`` table ∩ ``celebrities``."""
        followees, celebrities = await asyncio.gather(self.following(user_id),
                                                      self.celebrities())
        return sorted(set(followees) & celebrities)


def media_of(value: Any) -> MediaRef:
    """A ``media_ref`` value read back (``schemas.cql_statements.media_values`` wrote it)."""
    renditions = tuple(Rendition(r.uri, r.width, r.height, r.content_type)
                       for r in getattr(value, "renditions", None) or ())
    return MediaRef(value.media_id, value.content_type, value.uri,
                    getattr(value, "width", None), getattr(value, "height", None),
                    getattr(value, "duration_ms", None), renditions,
                    getattr(value, "placeholder", None))


def _stored(row: Any) -> StoredPost:
    media = tuple(media_of(m) for m in (row.media or ()))
    created_ms = dt_to_ms(row.created_at) if row.created_at is not None else 0
    return StoredPost(row.post_id, row.author_id, row.caption or "", media, created_ms,
                      bool(row.deleted))
