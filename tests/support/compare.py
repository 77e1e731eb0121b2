"""Exact comparison of the stores with the reference model, with readable differences."""

from __future__ import annotations

from typing import Any

from feedline.rules.memory import newest
from tests.support.reference import Expected
from tests.support.stores import StoredState


def _diff(name: str, got: Any, want: Any, out: list[str]) -> None:
    if got == want:
        return
    if isinstance(got, dict) and isinstance(want, dict):
        keys = sorted(set(got) | set(want), key=str)
        bad = [k for k in keys if got.get(k) != want.get(k)]
        sample = "; ".join(f"{k}: got {got.get(k)!r} want {want.get(k)!r}" for k in bad[:3])
        out.append(f"{name}: {len(bad)} of {len(keys)} differ ({sample})")
    elif isinstance(got, set) and isinstance(want, set):
        out.append(f"{name}: missing {sorted(want - got, key=str)[:5]}, "
                   f"extra {sorted(got - want, key=str)[:5]}")
    else:
        out.append(f"{name}: got {got!r} want {want!r}")


def mismatches(stored: StoredState, expected: Expected, timeline_cap: int) -> list[str]:
    """Every way the stores differ from the reference (empty when they agree exactly)."""
    out: list[str] = []
    _diff("cql timelines", stored.cql_timelines, expected.timelines, out)
    _diff("redis timelines", stored.redis_timelines,
          {u: newest(t, timeline_cap) for u, t in expected.timelines.items() if t}, out)
    _diff("cql followers", stored.cql_edges, expected.edges, out)
    _diff("cql following", stored.cql_following, set(expected.edges), out)
    _diff("cql live posts", stored.cql_live_posts, expected.live_posts, out)
    _diff("cql deleted posts", stored.cql_deleted_posts, expected.deleted_posts, out)
    profiles: dict[str, set[str]] = {}
    for post_id, (author, _t) in expected.live_posts.items():
        profiles.setdefault(author, set()).add(post_id)
    _diff("cql user_posts", stored.cql_user_posts, profiles, out)
    _diff("cql celebrities", stored.cql_celebrities, expected.celebrities, out)
    _diff("redis celebrities", stored.redis_celebrities, expected.celebrities, out)
    _diff("redis outboxes", stored.redis_outboxes,
          {a: newest(o, timeline_cap) for a, o in expected.outboxes.items() if o}, out)
    _diff("redis followed celebrities", stored.redis_followed_celebrities,
          expected.followed_celebrities, out)
    _diff("redis post hashes", stored.redis_posts, set(expected.live_posts), out)
    _diff("cql post counters", stored.cql_post_counters, expected.post_counters, out)
    _diff("redis post counters", stored.redis_post_counters, expected.post_counters, out)
    _diff("cql user counters", stored.cql_user_counters, expected.user_counters, out)
    _diff("redis user counters", stored.redis_user_counters, expected.user_counters, out)
    return out
