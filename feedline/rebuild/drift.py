"""Read rebuilt state back from the stores and say how it differs from an image.

``feedctl verify`` and the jobs' ``--dry-run`` use these: reads are prepared statements run
concurrently (CQL) and pipelines (Redis), for a list of users at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from cassandra.concurrent import execute_concurrent_with_args

from feedline.rules.memory import newest
from schemas.cql_statements import READS, dt_to_ms
from schemas.redis_hashes import decode_user_counters
from schemas.redis_keys import RedisKeys


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
    results = execute_concurrent_with_args(session, stmt, [(u,) for u in users],
                                           concurrency=concurrency, raise_on_first_error=True)
    return {user: {row.post_id: dt_to_ms(row.created_at) for row in rows}
            for user, (_ok, rows) in zip(users, results, strict=True)}


def read_cql_user_counters(session: Any, users: Sequence[str],
                           concurrency: int = 32) -> dict[str, dict[str, int]]:
    """The users' counter cells that hold a value: user -> {field: value}."""
    stmt = session.prepare(READS["user_counters"])
    results = execute_concurrent_with_args(session, stmt, [(u,) for u in users],
                                           concurrency=concurrency, raise_on_first_error=True)
    out: dict[str, dict[str, int]] = {}
    for user, (_ok, rows) in zip(users, results, strict=True):
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
    """Compare one user's stored timeline, celebrities and counters with the expected."""
    drift = UserDrift(user)
    drift.problems += _entries_diff("cql timeline", cql_timeline, expected_timeline)
    want_cached = {p: expected_timeline[p] for p in newest(expected_timeline, cap)}
    drift.problems += _entries_diff("redis timeline", cached, want_cached)
    if followed != expected_followed:
        drift.problems.append(f"redis followed celebrities: {sorted(followed)} != "
                              f"{sorted(expected_followed)}")
    if expected_counters is not None:
        if cql_counters is not None and cql_counters != expected_counters:
            drift.problems.append(f"cql user counters {cql_counters} != {expected_counters}")
        if cached_counters is not None and cached_counters != expected_counters:
            drift.problems.append(
                f"redis user counters {cached_counters} != {expected_counters}")
    return drift
