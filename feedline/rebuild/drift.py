"""Read rebuilt state back from the stores and say how it differs from an image.

``feedctl verify`` and the jobs' ``--dry-run`` use these: reads are prepared statements run
concurrently (CQL, ``execute_all``: each under the session's request timeout, so a frozen
node fails a check instead of hanging it) and pipelines (Redis), for a list of users at a
time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from feedline.rules.memory import newest
from feedline.rules.notification_book import newest_groups
from feedline.rules.notifications import Group
from feedline.stores.cql import execute_all
from schemas.cql_statements import READS, dt_to_ms
from schemas.redis_hashes import USER_COUNTER_FIELDS, decode_user_counters
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys
from schemas.redis_notifications import NOTIFICATION_CAP, decode_group

#: A recipient's Redis list: (ZSET group key -> score, HASH group key -> decoded group).
CachedNotifications = tuple[dict[str, int], dict[str, Group]]
#: The LIMIT that reads a whole partition with a statement that pages by LIMIT.
_EVERY_ROW = 2**31 - 1


@dataclass
class UserDrift:
    """How one user's stored data differs from the recomputation."""

    user_id: str
    problems: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        """True when anything differs."""
        return bool(self.problems)


def read_cql_timelines(session: Any, users: Sequence[str],
                       concurrency: int = 32) -> dict[str, dict[str, int]]:
    """Every row of the users' CQL timelines: user -> {post_id: created_ms}."""
    stmt = session.prepare(READS["timeline_all"])
    results = execute_all(session, [(stmt, (u,)) for u in users], concurrency=concurrency)
    return {user: {row.post_id: dt_to_ms(row.created_at) for row in rows}
            for user, rows in zip(users, results, strict=True)}


def read_cql_user_counters(session: Any, users: Sequence[str],
                           concurrency: int = 32) -> dict[str, dict[str, int]]:
    """The users' counter cells that hold a value: user -> {field: value}."""
    stmt = session.prepare(READS["user_counters"])
    results = execute_all(session, [(stmt, (u,)) for u in users], concurrency=concurrency)
    out: dict[str, dict[str, int]] = {}
    for user, rows in zip(users, results, strict=True):
        row = rows.one()
        cells = {} if row is None else {
            "followers": row.followers, "following": row.following, "posts": row.posts}
        out[user] = {k: v for k, v in cells.items() if v is not None}
    return out


def read_redis_users(client: redis.Redis, keys: RedisKeys, users: Sequence[str]
                     ) -> tuple[dict[str, dict[str, int]], dict[str, set[str]],
                                dict[str, dict[str, int]]]:
    """Cached timelines, followed celebrities and user counter hashes of the users."""
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.zrange(keys.timeline(user), 0, -1, withscores=True)
        pipe.smembers(keys.followed_celebrities(user))
        pipe.hgetall(keys.user_counters(user))
    replies = pipe.execute()
    timelines, followed, counters = {}, {}, {}
    for n, user in enumerate(users):
        zset, members, hashed = replies[3 * n: 3 * n + 3]
        timelines[user] = {_text(m): int(s) for m, s in zset}
        followed[user] = {_text(m) for m in members}
        counters[user] = decode_user_counters(hashed)
    return timelines, followed, counters


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries_diff(what: str, got: dict[str, int], want: dict[str, int]) -> list[str]:
    if got == want:
        return []
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    moved = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} extra (e.g. {extra[0]})")
    if moved:
        parts.append(f"{len(moved)} with another time (e.g. {moved[0]})")
    return [f"{what}: " + ", ".join(parts)]


def user_drift(user: str, *, expected_timeline: dict[str, int], expected_followed: set[str],
               expected_counters: dict[str, int] | None, cap: int,
               cql_timeline: dict[str, int], cached: dict[str, int], followed: set[str],
               cql_counters: dict[str, int] | None, cached_counters: dict[str, int] | None,
               ) -> UserDrift:
    """Compare one user's stored timeline, celebrities and counters with the expected.

    Redis is a cache (``schemas.redis_sets``): a missing timeline or counters hash is "not
    cached", fine; one present must be right. A followed-celebrities set marked complete
    must equal the expected set; an unmarked one (readers do not trust it) may lack members
    but never hold one the user does not follow.
    """
    drift = UserDrift(user)
    drift.problems += _entries_diff("cql timeline", cql_timeline, expected_timeline)
    if cached:  # a missing timeline is "not cached" (evicted, or Redis restarted empty)
        want_cached = {p: expected_timeline[p] for p in newest(expected_timeline, cap)}
        drift.problems += _entries_diff("redis timeline", cached, want_cached)
    members = followed - {COMPLETE_MEMBER}
    if COMPLETE_MEMBER in followed and members != expected_followed:
        drift.problems.append(f"redis followed celebrities: {sorted(members)} != "
                              f"{sorted(expected_followed)} (marked complete)")
    elif not members <= expected_followed:  # unmarked: may be a part, never a stale one
        drift.problems.append(f"redis followed celebrities: {sorted(members - expected_followed)}"
                              f" not followed")
    if expected_counters is not None:
        want = _zero_filled(expected_counters)
        if cql_counters is not None and _zero_filled(cql_counters) != want:
            drift.problems.append(f"cql user counters {cql_counters} != {expected_counters}")
        if cached_counters and _zero_filled(cached_counters) != want:  # {}: not cached
            drift.problems.append(
                f"redis user counters {cached_counters} != {expected_counters}")
    return drift


def _zero_filled(counters: dict[str, int]) -> dict[str, int]:
    """Every user counter, 0 where none is stored.

    A counter never set is absent and one set back to 0 is stored as 0: the same count.
    """
    return {name: counters.get(name, 0) for name in USER_COUNTER_FIELDS}


# --- notifications -----------------------------------------------------------------------


def read_cql_notifications(session: Any, users: Sequence[str],
                           concurrency: int = 32) -> dict[str, list[tuple[str, Group]]]:
    """Every ``notification_groups`` row of the users: user -> [(group_key, group)].

    A list, not a map: a group stored twice (at two ``latest_at``) is drift to report.
    """
    stmt = session.prepare(READS["notification_groups_first"])
    results = execute_all(session, [(stmt, (u, _EVERY_ROW)) for u in users],
                          concurrency=concurrency)
    return {user: [(row.group_key, Group(row.type, row.post_id, int(row.count),
                                         tuple(row.actors or ()), dt_to_ms(row.latest_at)))
                   for row in rows]
            for user, rows in zip(users, results, strict=True)}


def read_redis_notifications(client: redis.Redis, keys: RedisKeys, users: Sequence[str]
                             ) -> dict[str, CachedNotifications]:
    """The users' cached notification lists: the ZSET's scores and the HASH's groups."""
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.zrange(keys.notifications(user), 0, -1, withscores=True)
        pipe.hgetall(keys.notification_groups(user))
    replies = pipe.execute()
    out: dict[str, CachedNotifications] = {}
    for n, user in enumerate(users):
        zset, hashed = replies[2 * n: 2 * n + 2]
        payloads = {}
        for key, value in hashed.items():
            try:
                g = decode_group(value)
            except (ValueError, KeyError, TypeError):  # shown as a differing group
                payloads[_text(key)] = Group("unreadable payload", None, 0, (), 0)
                continue
            payloads[_text(key)] = Group(g.type, g.post_id, g.count, tuple(g.actors),
                                         g.latest_ms)
        out[user] = ({_text(m): int(s) for m, s in zset}, payloads)
    return out


def _groups_diff(what: str, got: dict[str, Group], want: dict[str, Group]) -> list[str]:
    if got == want:
        return []
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    changed = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} extra (e.g. {extra[0]})")
    if changed:
        k = changed[0]
        parts.append(f"{len(changed)} different (e.g. {k}: {got[k]} != {want[k]})")
    return [f"{what}: " + ", ".join(parts)]


def notification_problems(expected: dict[str, Group], cql_rows: list[tuple[str, Group]],
                          cached: CachedNotifications, cap: int = NOTIFICATION_CAP
                          ) -> list[str]:
    """How a recipient's stored notifications differ from the expected groups.

    CQL must hold every live group once; Redis the newest ``cap`` of them (a missing list
    is "not cached" and fine; a list present must be exactly those, ZSET and HASH alike).
    """
    problems: list[str] = []
    stored: dict[str, Group] = {}
    twice = set()
    for key, group in cql_rows:
        if key in stored:
            twice.add(key)
        stored[key] = group
    if twice:
        problems.append(f"cql notifications: {len(twice)} group(s) stored twice "
                        f"(e.g. {sorted(twice)[0]})")
    problems += _groups_diff("cql notifications", stored, expected)
    scores, payloads = cached
    if scores or payloads:
        want = dict(newest_groups(expected, cap))
        problems += _groups_diff("redis notifications", payloads, want)
        problems += _entries_diff("redis notification list", scores,
                                  {k: g.latest_ms for k, g in want.items()})
    return problems
