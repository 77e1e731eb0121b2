"""A stand-in for the CQL reads of ``FeedReader``: newest-first listings held in memory.

The paging property tests (``tests/unit/test_api_paging.py``) read a feed from it alone;
the cache-first reader tests (``tests/integration/test_api_feed_reader.py``) put it behind
a real Redis.
"""

from __future__ import annotations

from feedline.stores.feed_items import Position, PostView


class FakeStore:
    """The CQL reads FeedReader uses, over in-memory listings."""

    def __init__(self) -> None:
        self.timelines: dict[str, list[Position]] = {}
        self.user_posts: dict[str, list[Position]] = {}
        self.following: dict[str, set[str]] = {}
        self.celebrity_ids: set[str] = set()
        self.live: dict[str, PostView] = {}

    @staticmethod
    def _after(listing: list[Position], after: Position | None, limit: int) -> list[Position]:
        ordered = sorted(listing, key=Position.key, reverse=True)
        return [p for p in ordered if after is None or after.precedes(p)][:limit]

    async def timeline_page(self, user_id, after, limit):
        return self._after(self.timelines.get(user_id, []), after, limit)

    async def user_posts_page(self, author_id, after, limit):
        return self._after(self.user_posts.get(author_id, []), after, limit)

    async def celebrities(self):
        return frozenset(self.celebrity_ids)

    async def followed_celebrities(self, user_id):
        return sorted(self.following.get(user_id, set()) & self.celebrity_ids)

    async def post_views(self, post_ids):
        return {p: self.live[p] for p in post_ids if p in self.live}
