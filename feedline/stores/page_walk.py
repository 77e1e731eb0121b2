"""The walk of ``lua/page.lua``, in Python, over windows read by separate calls.

On Redis Cluster a feed page cannot be one script: the reader's timeline, each followed
celebrity's outbox and each post live on slots of their own (``schemas.redis_keys``,
cluster layout). ``feedline.stores.cluster_cache`` reads each sorted set's window after
the cursor on its own slot, then walks them here exactly as ``page.lua`` walks them: the
same bound (where a set cut short, or not whole, stops the walk, and why), the same
newest-first order with ids compared byte-wise, the same duplicates skipped, the same
``more`` once ``limit`` posts are hydrated. Hydration is asked for in batches, in walk
order, so a page usually costs one batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from feedline.stores.feed_items import Position

Shape = Literal["truncated", "whole", "part"]
"""How a window ends: ``fetch`` entries were read (``truncated``), the set holds nothing
more (``whole``), or the set is not whole and the rest is only in the CQL store (``part``)."""

Entry = tuple[float, str]
"""(score, member) of a sorted set, as page.lua holds them (scores as Lua numbers)."""

Hash = tuple[str, str, str, str, str]
"""A hydrated post as page.lua reads it: author_id, caption, media, likes, comments."""

Hydrate = Callable[[Sequence[str]], Awaitable[dict[str, Hash | None]]]
"""Reads the hashes of some post ids: None for a post without a hash."""


@dataclass(frozen=True, slots=True)
class Window:
    """A newest-first slice of one sorted set after the cursor, as a page step read it."""

    entries: tuple[Entry, ...]
    shape: Shape

    @classmethod
    def from_reply(cls, shape: str, flat: Sequence[str]) -> Window:
        """From a step's reply: its shape and ``member, score, member, score, ...``."""
        if shape not in ("truncated", "whole", "part"):
            raise ValueError(f"unknown window shape {shape!r}")
        pairs = tuple((float(flat[i + 1]), flat[i]) for i in range(0, len(flat), 2))
        return cls(pairs, shape)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Bound:
    """Past this entry some set may hold entries not read: the walk stops there."""

    score: float
    member: str
    status: Literal["continue", "deep"]


@dataclass(frozen=True, slots=True)
class Walked:
    """What page.lua returns after its checks: status, last entry walked, the entries."""

    status: Literal["end", "more", "continue", "deep"]
    last: Entry | None
    entries: tuple[tuple[Entry, Hash | None], ...]


def precedes(first: Entry, second: Entry) -> bool:
    """Whether ``first`` comes strictly before (is newer than) ``second``; ids as bytes."""
    if first[0] != second[0]:
        return first[0] > second[0]
    return second[1].encode() < first[1].encode()


def bound_of(windows: Sequence[Window], cursor: Position | None) -> Bound | None:
    """The tightest bound the windows set, in their order (the first wins a tie)."""
    bound: Bound | None = None

    def tighten(entry: Entry, status: Literal["continue", "deep"]) -> None:
        nonlocal bound
        if bound is None or precedes(entry, (bound.score, bound.member)):
            bound = Bound(entry[0], entry[1], status)

    for window in windows:
        if window.shape == "truncated":
            tighten(window.entries[-1], "continue")
        elif window.shape == "part":
            if window.entries:
                tighten(window.entries[-1], "deep")
            elif cursor is not None:
                tighten((float(cursor.created_ms), cursor.post_id), "deep")
    return bound


def walk_order(windows: Sequence[Window], bound: Bound | None) -> list[Entry]:
    """Every entry read, newest first (a k-way merge of sorted windows), up to the bound."""
    merged = sorted((e for w in windows for e in w.entries),
                    key=lambda e: (e[0], e[1].encode()), reverse=True)
    if bound is None:
        return merged
    edge = (bound.score, bound.member)
    return [e for e in merged if not precedes(edge, e)]


async def walk(windows: Sequence[Window], cursor: Position | None, limit: int,
               hydrate: Hydrate, *, batch: int) -> Walked:
    """page.lua's merge and hydration over ``windows`` (the timeline's first).

    ``hydrate`` is called with up to ``batch`` ids not looked up yet, in walk order, each
    time the walk reaches an id it has no answer for (``batch`` at least the posts still
    wanted plus room for a few without a hash keeps that to one call a page).
    """
    bound = bound_of(windows, cursor)
    order = walk_order(windows, bound)
    found: dict[str, Hash | None] = {}
    seen: set[str] = set()
    out: list[tuple[Entry, Hash | None]] = []
    hydrated, last = 0, None
    for index, entry in enumerate(order):
        if hydrated >= limit:
            return Walked("more", last, tuple(out))
        post_id = entry[1]
        if post_id not in seen:
            seen.add(post_id)
            if post_id not in found:
                wanted = _next_ids(order, index, found, max(batch, limit - hydrated))
                found.update(await hydrate(wanted))
            post = found.get(post_id)
            out.append((entry, post))
            hydrated += post is not None
        last = entry
    return Walked(bound.status if bound else "end", last, tuple(out))


def _next_ids(order: Sequence[Entry], start: int, found: dict[str, Hash | None],
              count: int) -> list[str]:
    """Up to ``count`` distinct ids from ``order[start:]`` with no answer yet."""
    wanted: dict[str, None] = {}
    for _score, post_id in order[start:]:
        if post_id not in found:
            wanted[post_id] = None
            if len(wanted) >= count:
                break
    return list(wanted)
