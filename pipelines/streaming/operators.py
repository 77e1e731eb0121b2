"""The Flink operators of the streaming jobs: the keyed rule operators and the store writers.

Each keyed rule operator holds one rules state object per key (pickled in a ValueState)
together with the key's recently seen event ids (bounded by event time and count), so
a duplicate inside that window is skipped outright (the rules are idempotent anyway;
the window saves the work), and the key's write clock (``feedline.rules.write_order``):
each effect leaves with the write time its rows keep order by.

The writers are keyed by the owner of the rows they write, hashed into buckets
(``write_order.owner_bucket``); each batches effects across events and owners and keeps
a bucket's unwritten effects in that bucket's keyed state, so a completed checkpoint
covers every effect before its barrier (written, or written after a restore) — with the
restored Kafka offsets, an exactly-once *effect* from at-least-once delivery plus writes
that are idempotent and ordered by their write times.

Savepoints restore by operator uid (``job_graph`` and the job modules) and state name
(``state_name``, ``fanout_state.EDGES_STATE``, ``EXPIRY_STATE``, ``EXPIRY_COUNT_STATE``,
``pending-effects``): those strings never change; the fan-out author state's layout and its
migration are in ``fanout_state``. The state holds only ``feedline.rules`` objects and
effects, never a class of this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import (
    ListStateDescriptor,
    MapStateDescriptor,
    ValueStateDescriptor,
)

from feedline.rules.dedup import RecentEvents
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job, RuleKey, apply_event, new_state
from feedline.rules.retention import (
    FOLLOW_KINDS,
    POST_KINDS,
    prune_due,
    prune_edge,
    prune_posts,
)
from feedline.rules.write_order import EventClock
from feedline.stores.push import feed_events
from pipelines.streaming.fanout_state import (
    EDGES_IN_MAP_STATE,
    EDGES_STATE,
    EXPIRY_COUNT_STATE,
    EXPIRY_STATE,
    POST_SWEEP_STATE,
    EdgeEntries,
    ExpiryQueue,
    attach_edges,
    detach_edges,
)

T = TypeVar("T")


def attempt_number(runtime_context: RuntimeContext) -> int:
    """The subtask's attempt number (0 first; one more after each restart).

    In thread mode PyFlink 2.2 asks the Java ``RuntimeContext`` for ``getAttemptNumber``,
    which Flink 2 moved to its ``TaskInfo``: read it there.
    """
    try:
        return int(runtime_context.get_attempt_number())
    except AttributeError:
        java = runtime_context._runtime_context
        return int(java.getTaskInfo().getAttemptNumber())


def _event_of(value: Any) -> Any:
    """The event of an input element (a bare event, or ``(arrival, event)``)."""
    return value[1] if isinstance(value, tuple) else value


class _RuleOperator(KeyedProcessFunction):
    """Applies the rules of one job's keys to their keyed state, skipping recent duplicates.

    One ValueState per key holds ``(rules state, RecentEvents, EventClock)`` (the fan-out
    job adds a layout marker and keeps follower edges apart: ``FanoutOperator``). PyFlink
    caches it in the Python worker (``python.state.cache-size``), so the duplicate check
    needs no round trip to the JVM's state backend. The stream is keyed by
    ``RuleKey.text``; it emits ``(first write time, effects)`` per event, the effects'
    write times following one another from the first.
    """

    state_name = "rules-state"
    """Name of the keyed state (savepoints restore it by this name: never rename)."""
    job: Job

    def __init__(self, config: RulesConfig, dedup_window_s: int) -> None:
        self.config = config
        self.dedup_window_ms = dedup_window_s * 1000

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declare the keyed state and metrics."""
        self.state = runtime_context.get_state(
            ValueStateDescriptor(self.state_name, Types.PICKLED_BYTE_ARRAY())
        )
        self.attempt = attempt_number(runtime_context)  # restarts (EventClock.resume)
        metrics = runtime_context.get_metrics_group()
        self.duplicates = metrics.counter("duplicate_events")
        self.events = metrics.counter("events")

    def process_element(self, value: Any, ctx: Any) -> Iterator[tuple[int, list[Any]]]:
        """Skip a recent duplicate; otherwise apply the event and emit its stamped effects."""
        event = _event_of(value)
        rules, recent, clock = self._stored()
        clock.resume(self.attempt)
        if recent.check_and_add(event.event_id, event.event_time_ms):
            self.duplicates.inc()
            self._save(rules, recent, clock)
            return
        self.events.inc()
        if rules is None:
            rules = new_state(RuleKey.parse(ctx.get_current_key(), self.job))
        effects = self._apply(rules, event)
        first = clock.stamp(time.time_ns() // 1000, len(effects))
        self._save(rules, recent, clock)
        if effects:
            yield first, effects

    def _apply(self, rules: Any, event: Any) -> list[Any]:
        return apply_event(rules, event, self.config)

    def _save(self, rules: Any, recent: RecentEvents, clock: EventClock) -> None:
        self.state.update((rules, recent, clock))

    def _stored(self) -> tuple[Any, RecentEvents, EventClock]:
        stored = self.state.value()
        if stored is None:
            return None, RecentEvents(self.dedup_window_ms), EventClock()
        if len(stored) == 2:
            # Saved before write clocks existed (the stores then held write times from the
            # writer's wall clock): start after now, so no later write falls behind them.
            rules, recent = stored
            return rules, recent, EventClock(time.time_ns() // 1000)
        rules, recent, clock = stored[:3]  # a fourth element names the fan-out layout
        return rules, recent, clock


class FanoutOperator(_RuleOperator):
    """The fan-out rules on per-author state (uploads keyed by author, follows by followee).

    The author's follower edges live in map state, one entry per follower, and the rest
    of ``AuthorState`` in the ValueState (``fanout_state``): an event reads and writes
    the entries it touches, a post walks them once; a state of the older one-object
    layout is migrated on its key's first event.

    With a lateness bound ``L`` (``feed.lateness_bound_s``) the edges are pruned
    (``feedline.rules.retention``): a follow or unfollow at event time ``t`` sets an
    event-time timer at ``t + L + 1`` and notes its follower under that time
    (``fanout_state.ExpiryQueue``: map states ``edge-expiry`` and ``edge-expiry-count``);
    the watermark is the Kafka records' append time (``job_graph``), so when the timer
    fires every event still to come has an event time after ``W - L >= t + 1``, and
    ``prune_edge`` with that horizon drops the follower's tombstone (or the follows it no
    longer needs). The work is two small entries per follow change, never a walk of the
    author's followers.
    """

    state_name = "author-state"
    job = Job.FANOUT

    def __init__(self, config: RulesConfig, dedup_window_s: int,
                 lateness_bound_ms: int | None = None) -> None:
        super().__init__(config, dedup_window_s)
        self.lateness_bound_ms = lateness_bound_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declare the summary, edge and expiry states and the metrics."""
        super().open(runtime_context)
        self.edges = runtime_context.get_map_state(
            MapStateDescriptor(EDGES_STATE, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))
        self.expiry = ExpiryQueue(
            runtime_context.get_map_state(
                MapStateDescriptor(EXPIRY_STATE, Types.STRING(), Types.STRING())),
            runtime_context.get_map_state(
                MapStateDescriptor(EXPIRY_COUNT_STATE, Types.LONG(), Types.INT())))
        self.sweeps = runtime_context.get_map_state(
            MapStateDescriptor(POST_SWEEP_STATE, Types.LONG(), Types.BOOLEAN()))
        metrics = runtime_context.get_metrics_group()
        self.edge_writes = metrics.counter("edge_writes")
        self.edges_migrated = metrics.counter("edges_migrated")
        self.edges_pruned = metrics.counter("edges_pruned")
        self.posts_pruned = metrics.counter("posts_pruned")

    def process_element(self, value: Any, ctx: Any) -> Iterator[tuple[int, list[Any]]]:
        """``_RuleOperator.process_element``, then note what is due for pruning.

        A follow change's edge; after a post event, the author's deleted posts.
        """
        yield from super().process_element(value, ctx)
        event = _event_of(value)
        if self.lateness_bound_ms is None:
            return
        if event.event_type in FOLLOW_KINDS:
            due = prune_due(event.event_time_ms, self.lateness_bound_ms)
            self.expiry.note(due, event.follower_id)
            ctx.timer_service().register_event_time_timer(due)
        elif event.event_type in POST_KINDS:
            due = prune_due(event.event_time_ms, self.lateness_bound_ms)
            self.sweeps.put(due, True)
            ctx.timer_service().register_event_time_timer(due)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        """Prune with the horizon ``W - L``: the edges noted under ``timestamp``.

        At a post event's timer, also the deleted posts no window reaches.
        """
        waiting = self.expiry.take(timestamp)
        sweep = self.sweeps.contains(timestamp)
        if sweep:
            self.sweeps.remove(timestamp)
        if self.lateness_bound_ms is None:
            return
        horizon = ctx.timer_service().current_watermark() - self.lateness_bound_ms
        if sweep:
            self._sweep_posts(horizon)
        if waiting:
            entries = EdgeEntries(self.edges)
            for follower_id in waiting:
                edge = entries.get(follower_id)
                if edge is None:
                    continue  # pruned already (noted twice under this timer)
                kept = prune_edge(edge, horizon)
                if kept is None:
                    entries.remove(follower_id)
                    self.edges_pruned.inc()
                elif kept is not edge:
                    entries.put(follower_id, kept)
        yield from ()

    def _sweep_posts(self, horizon_ms: int) -> None:
        """``prune_posts`` on this author's state, stored again only if it changed.

        It walks the edges only for a deleted post old enough to go and not found held.
        """
        rules, recent, clock = self._stored()
        if rules is None or not rules.retired_keys():
            return
        before = (list(rules.retired_keys()), rules.held, bool(rules.edges))  # edges: old layout
        pruned = self._with_edges(rules, lambda: prune_posts(rules, horizon_ms, self.config))
        self.posts_pruned.inc(pruned)
        if pruned or (rules.retired, rules.held, False) != before:
            self._save(rules, recent, clock)  # else unchanged: no write

    def _apply(self, rules: Any, event: Any) -> list[Any]:
        return self._with_edges(rules, lambda: apply_event(rules, event, self.config))

    def _with_edges(self, rules: Any, step: Callable[[], T]) -> T:
        """``step()`` with the author's edges attached to ``rules``, written back after."""
        view, migrated = attach_edges(rules, self.edges)
        try:
            result = step()
        finally:
            self.edge_writes.inc(detach_edges(rules, view))
        self.edges_migrated.inc(migrated)
        return result

    def _save(self, rules: Any, recent: RecentEvents, clock: EventClock) -> None:
        self.state.update((rules, recent, clock, EDGES_IN_MAP_STATE))


class CounterOperator(_RuleOperator):
    """The counter rules on per-post engagement or per-user state (``post:ID`` / ``user:ID``)."""

    state_name = "counter-state"
    job = Job.COUNTERS


def open_writer(settings_json: str) -> tuple[Any, Any]:
    """A FeedWriter on the configured stores, and the function that closes them."""
    from feedline.settings import StreamingSettings
    from feedline.stores.cluster_writes import cache_client
    from feedline.stores.cql import connect
    from feedline.stores.feed_writer import FeedWriter
    from schemas.redis_keys import RedisKeys

    settings = StreamingSettings.model_validate_json(settings_json)
    cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
    client = cache_client(settings.redis)
    writer = FeedWriter(session, client,
                        RedisKeys(settings.redis.key_prefix, cluster=settings.redis.cluster),
                        timeline_cap=settings.feed.timeline_cap)

    def close() -> None:
        cluster.shutdown()
        client.close()

    return writer, close


class BufferedWriteEffects(KeyedProcessFunction):
    """Writes stamped effects in batches across events and owners; unwritten ones in state.

    Keyed by writer bucket (``write_order.owner_bucket``): every effect on one owner's rows
    reaches the same instance, in the order the rules emitted it. Each element — one
    event's effects on one bucket, as ``(write time, effect)`` pairs — is appended to the
    bucket's ListState (checkpointed with everything else) and to an in-memory buffer
    shared by all the buckets of this instance (ticks, elements without effects, visit
    every bucket: ``job_graph.writer_ticks``). The buffer is written when it holds
    ``flush_effects`` effects, or when a bucket's processing-time timer fires
    (``flush_ms`` after the bucket's first unwritten element); a bucket's state is cleared
    only in its own timer, after the buffer holding its effects was written. So a
    checkpoint covers every effect of the events before its barrier: written already, or
    in state and written after a restore, ahead of the bucket's first new element (or at
    its first tick or timer), perhaps a second time — harmless, as the write times make
    every write idempotent and never let an older one win.
    """

    def __init__(
        self, settings_json: str, flush_effects: int = 2000, flush_ms: int = 100
    ) -> None:
        self.settings_json = settings_json
        self.flush_effects = flush_effects
        self.flush_ms = flush_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        """Connect to the stores; declare the pending-effects state and metrics."""
        self.writer, self.close_stores = open_writer(self.settings_json)
        self.pending = runtime_context.get_list_state(
            ListStateDescriptor("pending-effects", Types.PICKLED_BYTE_ARRAY())
        )
        self.buffer: list[Any] = []
        self.pushes: list[Any] = []
        """The realtime push events of the buffered effects."""
        self.timers: dict[str, int] = {}
        """Bucket -> its timer registered by this instance (its state holds elements)."""
        self.clean: set[str] = set()
        """Buckets whose state holds only elements this instance buffered."""
        metrics = runtime_context.get_metrics_group()
        self.written = metrics.counter("effects_written")
        self.batches = metrics.counter("write_batches")

    def _flush(self) -> int:
        count = self.writer.write_stamped(self.buffer, self.pushes)
        self.buffer = []
        self.pushes = []
        self.written.inc(count)
        self.batches.inc()
        return count

    def _take(self, held: Any) -> None:
        """Buffer one element held in state: (pairs, push events).

        States of an older savepoint hold the pairs alone: their push events are judged
        among them, as before the events were carried.
        """
        if isinstance(held, list):
            self.buffer.extend(held)
            self.pushes.extend(feed_events([effect for _at, effect in held]))
        else:
            pairs, pushes = held
            self.buffer.extend(pairs)
            self.pushes.extend(pushes)

    def _adopt(self, bucket: str) -> bool:
        """Buffer what the bucket's state held before this instance; True if anything.

        Restored from a checkpoint, perhaps never written, it goes ahead of anything new of
        the bucket: a bucket's effects reach the stores in the order the rules emitted
        them, across a restore too (a celebrity's flag before the post that needs its
        outbox). Once per bucket and instance. (Restoring a savepoint of another bucket
        count puts an owner's old effects in another bucket than its new ones: see
        ``write_order``.)
        """
        if bucket in self.clean:
            return False
        self.clean.add(bucket)
        held = list(self.pending.get() or [])
        for element in held:
            self._take(element)
        return bool(held)

    def process_element(self, value: tuple[str, list[Any], list[Any]],
                        ctx: Any) -> Iterator[int]:
        """Buffer one event's effects on this bucket; write the buffer when it is full.

        The bucket's first element in this instance takes what its state held first. A
        tick (no effects: ``job_graph.writer_ticks``) does only that, so a restored bucket
        no new effect reaches is written too.
        """
        bucket, stamped, pushes = value
        took = self._adopt(bucket)
        if stamped:
            self.buffer.extend(stamped)
            self.pushes.extend(pushes)
            self.pending.add((stamped, pushes))
        if (took or stamped) and bucket not in self.timers:
            self._timer(bucket, ctx)  # its state is forgotten there, once written
        if len(self.buffer) >= self.flush_effects:
            yield self._flush()

    def _timer(self, bucket: str, ctx: Any) -> None:
        now = ctx.timer_service().current_processing_time()
        due = (now // self.flush_ms + 1) * self.flush_ms  # buckets share firing times
        ctx.timer_service().register_processing_time_timer(due)
        self.timers[bucket] = due

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[int]:
        """Write what waited, then forget this bucket's elements (all written by then).

        A timer restored with the state may fire before any element of its bucket: it
        takes what the state held, like a first element (``_adopt``).
        """
        bucket = ctx.get_current_key()
        if self.timers.get(bucket) == timestamp:
            del self.timers[bucket]
        self._adopt(bucket)
        if self.buffer:
            yield self._flush()
        self.pending.clear()

    def close(self) -> None:
        """Release the connections."""
        self.close_stores()
