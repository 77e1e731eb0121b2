"""The read path of notifications: pages, the unread count and the read marker, cache first.

The layout is ``schemas.redis_notifications`` (Redis) and ``schemas/cql/0003_notifications.cql``
(the system of record). Like the feed (``feedline.stores.feed_reader``):

- **Redis first**, one script per request (``lua/notification_page.lua``, ``…_unread.lua``),
  within ``redis_budget_s`` for all of the request's Redis calls; past it, or with Redis
  down, the answer comes from the CQL store and says so (``degraded="redis"``, the API's
  ``X-Feed-Degraded`` header), and the breaker spares the next requests the wait.
- **Not cached** (no groups ZSET): the newest ``cap`` groups are read from CQL
  (``notification_groups_first``), served, and cached (``…_repair.lua``: only where no
  writer cached the ZSET meanwhile). A payload missing from the hash is read from CQL too.
- **The cap**: nothing past the newest ``cap`` groups is served, from either store.
- **The read marker** only moves forward: CQL first (``notification_read_mark``, whose
  write time is the marker), then Redis (``…_mark.lua``, the larger of both). The Redis copy
  expires after ``MARKER_TTL_MS`` and is read from CQL again when missing, so a copy a
  failed write left behind is stale for at most that long.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from feedline.stores.cql_client import CqlClient
from feedline.stores.errors import Breaker
from feedline.stores.feed_items import Position
from feedline.stores.feed_reader import REDIS_BUDGET_S, REDIS_DOWN, RedisBudget
from feedline.stores.lua import source
from schemas.cql_statements import (
    NOTIFICATION_READS,
    NOTIFICATION_WRITES,
    bind_write,
    dt_to_ms,
    ms_to_dt,
    read_marker_write_time,
)
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import NOTIFICATION_CAP, decode_group, encode_group

log = logging.getLogger(__name__)

#: How long Redis keeps its copy of a read marker (then it is read from CQL again).
MARKER_TTL_MS = 600_000


@dataclass(frozen=True, slots=True)
class NotificationItem:
    """One notification group as the recipient sees it."""

    group_key: str
    type: str
    post_id: str | None
    count: int
    actors: tuple[str, ...]
    latest_ms: int
    unread: bool

    @property
    def position(self) -> Position:
        """Where the group sits in the newest-first list (``post_id`` holds the group key)."""
        return Position(self.latest_ms, self.group_key)


@dataclass(frozen=True, slots=True)
class NotificationPage:
    """A page of groups, newest first, and where the next starts (None: the end)."""

    items: list[NotificationItem]
    next: Position | None
    degraded: str | None = None


@dataclass(frozen=True, slots=True)
class _Group:
    group_key: str
    type: str
    post_id: str | None
    count: int
    actors: tuple[str, ...]
    latest_ms: int

    def item(self, marker: int | None) -> NotificationItem:
        return NotificationItem(self.group_key, self.type, self.post_id, self.count,
                                self.actors, self.latest_ms,
                                marker is None or self.latest_ms > marker)


def _row_group(row: Any) -> _Group:
    return _Group(row.group_key, row.type, row.post_id, int(row.count or 0),
                  tuple(row.actors or ()), dt_to_ms(row.latest_at))


def page_of(groups: Sequence[_Group], after: Position | None, limit: int,
            cap: int) -> tuple[list[_Group], bool]:
    """The groups after ``after`` within the newest ``cap`` of ``groups`` (newest first).

    Returns at most ``limit`` and whether more follow within the cap (pure).
    """
    visible = list(groups[:cap])
    if after is not None:
        visible = [g for g in visible if after.precedes(Position(g.latest_ms, g.group_key))]
    return visible[:limit], len(visible) > limit


class NotificationReader:
    """Reads a recipient's notifications through the cache and the CQL store."""

    def __init__(self, client: Redis | None, keys: RedisKeys, cql: CqlClient, *,
                 breaker: Breaker | None = None, redis_budget_s: float = REDIS_BUDGET_S,
                 cap: int = NOTIFICATION_CAP) -> None:
        self.redis = client
        self.keys = keys
        self.cql = cql
        self.breaker = breaker or Breaker(1.0)
        self.redis_budget_s = redis_budget_s
        self.cap = cap
        if client is not None:
            self._page = client.register_script(source("notification_page.lua"))
            self._unread = client.register_script(source("notification_unread.lua"))
            self._mark = client.register_script(source("notification_mark.lua"))
            self._repair = client.register_script(source("notification_repair.lua"))

    def _cached(self) -> bool:
        return self.redis is not None and self.breaker.allows()

    def _redis_failed(self, error: BaseException, what: str) -> None:
        self.breaker.trip()
        log.warning("notifications %s from the CQL store: redis unavailable (%s)", what, error)

    # --- pages ----------------------------------------------------------------------------

    async def page(self, user_id: str, after: Position | None, limit: int) -> NotificationPage:
        """Up to ``limit`` groups after ``after``, newest first, each marked read or unread."""
        if self._cached():
            budget = RedisBudget(self.redis_budget_s)
            try:
                return await self._page_cached(user_id, after, limit, budget)
            except REDIS_DOWN as error:
                self._redis_failed(error, "page")
        groups, marker = await self._from_store(user_id)
        return self._serve(groups, marker, after, limit, "redis")

    async def _page_cached(self, user_id: str, after: Position | None, limit: int,
                           budget: RedisBudget) -> NotificationPage:
        k = self.keys
        reply = await budget.call(
            self._page,
            keys=[k.notifications(user_id), k.notification_groups(user_id),
                  k.notifications_read(user_id)],
            args=[self.cap, limit, "" if after is None else after.created_ms,
                  "" if after is None else after.post_id])
        if reply[0] != "ok":  # not cached, or a payload missing: the CQL store, then repair
            groups, marker = await self._from_store(user_id)
            if reply[0] == "miss":
                await budget.call(self._cache_groups, user_id, groups)
            await budget.call(self._cache_marker, user_id, marker)
            return self._serve(groups, marker, after, limit, None)
        marker = int(reply[1]) if reply[1] != "" else await self._repair_marker(user_id, budget)
        groups = []
        for key, score, payload in zip(reply[3::3], reply[4::3], reply[5::3], strict=True):
            group = decode_group(payload)
            groups.append(_Group(key, group.type, group.post_id, group.count,
                                 tuple(group.actors), int(float(score))))
        items = [g.item(marker) for g in groups]
        more = reply[2] == "1"
        return NotificationPage(items, items[-1].position if more and items else None)

    def _serve(self, groups: Sequence[_Group], marker: int | None, after: Position | None,
               limit: int, degraded: str | None) -> NotificationPage:
        served, more = page_of(groups, after, limit, self.cap)
        items = [g.item(marker) for g in served]
        return NotificationPage(items, items[-1].position if more and items else None, degraded)

    async def _from_store(self, user_id: str) -> tuple[list[_Group], int | None]:
        """The newest ``cap`` groups and the marker (None: never read), from CQL."""
        rows, marker_rows = await self.cql.execute_many([
            (NOTIFICATION_READS["notification_groups_first"], (user_id, self.cap)),
            (NOTIFICATION_READS["notification_read_marker"], (user_id,))])
        marker = (dt_to_ms(marker_rows[0].read_through)
                  if marker_rows and marker_rows[0].read_through is not None else None)
        return [_row_group(r) for r in rows], marker

    async def _cache_groups(self, user_id: str, groups: Sequence[_Group]) -> None:
        args: list[Any] = [self.cap]
        for g in groups[: self.cap]:
            args.extend((g.latest_ms, g.group_key,
                         encode_group(g.type, g.post_id, g.count, g.actors, g.latest_ms)))
        k = self.keys
        await self._repair(keys=[k.notifications(user_id), k.notification_groups(user_id)],
                           args=args)

    async def _cache_marker(self, user_id: str, marker: int | None) -> int:
        """Store ``marker`` in Redis unless a later one is there; the marker now stored."""
        stored = await self._mark(keys=[self.keys.notifications_read(user_id)],
                                  args=[marker or 0, MARKER_TTL_MS])
        return int(stored)

    async def _repair_marker(self, user_id: str, budget: RedisBudget) -> int | None:
        rows = await self.cql.execute(NOTIFICATION_READS["notification_read_marker"],
                                      (user_id,))
        marker = (dt_to_ms(rows[0].read_through)
                  if rows and rows[0].read_through is not None else None)
        stored = await budget.call(self._cache_marker, user_id, marker)
        return stored if stored > 0 or marker is not None else None

    # --- unread count and the marker ------------------------------------------------------

    async def unread_count(self, user_id: str) -> tuple[int, str | None]:
        """Unread groups among the visible ones, and the store that could not be used."""
        if self._cached():
            budget = RedisBudget(self.redis_budget_s)
            try:
                return await self._unread_cached(user_id, budget), None
            except REDIS_DOWN as error:
                self._redis_failed(error, "unread count")
        groups, marker = await self._from_store(user_id)
        return self._count(groups, marker), "redis"

    async def _unread_cached(self, user_id: str, budget: RedisBudget) -> int:
        k = self.keys
        keys = [k.notifications(user_id), k.notifications_read(user_id)]
        reply = await budget.call(self._unread, keys=keys, args=[self.cap])
        if reply[0] == "marker_miss":
            await self._repair_marker(user_id, budget)
            reply = await budget.call(self._unread, keys=keys, args=[self.cap])
        if reply[0] == "ok":
            return int(reply[1])
        groups, marker = await self._from_store(user_id)  # not cached: count, then repair
        await budget.call(self._cache_groups, user_id, groups)
        await budget.call(self._cache_marker, user_id, marker)
        return self._count(groups, marker)

    def _count(self, groups: Sequence[_Group], marker: int | None) -> int:
        return sum(1 for g in groups[: self.cap] if marker is None or g.latest_ms > marker)

    async def mark_read(self, user_id: str, now_ms: int) -> tuple[int, str | None]:
        """Mark every group up to ``now_ms`` read; the marker now in force, and degraded.

        CQL first: ``StoreUnavailable`` when it cannot take the write (nothing changed).
        """
        name = "notification_read_mark"
        await self.cql.execute(NOTIFICATION_WRITES[name], bind_write(
            name, (user_id, ms_to_dt(now_ms)), read_marker_write_time(now_ms)))
        if self._cached():
            budget = RedisBudget(self.redis_budget_s)
            try:
                return await budget.call(self._cache_marker, user_id, now_ms), None
            except REDIS_DOWN as error:
                self._redis_failed(error, "read marker")
        return now_ms, "redis"
