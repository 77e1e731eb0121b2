"""Retention of the fan-out state: the lateness bound, and pruning edges behind it.

Exact, order-independent rules must remember every unfollow (a follow older than it may
still come) unless old events are refused. The design:

* admission, per event: an event is *too late* when its arrival time (the Kafka record
  timestamp, broker-assigned ``LogAppendTime``: non-decreasing per partition) minus its
  event time exceeds a lateness bound ``L``. Streaming dead-letters it (``too_late``), the
  rebuild skips and counts it, with the same function on the same two numbers, so every
  engine applies the same event set; a duplicate counts when one copy is admitted (a
  dead letter replayed more than ``L`` after its event time is too late as well);
* horizon, per key: ``H = W - L`` where ``W`` is at most the arrival time of any record
  still to come — the operator's watermark over per-partition arrival times (without
  idleness: an idle partition holds it back, which delays pruning, never falsifies it).
  Every event admitted later has ``event_time >= arrival - L >= W - L = H``;
* ``prune_edges(state, H)`` changes no effect of any event at or after ``H``, so the
  stores stay equal whether and whenever an engine prunes (parity holds);
* deleted posts: the payload goes at once (the state never keeps a post's payload,
  ``feedline.rules.fanout.PostState``); its place in ``order`` and its id once it is
  neither among the newest ``follow_merge_limit`` posts before ``H`` nor in a current
  follower's merge window (deleted posts keep their place in that count): ``prune_posts``.
  Dropping the id is sound where every create of a post id carries the same event time
  (true for API-minted ids): any other create of it is then older than ``H``, so too late.
  A second, distinct delete of a pruned post retracts it again (the post stays retracted;
  its ``deleted_at`` in CQL moves to that write) and leaves a small entry (deleted, never
  created) that is not pruned; so does a delete whose create never came.

In place: the topics stamp records with the broker's append time (``TOPIC_CONFIGS`` of
``jobs.localstack.kafka``, the compose file, Terraform; existing topics are altered); the
archive keeps each line's offset and record timestamp beside its part
(``feedline.archive.layout``: arrivals; parts archived before that have none); and the
admission rule: ``feed.lateness_bound_s`` (off by default: the sample workload's events
carry fixed times, ``feedline.workload.EPOCH``, which any bound refuses as they age),
``too_late`` in the streaming parse (``pipelines.streaming.parse``, on the source's
``timestamp`` metadata column) and in every archive read (``Archive.admitted_lines``).

Pruning, in streaming: with a bound, the sources' watermark is the records' append time
(``pipelines.streaming.job_graph.kafka_rows``), and the fan-out operator prunes each
follow change's edge once the watermark passes ``prune_due`` (an event-time timer per
change), and runs ``prune_posts`` at the ``prune_due`` of each post event (a created post
moves the window of a new follow; a delete makes a candidate):
``pipelines.streaming.operators.FanoutOperator``. The rebuild does not prune: pruning
changes no effect of an admitted event (but the repeated retraction above), so the stores
are equal either way (``tests/e2e/test_state_retention.py`` checks the streaming side
against the reference).
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right

from feedline.rules.fanout import AuthorState, Edge, PostKey, RulesConfig
from schemas.event_contracts import epoch_ms

#: The dead-letter reason of an event refused by the lateness bound.
TOO_LATE = "too_late"


def bound_ms(lateness_bound_s: float | None) -> int | None:
    """``feed.lateness_bound_s`` in whole milliseconds, as ``too_late`` takes it."""
    return None if lateness_bound_s is None else round(lateness_bound_s * 1000)


def too_late(arrival_ms: int, event_time_ms: int, bound_ms: int | None) -> bool:
    """Whether an event arrived more than ``bound_ms`` after its own time (None: never).

    ``arrival_ms`` is its Kafka record's timestamp (the broker's append time); every engine
    applies this same test to the same two numbers, so they admit the same events.
    """
    return bound_ms is not None and arrival_ms - event_time_ms > bound_ms


def line_event_time_ms(line: bytes) -> int | None:
    """The ``event_time`` of an archived line, as ``too_late`` reads it.

    None when the line is not a JSON object with an offset-carrying ``event_time`` (such a
    line is no valid event: the rules refuse it whatever its time).
    """
    try:
        record = json.loads(line)
        return epoch_ms(record["event_time"]) if isinstance(record, dict) else None
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


def line_too_late(line: bytes, arrival_ms: int, bound_ms: int | None) -> bool:
    """``too_late`` for an archived line (a line with no event time is never too late)."""
    if bound_ms is None:
        return False
    moment = line_event_time_ms(line)
    return moment is not None and too_late(arrival_ms, moment, bound_ms)


#: The events that change an edge (and so may leave something to prune).
FOLLOW_KINDS = frozenset({"follow", "unfollow"})
#: The events after which deleted posts may be pruned (a post moves the horizon's window).
POST_KINDS = frozenset({"post_created", "post_deleted"})


def prune_due(event_time_ms: int, bound_ms: int) -> int:
    """The watermark at which an edge change at ``event_time_ms`` can be pruned.

    From that arrival time on, ``W - L`` exceeds the change's event time.
    """
    return event_time_ms + bound_ms + 1


def prune_edge(edge: Edge, horizon_ms: int) -> Edge | None:
    """The edge with what no event at or after ``horizon_ms`` can tell apart forgotten.

    None: the edge can go (an unfollow tombstone whose last unfollow is older than the
    horizon). A following edge forgets an unfollow older than the horizon and its follows
    older than the horizon but the one it started with (its ``since_ms``). Every later
    event of the edge has a newer version than anything forgotten, so it is accepted and
    has the same effects either way. The edge returned is ``edge`` itself when nothing
    changed. Sound only where no event older than the horizon can still arrive (the
    module docstring).
    """
    if not edge.following:
        return None if edge.last_unfollow is None or edge.last_unfollow[0] < horizon_ms else edge
    follows = edge.follows[:1] + [v for v in edge.follows[1:] if v[0] >= horizon_ms]
    last = edge.last_unfollow
    if last is not None and last[0] < horizon_ms:
        last = None
    if follows == edge.follows and last == edge.last_unfollow:
        return edge
    return Edge(last, follows)


def prune_edges(state: AuthorState, horizon_ms: int) -> int:
    """``prune_edge`` on every edge of an author; returns the edges dropped."""
    dropped = 0
    for follower_id, edge in list(state.edges.items()):
        kept = prune_edge(edge, horizon_ms)
        if kept is None:
            del state.edges[follower_id]
            dropped += 1
        elif kept is not edge:
            state.edges[follower_id] = kept
    return dropped


def prune_posts(state: AuthorState, horizon_ms: int, config: RulesConfig) -> int:
    """Drop the deleted posts no window can reach any more; returns how many went.

    A deleted post ``p`` created before ``horizon_ms`` leaves ``order`` and ``posts`` once
    it is outside every follow-merge window still to be asked for: the window of a follow
    at or after the horizon (``p`` has at least ``follow_merge_limit`` posts between it and
    the horizon) and that of each current follower (none of them started following within
    ``follow_merge_limit`` posts after ``p``). Removing posts outside a window changes no
    window, so no rule gives another answer for any event at or after the horizon (every
    since a follower can still get is a current one or one at or after it). Its id goes
    too, which is sound where every create of a post id carries one event time, as the
    API's ids do: any other create of it is older than the horizon, so refused as too
    late. The followers' starts are read only when some post is a candidate that no
    earlier walk found held (``AuthorState.held``): one walk of the edges per deleted post
    at most, so a celebrity, whose posts walk no follower, is not walked per post either.
    A held post is looked at again at the next walk (a later candidate's).
    """
    if not state.retired_keys():
        return 0
    order, limit = state.order, config.follow_merge_limit
    cut = bisect_left(order, (horizon_ms, "")) - limit
    noted = sorted({key for key in state.retired_keys() if _placed_deleted(state, key)})
    candidates = [key for key in noted if bisect_left(order, key) < cut]
    walked = state.held
    if not candidates or (walked is not None and set(candidates) <= set(walked)):
        state.retired = noted
        return 0
    oldest = candidates[0][0]
    splits = sorted({bisect_left(order, (edge.since_ms, ""))
                     for _follower, edge in state.edges.items()
                     if edge.following and oldest < edge.since_ms < horizon_ms})
    gone: set[PostKey] = set()
    for key in candidates:
        index = bisect_left(order, key)
        # Held while a follower's window (the ``limit`` posts before its start) has it.
        if bisect_right(splits, index + limit) == bisect_right(splits, index):
            gone.add(key)
    if gone:
        state.order = [key for key in order if key not in gone]
        for _created, post_id in gone:
            del state.posts[post_id]
    state.retired = [key for key in noted if key not in gone]
    state.held = [key for key in candidates if key not in gone]
    return len(gone)


def _placed_deleted(state: AuthorState, key: PostKey) -> bool:
    """Whether ``key`` is still a deleted post's place in ``order``."""
    post = state.posts.get(key[1])
    return post is not None and post.deleted and post.created is not None \
        and post.created[0] == key[0]
