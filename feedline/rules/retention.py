"""Retention of the fan-out state: designed; ``prune_edges`` exists, no engine applies it yet.

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
* deleted posts: the payload can go at once; the post id only if every create of a post
  id carries the same event time (true for API-minted ids; otherwise a later, different
  create would revive it), and its slot in ``order`` only once it is neither among the
  newest ``follow_merge_limit`` posts before ``H`` nor in a current follower's merge
  window (deleted posts keep their place in that count).

In place: the topics stamp records with the broker's append time (``TOPIC_CONFIGS`` of
``jobs.localstack.kafka``, the compose file, Terraform; existing topics are altered), and
the archive keeps each line's offset and record timestamp beside its part
(``feedline.archive.layout``: arrivals; parts archived before that have none).

Missing before it can be applied:

* the rebuild does not read the arrivals yet (and a part without any could not be judged);
* the streaming sources read values, partition and offset only (no ``timestamp`` metadata
  column, no watermark: ``pipelines.streaming.job_graph.kafka_rows``);
* neither engine has the ``too_late`` admission rule, and no setting holds ``L``. It would
  be off by default: the sample workload's events carry fixed times
  (``feedline.workload.EPOCH``), which any bound refuses as they age.
"""

from __future__ import annotations

from feedline.rules.fanout import AuthorState, Edge


def prune_edges(state: AuthorState, horizon_ms: int) -> int:
    """Forget what no event at or after ``horizon_ms`` can tell apart; returns edges dropped.

    An unfollow tombstone (an edge not following) whose last unfollow is older than the
    horizon goes; a following edge forgets its older unfollow and the follows older than
    the horizon but the one it started with. Every later event of an edge has a newer
    version than anything dropped, so it is accepted and has the same effects either way.
    Sound only where no event older than the horizon can still arrive: no engine applies
    it yet (module docstring).
    """
    dropped = [
        follower_id
        for follower_id, edge in state.edges.items()
        if not edge.following
        and (edge.last_unfollow is None or edge.last_unfollow[0] < horizon_ms)
    ]
    for follower_id in dropped:
        del state.edges[follower_id]
    shrunk = {}
    for follower_id, edge in state.edges.items():
        follows = edge.follows[:1] + [v for v in edge.follows[1:] if v[0] >= horizon_ms]
        last = edge.last_unfollow
        if last is not None and last[0] < horizon_ms:
            last = None
        if follows != edge.follows or last != edge.last_unfollow:
            shrunk[follower_id] = Edge(last, follows)
    state.edges.update(shrunk)
    return len(dropped)
