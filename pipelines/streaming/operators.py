"""The Flink operators of the streaming jobs: the keyed rule operators and the store writer.

Each keyed rule operator holds one rules state object per key (pickled in a ValueState)
together with the key's recently seen event ids (bounded by event time and count), so
a duplicate inside that window is skipped outright (the rules are idempotent anyway;
the window saves the work). The writer
batches effects across events and keeps the unwritten batch in checkpointed state, so a
completed checkpoint covers every effect before its barrier (written, or written after a
restore) — with the restored Kafka offsets, an exactly-once *effect* from at-least-once
delivery plus idempotent writes.

Savepoints restore by operator uid (``job_graph`` and the job modules) and state name
(``state_name``, ``pending-effects``): those strings never change. The state holds only
``feedline.rules`` objects and effects, never a class of this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from feedline.rules.dedup import RecentEvents
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job, RuleKey, apply_event, new_state


class _RuleOperator(KeyedProcessFunction):
    """Applies the rules of one job's keys to their keyed state, skipping recent duplicates.

    One ValueState per key holds ``(rules state, RecentEvents)``. PyFlink caches it in
    the Python worker (``python.state.cache-size``), so the duplicate check needs no
    round trip to the JVM's state backend. The stream is keyed by ``RuleKey.text``.
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
        metrics = runtime_context.get_metrics_group()
        self.duplicates = metrics.counter("duplicate_events")
        self.events = metrics.counter("events")

    def process_element(self, value: Any, ctx: Any) -> Iterator[list[Any]]:
        """Skip a recent duplicate; otherwise apply the event and emit its effects."""
        event = value[1] if isinstance(value, tuple) else value
        stored = self.state.value()
        rules, recent = stored if stored is not None else (None, RecentEvents(self.dedup_window_ms))
        if recent.check_and_add(event.event_id, event.event_time_ms):
            self.duplicates.inc()
            self.state.update((rules, recent))
            return
        self.events.inc()
        if rules is None:
            rules = new_state(RuleKey.parse(ctx.get_current_key(), self.job))
        effects = apply_event(rules, event, self.config)
        self.state.update((rules, recent))
        if effects:
            yield effects


class FanoutOperator(_RuleOperator):
    """The fan-out rules on per-author state (uploads keyed by author, follows by followee)."""

    state_name = "author-state"
    job = Job.FANOUT


class CounterOperator(_RuleOperator):
    """The counter rules on per-post engagement or per-user state (``post:ID`` / ``user:ID``)."""

    state_name = "counter-state"
    job = Job.COUNTERS


def open_writer(settings_json: str) -> tuple[Any, Any]:
    """A FeedWriter on the configured stores, and the function that closes them."""
    import redis

    from feedline.settings import StreamingSettings
    from feedline.stores.cql import connect
    from feedline.stores.feed_writer import FeedWriter
    from schemas.redis_keys import RedisKeys

    settings = StreamingSettings.model_validate_json(settings_json)
    cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
    client = redis.Redis.from_url(settings.redis.url)
    writer = FeedWriter(session, client, RedisKeys(settings.redis.key_prefix),
                        timeline_cap=settings.feed.timeline_cap)

    def close() -> None:
        cluster.shutdown()
        client.close()

    return writer, close


class BufferedWriteEffects(KeyedProcessFunction):
    """Writes effects in batches across events, with the unwritten batch in keyed state.

    Effects are appended to a ListState (checkpointed with everything else) and to an
    in-memory buffer; the buffer is written when it holds ``flush_effects`` effects or
    ``flush_ms`` after its first entry (a processing-time timer). A checkpoint therefore
    covers every effect of the events before its barrier: written already, or pending
    in state and written after a restore. Batching lets one round of concurrent CQL
    statements and one Redis pipeline serve many events.

    Keyed by one constant key, so one instance writes and the effects' order is kept.
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
        self.buffer: list[Any] | None = None
        self.timer_due: int | None = None
        metrics = runtime_context.get_metrics_group()
        self.written = metrics.counter("effects_written")
        self.batches = metrics.counter("write_batches")

    def _restore(self) -> list[Any]:
        if self.buffer is None:  # first call after (re)start: pick up what state holds
            self.buffer = [e for batch in (self.pending.get() or []) for e in batch]
        return self.buffer

    def _flush(self) -> int:
        buffer = self._restore()
        count = self.writer.write(buffer)
        self.buffer = []
        self.pending.clear()
        self.written.inc(count)
        self.batches.inc()
        return count

    def process_element(self, effects: list[Any], ctx: Any) -> Iterator[int]:
        """Buffer one event's effects; write the batch when it is full."""
        buffer = self._restore()
        buffer.extend(effects)
        self.pending.add(effects)
        if len(buffer) >= self.flush_effects:
            yield self._flush()
        elif self.timer_due is None:
            self.timer_due = ctx.timer_service().current_processing_time() + self.flush_ms
            ctx.timer_service().register_processing_time_timer(self.timer_due)

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[int]:
        """Write whatever waited ``flush_ms``."""
        self.timer_due = None
        if self._restore():
            yield self._flush()

    def close(self) -> None:
        """Release the connections."""
        self.close_stores()
