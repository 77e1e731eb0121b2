"""The fan-out job's author state with follower edges in map state (``fanout_state``).

Authors are run the way ``FanoutOperator`` runs them — the summary pickled between events,
the edges in a dict-backed map state that stores pickles (``FakeMapState``) — in any order,
with duplicates, and across a migration from the one-object layout; the derived state
must equal the independent reference. A post reads no edge entry by key and writes none;
the summary's size does not grow with the followers.
"""

from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedline.rules.effects import Effect, TimelineAdd
from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import AuthorState, RulesConfig
from feedline.rules.keys import Job, KeyKind, apply_event, new_state, rule_keys
from feedline.rules.memory import FeedState
from pipelines.streaming.fanout_state import attach_edges, detach_edges
from schemas.event_contracts import new_event
from tests.support.reference import reference_for
from tests.unit.test_notification_steps import FakeMapState
from tests.unit.test_rules_properties import BASE, CONFIGS, assert_matches, event_lists


class FanoutJob:
    """Fan-out keys as the streaming job keeps them; counters on the in-process engine."""

    def __init__(self, config: RulesConfig) -> None:
        self.config = config
        self.summaries: dict[str, bytes] = {}
        """Author -> pickled ``AuthorState`` (edges {} in the map layout, all in the old)."""
        self.edges: dict[str, FakeMapState] = {}
        self.counters = RulesEngine(config)

    def apply(self, event: Any, *, map_layout: bool = True) -> list[Effect]:
        effects: list[Effect] = []
        for key in rule_keys(event, Job.FANOUT):
            assert key.kind is KeyKind.AUTHOR
            raw = self.summaries.get(key.text)
            rules = pickle.loads(raw) if raw is not None else new_state(key)
            assert isinstance(rules, AuthorState)
            if map_layout:
                edges = self.edges.setdefault(key.text, FakeMapState())
                view, _migrated = attach_edges(rules, edges)
                effects.extend(apply_event(rules, event, self.config))
                detach_edges(rules, view)
                assert rules.edges == {}
            else:
                effects.extend(apply_event(rules, event, self.config))
            self.summaries[key.text] = pickle.dumps(rules)
        return effects + self.counters.counters(event)


def run(events: list[Any], config: RulesConfig, old_layout_until: int = 0) -> FeedState:
    job = FanoutJob(config)
    state = FeedState(outbox_cap=config.timeline_cap)
    for i, event in enumerate(events):
        state.apply(job.apply(event, map_layout=i >= old_layout_until))
    return state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), config=CONFIGS, data=st.data())
def test_map_state_layout_gives_the_reference_in_any_order(events, config, data) -> None:
    order = data.draw(st.permutations(events), label="order")
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=6), label="duplicates")
    replayed = list(order) + dupes
    assert_matches(run(replayed, config), reference_for(events, config), config)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), config=CONFIGS, data=st.data())
def test_old_one_object_states_migrate_on_their_next_event(events, config, data) -> None:
    order = data.draw(st.permutations(events), label="order")
    switch = data.draw(st.integers(0, len(order)), label="upgrade at")
    assert_matches(run(order, config, old_layout_until=switch),
                   reference_for(events, config), config)


def _follow(i: int, author: str = "a") -> Any:
    return new_event("follow", event_id=f"follow{i:06d}", event_time=BASE,
                     follower_id=f"u{i:06d}", followee_id=author)


def _post(post_id: str, second: int) -> Any:
    return new_event("post_created", event_id=f"post-{post_id}-x", author_id="a", post_id=post_id,
                     event_time=BASE + timedelta(seconds=second), caption="",
                     media=[{"media_id": "m1", "content_type": "image/jpeg",
                             "uri": "gs://b/m1"}])


def test_a_post_walks_the_edges_once_and_writes_none() -> None:
    job = FanoutJob(RulesConfig(celebrity_threshold=10_000))
    for i in range(300):
        job.apply(_follow(i))
    edges = job.edges["a"]
    assert len(edges.data) == 300
    gets, puts = edges.gets, edges.puts
    effects = job.apply(_post("p1", 10))
    adds = [e for e in effects if isinstance(e, TimelineAdd)]
    assert len(adds) == 300
    assert (edges.gets, edges.puts) == (gets, puts)  # walked, never read or written by key
    size_300 = len(job.summaries["a"])
    for i in range(300, 600):
        job.apply(_follow(i))
    assert edges.puts == puts + 300  # a follow writes its own entry only
    # The summary holds no edges: 300 more followers leave its size as it was.
    assert len(job.summaries["a"]) == size_300
