"""The Flink operators of the notifications job: its two keyed rule steps and its writer.

* ``PostNotificationOperator`` (key ``npost:POST``): a post's like and comment groups and
  its mentions. Plain effects go on to the writer; mention items are candidates, sent to
  the side output ``MENTION_CANDIDATES`` as ``(recipient:USER, effect)`` for the gate.
* ``RecipientNotificationOperator`` (key ``recipient:USER``): the user's follow groups
  and the mention gate (``apply_mention_candidate``); its input is the events routed to
  the key and the candidates.
* ``NotificationWriteOperator`` (key: the recipient id): the effects written to the
  stores by a ``NotificationWriter``, batched across recipients.

State. Each rule step keeps the key's bounded summary with its ``RecentEvents`` in one
ValueState, and the per-actor registers in MapState, one entry per actor (per comment, per
follower): an event reads and writes only the entries it touches (``state_map``,
``notification_steps``), so a post with 100,000 likers costs O(window) per like, not a
re-pickle of 100,000 registers.
Savepoints restore by operator uid (``notifications_job``) and state name (the
``*_STATE`` strings below): never rename them. The state holds only ``feedline.rules``
objects and effects.

Exactly-once effect, as in ``operators.BufferedWriteEffects`` but keyed: the writer keeps
each recipient's unwritten effects in that key's ListState and a processing-time timer;
effects are batched in memory across recipients and written when ``flush_effects`` are
buffered or the batch is ``flush_ms`` old; a key's ListState is cleared by its own timer,
once the batch holding its effects was written. So a checkpoint covers every effect before
its barrier: written, or in some key's state with a timer that writes it after a restore
(effects written but not yet cleared are written again, in order, which changes nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import (
    ListStateDescriptor,
    MapStateDescriptor,
    ValueStateDescriptor,
)

from feedline.rules.dedup import RecentEvents
from pipelines.streaming.notification_steps import (
    fresh_summary,
    is_candidate,
    leaves_recipient_unchanged,
    post_step,
    recipient_step,
)

#: Side output of the post step: ``(recipient key text, mention effect)``.
MENTION_CANDIDATES = OutputTag("mention-candidates", Types.PICKLED_BYTE_ARRAY())

POST_STATE = "npost-summary"
POST_LIKES_STATE = "npost-likes"
POST_COMMENTS_STATE = "npost-comments"
RECIPIENT_STATE = "recipient-summary"
RECIPIENT_EDGES_STATE = "recipient-followers"
PENDING_STATE = "pending-notifications"


def _map_state(ctx: RuntimeContext, name: str) -> Any:
    return ctx.get_map_state(MapStateDescriptor(name, Types.STRING(), Types.PICKLED_BYTE_ARRAY()))


class _NotificationKeyOperator(KeyedProcessFunction):
    """Shared by the two rule steps: the summary state, duplicates, metrics."""

    summary_name: str

    def __init__(self, dedup_window_s: int) -> None:
        self.dedup_window_ms = dedup_window_s * 1000

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declare the summary state and the metrics."""
        self.summary = runtime_context.get_state(
            ValueStateDescriptor(self.summary_name, Types.PICKLED_BYTE_ARRAY()))
        metrics = runtime_context.get_metrics_group()
        self.duplicates = metrics.counter("duplicate_events")
        self.events = metrics.counter("events")
        self.register_writes = metrics.counter("register_writes")

    def _stored(self) -> tuple[Any, RecentEvents]:
        stored = self.summary.value()
        return stored if stored is not None else (None, RecentEvents(self.dedup_window_ms))

    def _is_duplicate(self, event: Any, summary: Any, recent: RecentEvents) -> bool:
        if recent.check_and_add(event.event_id, event.event_time_ms):
            self.duplicates.inc()
            self.summary.update((summary, recent))
            return True
        self.events.inc()
        return False


class PostNotificationOperator(_NotificationKeyOperator):
    """The post rules on ``npost:POST`` keys; mention candidates to the side output."""

    summary_name = POST_STATE

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declare the summary and the two register maps."""
        super().open(runtime_context)
        self.likes = _map_state(runtime_context, POST_LIKES_STATE)
        self.comments = _map_state(runtime_context, POST_COMMENTS_STATE)

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        """Apply one event of the post; emit plain effects and mention candidates."""
        event = value[1]
        summary, recent = self._stored()
        if self._is_duplicate(event, summary, recent):
            return
        if summary is None:
            summary = fresh_summary(ctx.get_current_key())
        plain, candidates, writes, cleared = post_step(summary, self.likes, self.comments,
                                                       event)
        if cleared:  # the post was deleted: its registers are gone
            self.likes.clear()
            self.comments.clear()
        self.register_writes.inc(writes)
        self.summary.update((summary, recent))
        if plain:
            yield plain
        for candidate in candidates:
            yield MENTION_CANDIDATES, candidate


class RecipientNotificationOperator(_NotificationKeyOperator):
    """Follow groups and the mention gate on ``recipient:USER`` keys."""

    summary_name = RECIPIENT_STATE

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declare the summary and the follower register map."""
        super().open(runtime_context)
        self.edges = _map_state(runtime_context, RECIPIENT_EDGES_STATE)

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        """Apply an event of the user, or pass a mention candidate through the gate."""
        item = value[1]
        summary, recent = self._stored()
        if leaves_recipient_unchanged(summary, item):
            self.events.inc()
            return
        if not is_candidate(item) and self._is_duplicate(item, summary, recent):
            return
        if summary is None:
            summary = fresh_summary(ctx.get_current_key())
        effects, writes = recipient_step(summary, self.edges, item)
        self.register_writes.inc(writes)
        self.summary.update((summary, recent))
        if effects:
            yield effects


def open_notification_writer(settings_json: str) -> tuple[Any, Any]:
    """A NotificationWriter on the configured stores, and the function that closes them."""
    from feedline.settings import StreamingSettings
    from feedline.stores.cluster_writes import cache_client
    from feedline.stores.cql import connect
    from feedline.stores.notification_writer import NotificationWriter
    from schemas.redis_keys import RedisKeys

    settings = StreamingSettings.model_validate_json(settings_json)
    cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
    client = cache_client(settings.redis)
    writer = NotificationWriter(
        session, client, RedisKeys(settings.redis.key_prefix, cluster=settings.redis.cluster))

    def close() -> None:
        cluster.shutdown()
        client.close()

    return writer, close


class NotificationWriteOperator(KeyedProcessFunction):
    """Writes effects keyed by recipient, batched across recipients (module docstring).

    Input: ``(recipient_id, [effects])``. Output: how many effects each write applied.
    The batch is written when it holds ``flush_effects`` effects or when a key's timer
    finds its oldest effect ``flush_ms`` old, so there is about one write per
    ``flush_ms`` however many recipients the batch spans.
    """

    def __init__(self, settings_json: str, flush_effects: int = 2000,
                 flush_ms: int = 100) -> None:
        self.settings_json = settings_json
        self.flush_effects = flush_effects
        self.flush_ms = flush_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        """Connect to the stores; declare the per-recipient pending state and metrics."""
        self.writer, self.close_stores = open_notification_writer(self.settings_json)
        self.pending = runtime_context.get_list_state(
            ListStateDescriptor(PENDING_STATE, Types.PICKLED_BYTE_ARRAY()))
        self.unwritten: dict[str, list[Any]] = {}
        """Effects buffered since the last write, by recipient (this incarnation)."""
        self.size = 0
        self.oldest_ms = 0
        """Processing time the oldest buffered effect arrived."""
        self.tracked: set[str] = set()
        """Recipients whose pending state this incarnation knows (and has a timer for)."""
        metrics = runtime_context.get_metrics_group()
        self.written = metrics.counter("effects_written")
        self.batches = metrics.counter("write_batches")

    def _buffer(self, recipient: str, effects: list[Any], now_ms: int) -> None:
        if not self.unwritten:
            self.oldest_ms = now_ms
        self.unwritten.setdefault(recipient, []).extend(effects)
        self.size += len(effects)

    def _load(self, recipient: str, now_ms: int) -> bool:
        """First sight of a key in this incarnation: effects restored in its state go first.

        True when there were some (the key's timer was restored with them).
        """
        self.tracked.add(recipient)
        restored = [e for batch in (self.pending.get() or []) for e in batch]
        if restored:
            self._buffer(recipient, restored, now_ms - self.flush_ms)  # due at once
        return bool(restored)

    def _flush(self) -> int:
        if not self.unwritten:
            return 0
        count = self.writer.write(e for effects in self.unwritten.values() for e in effects)
        self.unwritten.clear()
        self.size = 0
        self.written.inc(count)
        self.batches.inc()
        return count

    def process_element(self, value: Any, ctx: Any) -> Iterator[int]:
        """Buffer one event's effects of one recipient; write the batch when it is full."""
        recipient, effects = value
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        if recipient not in self.tracked:
            self._load(recipient, now)
            timers.register_processing_time_timer(now + self.flush_ms)
        self.pending.add(effects)
        self._buffer(recipient, effects, now)
        if self.size >= self.flush_effects:
            yield self._flush()

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[int]:
        """Write the batch if this key's effects are in it and it is due.

        Then forget this recipient's written effects (or look again when the batch is due).
        """
        recipient = ctx.get_current_key()
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        if recipient not in self.tracked:  # a timer restored from a checkpoint
            self._load(recipient, now)
        count = 0
        if recipient in self.unwritten:
            due = self.oldest_ms + self.flush_ms
            if now < due:
                timers.register_processing_time_timer(due)
                return
            count = self._flush()
        self.pending.clear()
        self.tracked.discard(recipient)
        if count:
            yield count

    def close(self) -> None:
        """Release the connections."""
        self.close_stores()
