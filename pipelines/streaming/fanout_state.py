"""The fan-out job's per-author state: follower edges in keyed map state. Pure, no PyFlink.

An author's ``AuthorState`` (``feedline.rules.fanout``) holds a register per follower who
ever followed (``edges``) beside its posts. Pickled whole into one ValueState, an author
with 100,000 followers costs a pickle of 100,000 registers on every event. So the job
keeps (state names are savepoint contracts: never rename them):

* ValueState ``author-state``: ``(AuthorState with edges == {}, RecentEvents, EventClock,
  EDGES_IN_MAP_STATE)`` — the summary: posts, order, celebrity flag, follower count;
* MapState ``author-edges`` (``EDGES_STATE``): follower id -> the follower's ``Edge`` as
  a plain tuple ``(last_unfollow, (follow versions…))``, one entry each (a post unpickles
  every entry it walks: a tuple of tuples unpickles several times faster than a dataclass).

For the length of one event the rules see ``edges`` as a ``StateMap`` over the map state
(``attach_edges``): a follow reads and writes its follower's entry only; a post walks the
entries once (the deliveries it makes); ``detach_edges`` writes back what changed and
puts an empty dict back before the summary is stored. The rules stay pure and the other
engines (the rebuild, backfill, ``RulesEngine``) keep plain dicts.

Older layouts — ``(rules, recent)`` and ``(rules, recent, clock)`` with every edge inside
``rules.edges`` — are migrated on a key's first event after the restore: its edges move
into the map state, and from then on the summary is stored without them. The fourth
element ``EDGES_IN_MAP_STATE`` makes a job of the code before this layout fail on such a
state (it unpacks three) instead of running on an author with no followers: going back
to that code needs a savepoint taken before the upgrade, or a deploy without savepoint
followed by ``feedctl rebuild``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from feedline.rules.fanout import AuthorState, Edge, Version
from pipelines.streaming.state_map import MapStateLike, StateMap

EDGES_STATE = "author-edges"
"""Name of the map state of follower edges (savepoints restore it by this name)."""
EXPIRY_STATE = "edge-expiry"
"""Name of the map state of edges due for pruning: ``"<timer>/<i>"`` -> follower id."""
EXPIRY_COUNT_STATE = "edge-expiry-count"
"""Name of the map state of how many followers each pruning timer has: timer -> count."""
POST_SWEEP_STATE = "post-sweep"
"""Name of the map state of the timers at which deleted posts are looked at: timer -> True."""
EDGES_IN_MAP_STATE = "edges-in-map-state"
"""The fourth element of the ``author-state`` tuple: this module's layout."""


StoredEdge = tuple[Version | None, tuple[Version, ...]]
"""An ``Edge`` as the map state holds it: ``(last_unfollow, follows)``."""


class EdgeEntries:
    """The map state of edges seen as ``Edge`` objects (stored as ``StoredEdge`` tuples)."""

    def __init__(self, state: MapStateLike) -> None:
        self._state = state

    def get(self, key: str) -> Edge | None:
        """The follower's edge, or None."""
        stored = self._state.get(key)
        return None if stored is None else _edge(stored)

    def put(self, key: str, value: Edge) -> None:
        """Store the follower's edge."""
        self._state.put(key, (value.last_unfollow, tuple(value.follows)))

    def remove(self, key: str) -> None:
        """Forget the follower's edge."""
        self._state.remove(key)

    def keys(self) -> Iterable[Any]:
        """The follower ids."""
        return self._state.keys()

    def items(self) -> Iterator[tuple[str, Edge]]:
        """Every (follower id, edge)."""
        for key, stored in self._state.items():
            yield key, _edge(stored)


class ExpiryQueue:
    """The follower ids due for pruning at each event-time timer of one author.

    One entry per follow change (``"<timer>/<i>"``) beside a count per timer, so noting a
    change reads and writes two small entries however many share its timer (a list per
    timer would be re-pickled whole on each: quadratic for a bulk of follows stamped
    alike). A follower noted twice under one timer is pruned twice, which is harmless.
    """

    def __init__(self, entries: MapStateLike, counts: MapStateLike) -> None:
        self._entries = entries
        self._counts = counts

    def note(self, due: int, follower_id: str) -> None:
        """Note ``follower_id`` for the timer at ``due``."""
        count = self._counts.get(due) or 0
        self._entries.put(f"{due}/{count}", follower_id)
        self._counts.put(due, count + 1)

    def take(self, due: int) -> list[str]:
        """The follower ids noted for ``due``, in order, forgotten."""
        count = self._counts.get(due) or 0
        taken = []
        for i in range(count):
            key = f"{due}/{i}"
            taken.append(self._entries.get(key))
            self._entries.remove(key)
        self._counts.remove(due)
        return taken


def _edge(stored: StoredEdge) -> Edge:
    last_unfollow, follows = stored
    return Edge(last_unfollow, list(follows))


def attach_edges(rules: AuthorState, edges: MapStateLike) -> tuple[StateMap, int]:
    """Give ``rules`` its edges as a view of ``edges``; returns (the view, edges migrated).

    Edges still inside ``rules`` (a state saved in an older layout) are moved into the map
    state first; they are written when the view is flushed.
    """
    view = StateMap(EdgeEntries(edges))
    held = rules.edges
    for follower_id, edge in held.items():
        view[follower_id] = edge
    rules.edges = view  # type: ignore[assignment]  # a MutableMapping the rules use as dict
    return view, len(held)


def detach_edges(rules: AuthorState, view: StateMap) -> int:
    """Write back the edges this event set or changed; returns the map-state writes.

    ``rules.edges`` is an empty dict again afterwards, ready to be stored as the summary.
    """
    writes = view.flush()
    rules.edges = {}
    return writes
