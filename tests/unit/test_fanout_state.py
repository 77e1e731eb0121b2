"""The fan-out job's author state with follower edges in map state (``fanout_state``).

Authors are run the way ``FanoutOperator`` runs them — the summary pickled between events,
the edges in a dict-backed map state that stores pickles (``FakeMapState``) — in any order,
with duplicates, and across a migration from the one-object layout; the derived state
must equal the independent reference. A post reads no edge entry by key and writes none;
the summary's size does not grow with the followers. Edges pruned at a horizon change no
effect of any later event at or after it.
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
from feedline.rules.retention import prune_edges
from pipelines.streaming.fanout_state import ExpiryQueue, attach_edges, detach_edges
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


def _prune_all(job: FanoutJob, horizon_ms: int) -> int:
    dropped = 0
    for author, raw in job.summaries.items():
        rules = pickle.loads(raw)
        view, _ = attach_edges(rules, job.edges.setdefault(author, FakeMapState()))
        dropped += prune_edges(rules, horizon_ms)
        detach_edges(rules, view)
        job.summaries[author] = pickle.dumps(rules)
    return dropped


@st.composite
def edge_events(draw: st.DrawFn) -> list[Any]:
    """Follows, unfollows and posts among three users: the same edges again and again."""
    events = []
    for i in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["follow", "follow", "unfollow", "post_created"]))
        when = BASE + timedelta(seconds=draw(st.integers(0, 6)))
        user, other = draw(st.permutations(["u0", "u1", "u2"]))[:2]
        if kind == "post_created":
            events.append(new_event(kind, event_id=f"evt{i:05d}", event_time=when,
                                    author_id=user, post_id=f"{user}-p{i}", caption="",
                                    media=[{"media_id": "m1", "content_type": "image/jpeg",
                                            "uri": "gs://b/m1"}]))
        else:
            events.append(new_event(kind, event_id=f"evt{i:05d}", event_time=when,
                                    follower_id=user, followee_id=other))
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.one_of(event_lists(), edge_events()), config=CONFIGS,
       horizon_s=st.integers(0, 13), data=st.data())
def test_pruned_edges_change_no_effect_of_a_later_event(events, config, horizon_s,
                                                        data) -> None:
    # Events older than the horizon all came before the pruning; newer ones on either side.
    horizon_ms = int((BASE + timedelta(seconds=horizon_s)).timestamp() * 1000)
    later = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)),
                      label="after the pruning")
    before = [e for e, after in zip(events, later, strict=True)
              if not (after and e.event_time_ms >= horizon_ms)]
    after = [e for e in events if e not in before]
    before = data.draw(st.permutations(before), label="order before")
    after = data.draw(st.permutations(after), label="order after")
    kept, pruned = RulesEngine(config), FanoutJob(config)
    derived = FeedState(outbox_cap=config.timeline_cap)
    for event in before:
        effects = kept.apply(event)
        assert pruned.apply(event) == effects
        derived.apply(effects)
    _prune_all(pruned, horizon_ms)
    for event in after:
        effects = kept.apply(event)
        assert pruned.apply(event) == effects
        derived.apply(effects)
    assert_matches(derived, reference_for(events, config), config)


def test_an_old_unfollow_tombstone_is_dropped_and_a_new_follow_still_counts() -> None:
    config = RulesConfig()
    job, kept = FanoutJob(config), RulesEngine(config)
    at = [BASE + timedelta(seconds=s) for s in range(4)]
    first = [new_event("follow", event_id="follow-old", event_time=at[0],
                       follower_id="f", followee_id="a"),
             new_event("unfollow", event_id="unfollow-old", event_time=at[1],
                       follower_id="f", followee_id="a")]
    for event in first:
        job.apply(event)
        kept.apply(event)
    assert _prune_all(job, int(at[2].timestamp() * 1000)) == 1
    assert job.edges["a"].data == {}
    again = new_event("follow", event_id="follow-new", event_time=at[3],
                      follower_id="f", followee_id="a")
    assert job.apply(again) == kept.apply(again) != []


def test_the_expiry_queue_costs_the_same_per_change_however_many_share_a_timer() -> None:
    entries, counts = FakeMapState(), FakeMapState()
    queue = ExpiryQueue(entries, counts)  # type: ignore[arg-type]
    for i in range(1_000):  # a bulk of follows stamped alike: one timer
        queue.note(5_000, f"f{i}")
    queue.note(6_000, "late")
    # Two small entries per change, never the timer's whole list re-written.
    assert max(len(raw) for raw in entries.data.values()) < 64
    assert entries.puts == 1_001 and counts.puts == 1_001
    assert queue.take(5_000) == [f"f{i}" for i in range(1_000)]
    assert queue.take(5_000) == []  # taken once
    assert sorted(entries.data) == ["6000/0"] and queue.take(6_000) == ["late"]
    assert not entries.data and not counts.data
