"""The Flink functions of the streaming jobs: keyed rule state and the store writer.

Each keyed function holds one rules state object per key (pickled in a ValueState) and
a TTL'd map of recently seen event ids, so a duplicate inside that window is skipped
outright (the rules are idempotent anyway; the window saves the work). The writer
applies each event's effects synchronously, so everything before a checkpoint barrier
is in the stores when the checkpoint completes — with the restored Kafka offsets, that
gives an exactly-once *effect* from at-least-once delivery plus idempotent writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.common.time import Time
from pyflink.datastream import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from feedline.rules.counters import PostEngagementState, UserCounterState
from feedline.rules.dispatch import (
    apply_fanout_event,
    apply_post_counter_event,
    apply_user_counter_event,
)
from feedline.rules.fanout import AuthorState, RulesConfig


class _RuleState(KeyedProcessFunction):
    """Keyed rules state plus duplicate suppression; subclasses apply one event."""

    state_name = "rules-state"

    def __init__(self, config: RulesConfig, dedup_ttl_s: int) -> None:
        self.config = config
        self.dedup_ttl_s = dedup_ttl_s

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declare the keyed states and metrics."""
        self.state = runtime_context.get_state(
            ValueStateDescriptor(self.state_name, Types.PICKLED_BYTE_ARRAY())
        )
        seen = MapStateDescriptor("seen-event-ids", Types.STRING(), Types.BOOLEAN())
        seen.enable_time_to_live(
            StateTtlConfig.new_builder(Time.seconds(self.dedup_ttl_s)).build()
        )
        self.seen = runtime_context.get_map_state(seen)
        metrics = runtime_context.get_metrics_group()
        self.duplicates = metrics.counter("duplicate_events")
        self.events = metrics.counter("events")

    def apply(self, key: str, current: Any, event: Any) -> tuple[Any, list[Any]]:
        """Return the key's new state and the effects of ``event``."""
        raise NotImplementedError

    def process_element(self, value: Any, ctx: Any) -> Iterator[list[Any]]:
        """Skip a recent duplicate; otherwise apply the event and emit its effects."""
        event = value[1] if isinstance(value, tuple) else value
        if self.seen.contains(event.event_id):
            self.duplicates.inc()
            return
        self.seen.put(event.event_id, True)
        self.events.inc()
        state, effects = self.apply(ctx.get_current_key(), self.state.value(), event)
        self.state.update(state)
        if effects:
            yield effects


class FanoutState(_RuleState):
    """Per-author fan-out state (uploads keyed by author, follows by followee)."""

    state_name = "author-state"

    def apply(self, key: str, current: Any, event: Any) -> tuple[Any, list[Any]]:
        """Apply an upload or follow event to the author's state."""
        author = current or AuthorState(key)
        return author, apply_fanout_event(author, event, self.config)


class CounterState(_RuleState):
    """Per-post engagement counts or per-user counts; keys are ``post:ID`` / ``user:ID``."""

    state_name = "counter-state"

    def apply(self, key: str, current: Any, event: Any) -> tuple[Any, list[Any]]:
        """Apply an event to a post's or a user's counters."""
        kind, _, ident = key.partition(":")
        if kind == "post":
            post = current or PostEngagementState(ident)
            return post, apply_post_counter_event(post, event)
        user = current or UserCounterState(ident)
        return user, apply_user_counter_event(user, event)


class WriteEffects(ProcessFunction):
    """Applies each event's effects to the CQL store and Redis; emits how many."""

    def __init__(self, settings_json: str) -> None:
        self.settings_json = settings_json

    def open(self, runtime_context: RuntimeContext) -> None:
        """Connect to the CQL store and Redis (once per parallel instance)."""
        import redis

        from feedline.settings import StreamingSettings
        from feedline.stores.cql import connect
        from feedline.stores.feed_writer import FeedWriter
        from schemas.redis_keys import RedisKeys

        settings = StreamingSettings.model_validate_json(self.settings_json)
        self.cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
        self.redis = redis.Redis.from_url(settings.redis.url)
        self.writer = FeedWriter(
            session, self.redis, RedisKeys(settings.redis.key_prefix),
            timeline_cap=settings.feed.timeline_cap,
        )
        self.written = runtime_context.get_metrics_group().counter("effects_written")

    def process_element(self, effects: list[Any], ctx: Any) -> Iterator[int]:
        """Write one event's effects before the next event is taken."""
        count = self.writer.write(effects)
        self.written.inc(count)
        yield count

    def close(self) -> None:
        """Release the connections."""
        self.cluster.shutdown()
        self.redis.close()
