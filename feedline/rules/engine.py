"""All keyed rule states in one process: the rules applied to an event sequence in memory.

The streaming jobs hold the same states in Flink keyed state, one key per operator; this
engine holds them in dictionaries. The batch rebuild and the tests use it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from feedline.rules.counters import PostEngagementState, UserCounterState
from feedline.rules.dispatch import (
    ENGAGEMENT_TYPES,
    FANOUT_TYPES,
    apply_fanout_event,
    apply_post_counter_event,
    apply_user_counter_event,
    counter_targets,
    fanout_key,
)
from feedline.rules.effects import Effect
from feedline.rules.fanout import AuthorState, RulesConfig
from feedline.rules.memory import FeedState


@dataclass
class RulesEngine:
    """Keyed states for fan-out and counters, fed one event at a time."""

    config: RulesConfig = field(default_factory=RulesConfig)
    authors: dict[str, AuthorState] = field(default_factory=dict)
    posts: dict[str, PostEngagementState] = field(default_factory=dict)
    users: dict[str, UserCounterState] = field(default_factory=dict)

    def fanout(self, event: Any) -> list[Effect]:
        """Effects of an upload or follow event on fan-out state."""
        key = fanout_key(event)
        state = self.authors.get(key)
        if state is None:
            state = self.authors[key] = AuthorState(key)
        return apply_fanout_event(state, event, self.config)

    def counters(self, event: Any) -> list[Effect]:
        """Effects of any event on counter state."""
        effects: list[Effect] = []
        for kind, key in counter_targets(event):
            if kind == "post":
                post = self.posts.setdefault(key, PostEngagementState(key))
                effects.extend(apply_post_counter_event(post, event))
            else:
                user = self.users.setdefault(key, UserCounterState(key))
                effects.extend(apply_user_counter_event(user, event))
        return effects

    def apply(self, event: Any) -> list[Effect]:
        """Effects of one event on every state it concerns."""
        effects = self.fanout(event) if event.event_type in FANOUT_TYPES else []
        if event.event_type in FANOUT_TYPES or event.event_type in ENGAGEMENT_TYPES:
            effects.extend(self.counters(event))
        return effects


def derive(events: Iterable[Any], config: RulesConfig) -> FeedState:
    """Run the rules over events in the given order and materialise the result."""
    engine = RulesEngine(config)
    state = FeedState(outbox_cap=config.timeline_cap)
    for event in events:
        state.apply(engine.apply(event))
    return state
