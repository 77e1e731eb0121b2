"""The Redis layout of notifications, declared once (keys: ``schemas.redis_keys``).

Per recipient, three keys sharing one hash tag (one Redis Cluster slot):

| key | type | holds |
|---|---|---|
| ``{p}:nz:{{user}}`` | ZSET | group keys scored by ``latest_at`` (ms), the newest 500 |
| ``{p}:ng:{{user}}`` | HASH | group key -> JSON payload (``encode_group``) |
| ``{p}:nr:{{user}}`` | STRING | read through (epoch ms) |

- **Order and pages.** Newest first is ``ZRANGE nz +inf -inf BYSCORE REV``: by score,
  then by member descending for equal scores — the CQL clustering order
  ``(latest_at DESC, group_key DESC)`` of ``notification_groups``, so one keyset cursor
  ``(latest_ms, group_key)`` pages both (scores are integers below 2**53: exact).
- **Completeness** (the ``CAPPED`` rule of ``schemas.redis_sets``, with this cap): the
  ZSET is the whole visible list when it holds fewer than ``NOTIFICATION_CAP`` members;
  a writer that removes a member from a full ZSET refills it from the CQL listing
  (``notification_groups_first``), since the group that moves up may only live there. A
  missing ZSET means "not cached". The API never serves past the cap.
- **Read marker.** Only moves forward: written as the larger of the stored and the new
  value, inside one script (``marker_after``); in CQL by its write time
  (``schemas.cql_statements.read_marker_write_time``).
- **Unread count** is derived, never stored (a stored counter would drift under
  retraction): the visible groups newer than the marker, ``ZCOUNT nz (marker +inf``
  capped at ``NOTIFICATION_CAP`` (``unread_score_range``).

Not yet written by any writer nor read by the API (issue 13 items 2-3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.redis_sets import Completeness

#: Groups a recipient sees (the newest ones); the rules' ``NotificationParams.group_cap``.
NOTIFICATION_CAP = 500
#: How a reader tells the whole notifications ZSET from a part of it.
NOTIFICATIONS_COMPLETENESS = Completeness.CAPPED
#: The CQL listing (``schemas.cql_statements``) that refills the ZSET, newest first.
NOTIFICATIONS_LISTING = "notification_groups_first"
#: Fields of a group payload, in order.
GROUP_FIELDS = ("type", "post_id", "count", "actors", "latest_ms")


@dataclass(frozen=True, slots=True)
class GroupPayload:
    """A decoded notification group (what the API item is made from)."""

    type: str
    post_id: str | None
    count: int
    actors: list[str]
    latest_ms: int


def encode_group(type_: str, post_id: str | None, count: int, actors: tuple[str, ...] | list[str],
                 latest_ms: int) -> bytes:
    """The HASH value of one group: compact JSON with ``GROUP_FIELDS``."""
    return orjson.dumps({"type": type_, "post_id": post_id, "count": count,
                         "actors": list(actors), "latest_ms": latest_ms})


def decode_group(value: bytes | str) -> GroupPayload:
    """A group payload read back (with or without ``decode_responses``)."""
    data: Mapping[str, Any] = orjson.loads(value)
    return GroupPayload(str(data["type"]), data["post_id"], int(data["count"]),
                        [str(a) for a in data["actors"]], int(data["latest_ms"]))


def marker_after(stored: int | None, proposed: int) -> int:
    """The read marker after a "mark read" at ``proposed``: it never moves back."""
    return proposed if stored is None else max(stored, proposed)


def unread_score_range(read_through_ms: int | None) -> tuple[str, str]:
    """``(min, max)`` for ``ZCOUNT`` of the unread groups (all, before any read)."""
    return ("-inf" if read_through_ms is None else f"({read_through_ms}", "+inf")
