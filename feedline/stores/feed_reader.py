"""The read path: home feeds, profiles, posts and user counters, cache first.

Home feed: one Redis call (``FeedCache.page``) serves a page in the common case. When the
timeline is not cached it is read from the CQL store, written back (the newest
``timeline_cap`` entries) and the call repeated; so is a followed-celebrity set not marked
complete (evicted, or re-created by a single writer add); a reader whose timeline is empty, or who
pages past what Redis keeps, is served from the CQL store (timelines plus the posts of
followed celebrities, ``following`` ∩ ``celebrities``). A post without a hash is shown
only if the CQL store has it live. With Redis down, every read comes from the CQL store
and the page says so (``degraded="redis"``). So does a home feed read whose Redis calls,
all together, outlast ``redis_budget_s`` (a slow or throttled Redis, where each call stays
under the socket timeout but several add up): one slow cache costs each read at most the
budget, then the breaker spares the next reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import redis.exceptions

from feedline.stores.errors import Breaker, StoreUnavailable
from feedline.stores.feed_cache import FeedCache, PageStatus
from feedline.stores.feed_items import Position, PostView, SourcePage, merge_sources
from feedline.stores.post_store import PostStore
from feedline.stores.request_guards import RateWindow

log = logging.getLogger(__name__)

#: Redis errors meaning "the cache cannot serve": read from the CQL store instead. Besides
#: unreachable, a replica promoted away (READONLY), a full instance that refuses writes
#: (OOM: the page script counts the rate limit) and a failover in progress; on a Redis
#: Cluster also a cluster that is down or has a slot no node serves, and a call whose
#: redirections ran out (``ClusterError``: "TTL exhausted", e.g. TRYAGAIN after TRYAGAIN
#: while the slot of a script's keys is being resharded and they are split between nodes).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError,
              redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError,
              redis.exceptions.MasterDownError, redis.exceptions.TryAgainError,
              redis.exceptions.ClusterDownError, redis.exceptions.SlotNotCoveredError,
              redis.exceptions.ClusterError)
#: Extra candidates read per source beyond the page size: room for entries whose post is
#: gone (the writer removes deleted posts from sets, so few); past it, another round.
SLACK = 3
#: Most cache or store calls one page may take (each continues where the last stopped).
MAX_ROUNDS = 4
#: After a Redis failure, reads skip Redis for this long (no connect timeout per request).
REDIS_PAUSE_S = 1.0
#: Default for the most time one home feed read waits on Redis, all its calls together.
REDIS_BUDGET_S = 0.5

P = ParamSpec("P")
T = TypeVar("T")

Listings = Callable[[Position | None, int], Awaitable[list[list[Position]]]]


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One page of posts, newest first, and where the next page starts (None: the end)."""

    items: list[PostView]
    next: Position | None
    degraded: str | None = None
    """Which store could not be used (``redis``), when the page was served without it."""


@dataclass(frozen=True, slots=True)
class PostLookup:
    """Who wrote a post and whether it is deleted (``author_id`` None: unknown post)."""

    author_id: str | None
    deleted: bool = False


class RedisBudget:
    """What is left of one read's time for Redis; a call past it raises ``TimeoutError``.

    ``TimeoutError`` is an ``OSError``, one of ``REDIS_DOWN``: the read falls back to the
    CQL store. A call cancelled mid-reply makes redis-py drop that connection.
    """

    def __init__(self, seconds: float) -> None:
        self.left_s = seconds

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` within what is left; its time is taken from the rest."""
        if self.left_s <= 0:
            raise TimeoutError("redis time budget spent")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.left_s):
                return await fn(*args, **kwargs)
        except TimeoutError:
            self.left_s = 0.0  # spent, whatever the clocks say
            raise
        finally:
            self.left_s = max(0.0, self.left_s - (time.monotonic() - started))


class FeedReader:
    """Reads through the cache (when there is one) and the CQL store."""

    def __init__(self, cache: FeedCache | None, store: PostStore, *, timeline_cap: int,
                 breaker: Breaker | None = None,
                 redis_budget_s: float = REDIS_BUDGET_S) -> None:
        self.cache = cache
        self.store = store
        self.cap = timeline_cap
        self.breaker = breaker or Breaker(REDIS_PAUSE_S)
        self.redis_budget_s = redis_budget_s

    def _cache(self) -> FeedCache | None:
        """The cache, unless there is none or it failed moments ago."""
        return self.cache if self.cache is not None and self.breaker.allows() else None

    # --- home feed ------------------------------------------------------------------------

    async def home(self, user_id: str, after: Position | None, limit: int,
                   rate: RateWindow | None = None) -> FeedPage:
        """A page of ``user_id``'s home feed after ``after``.

        ``rate``: count the request against the reader's rate limit in the same Redis call
        (``RateLimited`` when over it); not counted when Redis is down.
        """
        cache = self._cache()
        if cache is not None:
            try:
                return await self._home_cached(cache, user_id, after, limit, rate,
                                               RedisBudget(self.redis_budget_s))
            except REDIS_DOWN as error:
                self.breaker.trip()
                log.warning("feed from the CQL store: redis unavailable (%s)", error)
        page = await self._home_from_store(user_id, after, limit, hydrate_from_cache=False)
        return FeedPage(page.items, page.next, "redis")

    async def _home_cached(self, cache: FeedCache, user_id: str, after: Position | None,
                           limit: int, rate: RateWindow | None,
                           budget: RedisBudget) -> FeedPage:
        items: list[PostView] = []
        position, repaired, completed, lenient = after, False, False, False
        outboxes_tried = False
        for _ in range(MAX_ROUNDS):
            want = limit - len(items)
            page = await budget.call(cache.page, user_id, position, want, fetch=want + SLACK,
                                     lenient_outboxes=lenient, rate=rate)
            rate = None  # counted once per request
            if page.status is PageStatus.MISS:
                if not repaired and await self._repair_timeline(cache, user_id, budget):
                    repaired = True
                    continue
                rest = await self._home_from_store(user_id, position, want, budget=budget)
                return FeedPage(items + rest.items, rest.next, rest.degraded)
            if page.status is PageStatus.CELEBRITIES_MISS:
                if not completed:
                    completed = True
                    celebrities = await self.store.followed_celebrities(user_id)
                    await budget.call(cache.repair, user_id, (), celebrities)
                    continue
                rest = await self._home_from_store(user_id, position, want, budget=budget)
                return FeedPage(items + rest.items, rest.next, rest.degraded)
            if page.status is PageStatus.OUTBOX_MISS:
                # Once repaired, the outboxes are read again; still missing (Redis would
                # not cache one), the rest comes from the CQL store. Only when the store
                # cannot be read either are the missing celebrities left out.
                if not outboxes_tried:
                    outboxes_tried = True
                    lenient = not await self._repair_outboxes(cache, page.absent, budget)
                    continue
                rest = await self._home_from_store(user_id, position, want, budget=budget)
                return FeedPage(items + rest.items, rest.next, rest.degraded)
            items.extend(await self._resolve(page.entries))
            if len(items) >= limit:
                if len(items) > limit or page.status is not PageStatus.END:
                    return FeedPage(items[:limit], items[limit - 1].position)
                return FeedPage(items, None)
            if page.status is PageStatus.END:
                return FeedPage(items, None)
            position = page.last or position
            if page.status is PageStatus.DEEP:
                rest = await self._home_from_store(user_id, position, limit - len(items),
                                                   budget=budget)
                return FeedPage(items + rest.items, rest.next, rest.degraded)
        return FeedPage(items, position)

    async def _home_from_store(self, user_id: str, after: Position | None, limit: int, *,
                               hydrate_from_cache: bool = True,
                               budget: RedisBudget | None = None) -> FeedPage:
        celebrities = await self.store.followed_celebrities(user_id)

        async def listings(position: Position | None, fetch: int) -> list[list[Position]]:
            return list(await asyncio.gather(
                self.store.timeline_page(user_id, position, fetch),
                *(self.store.user_posts_page(c, position, fetch) for c in celebrities)))

        return await self._walk_store(listings, after, limit, hydrate_from_cache, budget)

    async def _repair_timeline(self, cache: FeedCache, user_id: str,
                               budget: RedisBudget) -> bool:
        """Cache the timeline from the CQL store; False when it is empty there too."""
        timeline, celebrities = await asyncio.gather(
            self.store.timeline_page(user_id, None, self.cap),
            self.store.followed_celebrities(user_id))
        if not timeline:
            return False
        await budget.call(cache.repair, user_id, timeline, celebrities)
        return True

    async def _repair_outboxes(self, cache: FeedCache, authors: Sequence[str],
                               budget: RedisBudget) -> bool:
        """Cache the authors' outboxes from the CQL store; False when it cannot be read."""
        read_at_us = time.time_ns() // 1000
        try:
            celebrities, outboxes = await asyncio.gather(
                self.store.celebrities(),
                asyncio.gather(*(self.store.user_posts_page(a, None, self.cap)
                                 for a in authors)))
        except StoreUnavailable as error:
            log.warning("celebrity outboxes left out of a feed: %s", error)
            return False
        every = sorted(celebrities)

        async def repair_all() -> None:
            await asyncio.gather(*(cache.repair_outbox(a, posts, every, read_at_us)
                                   for a, posts in zip(authors, outboxes, strict=True)))

        await budget.call(repair_all)
        return True

    async def _resolve(self, entries: Sequence[PostView | Position]) -> list[PostView]:
        """Hydrated entries, plus the hash-less ones the CQL store has live, in order."""
        missing = [e.post_id for e in entries if isinstance(e, Position)]
        found: dict[str, PostView] = {}
        if missing:
            try:
                found = await self.store.post_views(missing)
            except StoreUnavailable as error:  # cannot tell deleted from evicted: hide them
                log.warning("%d uncached posts left out of a feed: %s", len(missing), error)
        out = []
        for entry in entries:
            if isinstance(entry, PostView):
                out.append(entry)
            elif entry.post_id in found and found[entry.post_id].position == entry:
                out.append(found[entry.post_id])  # a row at another time is stale: skipped
        return out

    # --- paging over CQL listings ---------------------------------------------------------

    async def _walk_store(self, listings: Listings, after: Position | None, limit: int,
                          hydrate_from_cache: bool,
                          budget: RedisBudget | None = None) -> FeedPage:
        items: list[PostView] = []
        position = after
        degraded = None
        for _ in range(MAX_ROUNDS):
            want = limit - len(items)
            fetch = want + SLACK
            slices = await listings(position, fetch)
            merged, more = merge_sources([SourcePage(s, len(s) < fetch) for s in slices])
            candidates = merged[:fetch]
            more = more or len(merged) > len(candidates)
            views, cache_down = await self._hydrate([p.post_id for p in candidates],
                                                    hydrate_from_cache, budget)
            degraded = degraded or ("redis" if cache_down else None)
            for index, candidate in enumerate(candidates):
                view = views.get(candidate.post_id)
                if view is None or view.position != candidate:
                    continue  # deleted, or a stale listing row (not at the post's time)
                items.append(view)
                if len(items) == limit:
                    tail = more or index < len(candidates) - 1
                    return FeedPage(items, view.position if tail else None, degraded)
            if not more or not candidates:
                return FeedPage(items, None, degraded)
            position = candidates[-1]
        return FeedPage(items, position, degraded)

    async def _hydrate(self, post_ids: Sequence[str], from_cache: bool,
                       budget: RedisBudget | None = None) -> tuple[dict[str, PostView], bool]:
        """Live posts among ``post_ids``: cached hashes first, the CQL store for the rest.

        Returns the views and whether the cache was wanted but down (or out of ``budget``,
        the read's Redis time; a budget of its own when None).
        """
        views: dict[str, PostView] = {}
        cache = self._cache() if from_cache else None
        cache_down = from_cache and cache is None
        if cache is not None:
            try:
                budget = budget or RedisBudget(self.redis_budget_s)
                views = await budget.call(cache.post_views, post_ids)
            except REDIS_DOWN as error:
                self.breaker.trip()
                log.warning("hydrating from the CQL store: redis unavailable (%s)", error)
                cache_down = True
        rest = [p for p in post_ids if p not in views]
        if rest:
            views.update(await self.store.post_views(rest))
        return views, cache_down

    # --- profiles, posts, users -----------------------------------------------------------

    async def profile(self, author_id: str, after: Position | None, limit: int) -> FeedPage:
        """A page of the author's own posts (the CQL ``user_posts`` table), newest first."""

        async def listings(position: Position | None, fetch: int) -> list[list[Position]]:
            return [await self.store.user_posts_page(author_id, position, fetch)]

        return await self._walk_store(listings, after, limit, hydrate_from_cache=True)

    async def post(self, post_id: str) -> tuple[PostView | None, str | None]:
        """A live post with its counters (None when unknown or deleted).

        Also returns the store that could not be used, if any.
        """
        views, cache_down = await self._hydrate([post_id], from_cache=True)
        return views.get(post_id), "redis" if cache_down else None

    async def lookup(self, post_id: str) -> PostLookup:
        """Author and deletion state of a post, for write checks."""
        cache = self._cache()
        if cache is not None:
            try:
                cached = await cache.post_views([post_id])
            except REDIS_DOWN:
                self.breaker.trip()
                cached = {}
            if post_id in cached:
                return PostLookup(cached[post_id].author_id)
        stored = await self.store.post(post_id)
        if stored is None:
            return PostLookup(None)
        return PostLookup(stored.author_id, stored.deleted)

    async def user_counts(self, user_id: str) -> tuple[dict[str, int], str | None]:
        """followers, following and posts of a user, and the degraded store if any."""
        cache = self._cache()
        degraded = None if cache is not None else "redis"
        if cache is not None:
            try:
                cached = await cache.user_counts(user_id)
            except REDIS_DOWN:
                self.breaker.trip()
                cached, degraded = None, "redis"
            if cached is not None:
                return cached, None
        return await self.store.user_counts(user_id), degraded
