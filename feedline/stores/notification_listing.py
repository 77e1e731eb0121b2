"""Read a recipient's notifications as the stores hold them: Redis first, the CQL store else.

A synchronous reader for operators (``feedctl notifications``) and tests (the API reads with
``notification_reader``, whose items it shares). The list is the
newest groups, newest first (``latest_at`` then ``group_key``, both descending), never
past the cap. Redis serves it when the recipient's ZSET is cached (the ``CAPPED`` rule of
``schemas.redis_notifications``: the ZSET holds the newest ``cap`` live groups) and every
payload of the page is there; otherwise the CQL store (``notification_groups``) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from feedline.stores.cluster_writes import is_cluster
from feedline.stores.notification_reader import NotificationItem
from schemas.cql_statements import dt_to_ms, ms_to_dt, prepare
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import (
    NOTIFICATION_CAP,
    NOTIFICATIONS_LISTING,
    decode_group,
    unread_score_range,
)

_READS = (NOTIFICATIONS_LISTING, "notification_read_marker", "notification_unread")


@dataclass(frozen=True, slots=True)
class NotificationListing:
    """The first page of a recipient's notifications and where it was read."""

    user_id: str
    source: str
    """``redis`` or ``cql``."""
    items: list[NotificationItem]
    unread_count: int
    """Unread groups among the newest ``cap``."""
    read_through_ms: int | None


class NotificationLookup:
    """Reads notification lists from one keyspace and one Redis key prefix."""

    def __init__(self, session: Any, client: redis.Redis, keys: RedisKeys,
                 cap: int = NOTIFICATION_CAP) -> None:
        self.session = session
        self.redis = client
        self.keys = keys
        self.cap = cap
        self.stmts = prepare(session, _READS)

    def read(self, user_id: str, limit: int) -> NotificationListing:
        """The newest ``limit`` groups (at most the cap), Redis first."""
        limit = max(1, min(limit, self.cap))
        cached = self._from_redis(user_id, limit)
        return cached if cached is not None else self._from_cql(user_id, limit)

    def _marker_from_cql(self, user_id: str) -> int | None:
        row = self.session.execute(self.stmts["notification_read_marker"], (user_id,)).one()
        return None if row is None or row.read_through is None else dt_to_ms(row.read_through)

    def _from_redis(self, user_id: str, limit: int) -> NotificationListing | None:
        zset, payloads = self.keys.notifications(user_id), self.keys.notification_groups(user_id)
        # One round trip (the keys share the user's slot on a cluster, whose client has no
        # MULTI pipelines; the reads below are not in it either).
        pipe = self.redis.pipeline(transaction=not is_cluster(self.redis))
        pipe.zrevrangebyscore(zset, "+inf", "-inf", start=0, num=limit)
        pipe.get(self.keys.notifications_read(user_id))
        members, marker = pipe.execute()
        if not members:
            return None  # not cached (an empty list is not cached either)
        values = self.redis.hmget(payloads, members)
        if any(value is None for value in values):  # type: ignore[union-attr]
            return None  # the writer is between two steps: the CQL store answers
        read_through = int(marker) if marker is not None else self._marker_from_cql(user_id)
        low, high = unread_score_range(read_through)
        unread = min(int(self.redis.zcount(zset, low, high)), self.cap)  # type: ignore[arg-type]
        items = []
        for member, value in zip(members, values, strict=True):  # type: ignore[arg-type]
            group = decode_group(value)
            key = member.decode() if isinstance(member, bytes) else str(member)
            items.append(NotificationItem(
                key, group.type, group.post_id, group.count, tuple(group.actors),
                group.latest_ms, read_through is None or group.latest_ms > read_through))
        return NotificationListing(user_id, "redis", items, unread, read_through)

    def _from_cql(self, user_id: str, limit: int) -> NotificationListing:
        read_through = self._marker_from_cql(user_id)
        rows = list(self.session.execute(self.stmts[NOTIFICATIONS_LISTING], (user_id, limit)))
        if read_through is None:
            unread = len(list(self.session.execute(
                self.stmts[NOTIFICATIONS_LISTING], (user_id, self.cap))))
        else:
            unread = len(list(self.session.execute(
                self.stmts["notification_unread"], (user_id, ms_to_dt(read_through), self.cap))))
        items = []
        for row in rows:
            latest = dt_to_ms(row.latest_at)
            items.append(NotificationItem(
                row.group_key, row.type, row.post_id, int(row.count), tuple(row.actors or ()),
                latest, read_through is None or latest > read_through))
        return NotificationListing(user_id, "cql", items, unread, read_through)
