"""All keyed rule states in one process: the rules applied to an event sequence in memory.

The streaming jobs hold the same states in Flink keyed state, one per rule key; this engine
holds them in a dictionary by the same keys (``feedline.rules.keys``). The API's test
seeder, the fan-out benchmark and the tests use it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from feedline.rules.effects import Effect
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job, RuleKey, RuleState, apply_event, new_state, rule_keys
from feedline.rules.memory import FeedState


@dataclass
class RulesEngine:
    """Keyed states for fan-out and counters, fed one event at a time."""

    config: RulesConfig = field(default_factory=RulesConfig)
    states: dict[RuleKey, RuleState] = field(default_factory=dict)

    def apply(self, event: Any, job: Job | None = None) -> list[Effect]:
        """Effects of one event on every state it concerns (only ``job``'s, when given)."""
        effects: list[Effect] = []
        for key in rule_keys(event, job):
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = new_state(key)
            effects.extend(apply_event(state, event, self.config))
        return effects

    def fanout(self, event: Any) -> list[Effect]:
        """Effects of an event on fan-out state."""
        return self.apply(event, Job.FANOUT)

    def counters(self, event: Any) -> list[Effect]:
        """Effects of an event on counter state."""
        return self.apply(event, Job.COUNTERS)


def derive(events: Iterable[Any], config: RulesConfig) -> FeedState:
    """Run the rules over events in the given order and materialise the result."""
    engine = RulesEngine(config)
    state = FeedState(outbox_cap=config.timeline_cap)
    for event in events:
        state.apply(engine.apply(event))
    return state
