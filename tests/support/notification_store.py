"""Notification groups written straight into the stores, through the declared layout
(``schemas/cql/0003_notifications.cql``, ``schemas.redis_notifications``): what the
notifications writer will do, so the API's reads can be tested without the job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from schemas.cql_statements import bind_write, ms_to_dt, prepare, read_marker_write_time
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import encode_group


@dataclass(frozen=True)
class StoredGroup:
    """One live group of a recipient."""

    latest_ms: int
    group_key: str
    count: int = 1
    actors: tuple[str, ...] = ("a",)

    @property
    def type(self) -> str:
        return self.group_key.split(":", 1)[0]

    @property
    def post_id(self) -> str | None:
        return None if self.type == "follow" else self.group_key.split(":")[1]


class NotificationStore:
    """Writes a recipient's groups and marker to CQL and, when asked, to Redis."""

    def __init__(self, session: Any, client: redis.Redis, keys: RedisKeys) -> None:
        self.session = session
        self.redis = client
        self.keys = keys
        self.stmts = prepare(session, ["notification_group_add", "notification_read_mark"])
        self.write_time = 1

    def add(self, recipient: str, groups: list[StoredGroup], *, cache: bool) -> None:
        """Write ``groups`` to CQL; with ``cache``, to the Redis ZSET and HASH too."""
        for g in groups:
            self.write_time += 1
            values = (recipient, ms_to_dt(g.latest_ms), g.group_key, g.type, g.post_id,
                      g.count, list(g.actors))
            self.session.execute(self.stmts["notification_group_add"],
                                 bind_write("notification_group_add", values, self.write_time))
        if cache and groups:
            self.redis.zadd(self.keys.notifications(recipient),
                            {g.group_key: g.latest_ms for g in groups})
            self.redis.hset(self.keys.notification_groups(recipient), mapping={
                g.group_key: encode_group(g.type, g.post_id, g.count, g.actors, g.latest_ms)
                for g in groups})

    def mark(self, recipient: str, read_through_ms: int) -> None:
        """A read marker in CQL, written with its own write time (as the API does)."""
        self.session.execute(self.stmts["notification_read_mark"], bind_write(
            "notification_read_mark", (recipient, ms_to_dt(read_through_ms)),
            read_marker_write_time(read_through_ms)))
