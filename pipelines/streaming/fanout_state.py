"""The fan-out job's per-author state: follower edges in keyed map state. Pure, no PyFlink.

An author's ``AuthorState`` (``feedline.rules.fanout``) holds a register per follower who
ever followed (``edges``) beside its posts. Pickled whole into one ValueState, an author
with 100,000 followers costs a pickle of 100,000 registers on every event. So the job
keeps (state names are savepoint contracts: never rename them):

* ValueState ``author-state``: ``(AuthorState with edges == {}, RecentEvents, EventClock,
  EDGES_IN_MAP_STATE)`` — the summary: posts, order, celebrity flag, follower count;
* MapState ``author-edges`` (``EDGES_STATE``): follower id -> ``Edge``, one entry each.

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

from feedline.rules.fanout import AuthorState
from pipelines.streaming.state_map import MapStateLike, StateMap

EDGES_STATE = "author-edges"
"""Name of the map state of follower edges (savepoints restore it by this name)."""
EDGES_IN_MAP_STATE = "edges-in-map-state"
"""The fourth element of the ``author-state`` tuple: this module's layout."""


def attach_edges(rules: AuthorState, edges: MapStateLike) -> tuple[StateMap, int]:
    """Give ``rules`` its edges as a view of ``edges``; returns (the view, edges migrated).

    Edges still inside ``rules`` (a state saved in an older layout) are moved into the map
    state first; they are written when the view is flushed.
    """
    view = StateMap(edges)
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
