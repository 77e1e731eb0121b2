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
from hypothesis import event as event_note
from hypothesis import strategies as st

from feedline.rules.effects import Effect, PostRetract, TimelineAdd
from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import AuthorState, RulesConfig
from feedline.rules.keys import Job, KeyKind, apply_event, new_state, rule_keys
from feedline.rules.memory import FeedState
from feedline.rules.retention import prune_edges, prune_posts
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


def _prune_all(job: FanoutJob, horizon_ms: int, posts: bool = False) -> int:
    """Prune every author's edges (and deleted posts, with ``posts``) at the horizon."""
    dropped = 0
    for author, raw in job.summaries.items():
        rules = pickle.loads(raw)
        view, _ = attach_edges(rules, job.edges.setdefault(author, FakeMapState()))
        dropped += prune_edges(rules, horizon_ms)
        if posts:
            dropped += prune_posts(rules, horizon_ms, job.config)
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


def _created(author: str, j: int, i: int) -> Any:
    """Post ``j`` of ``author``, created at one time whichever event carries it (as the
    API's ids are: the contract under which a deleted post's id may go)."""
    return new_event("post_created", event_id=f"evt{i:05d}", author_id=author,
                     event_time=BASE + timedelta(seconds=j), post_id=f"{author}-p{j}",
                     caption="", media=[{"media_id": "m1", "content_type": "image/jpeg",
                                         "uri": "gs://b/m1"}])


@st.composite
def post_events(draw: st.DrawFn) -> list[Any]:
    """Many posts and deletes by two authors, follows among five users."""
    events = []
    for i in range(draw(st.integers(1, 45))):
        kind = draw(st.sampled_from(["post_created"] * 4 + ["post_deleted"] * 3
                                    + ["follow", "follow", "unfollow"]))
        when = BASE + timedelta(seconds=draw(st.integers(0, 12)))
        author = draw(st.sampled_from(["u0", "u1"]))
        j = draw(st.integers(0, 12))
        if kind == "post_created":
            events.append(_created(author, j, i))
        elif kind == "post_deleted":
            events.append(new_event(kind, event_id=f"evt{i:05d}", event_time=when,
                                    author_id=author, post_id=f"{author}-p{j}"))
        else:
            user = draw(st.sampled_from(["u1", "u2", "u3", "u4"] if author == "u0"
                                        else ["u0", "u2", "u3", "u4"]))
            events.append(new_event(kind, event_id=f"evt{i:05d}", event_time=when,
                                    follower_id=user, followee_id=author))
    return events


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=post_events(), config=CONFIGS, horizon_s=st.integers(0, 13),
       prune_at=st.lists(st.integers(0, 45), max_size=3), data=st.data())
def test_pruned_deleted_posts_change_no_state_a_later_event_reaches(
        events, config, horizon_s, prune_at, data) -> None:
    """Before the pruning, events at any time; after, only those at or after the horizon
    (an older one would be too late), pruned again at random points. Every event has the
    effects it has with nothing pruned, but for a delete of a post already gone, which
    retracts it again (the stores have it retracted already); the stores equal the
    reference."""
    horizon_ms = int((BASE + timedelta(seconds=horizon_s)).timestamp() * 1000)
    later = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)),
                      label="after the pruning")
    before = [e for e, after in zip(events, later, strict=True)
              if not (after and e.event_time_ms >= horizon_ms)]
    after = data.draw(st.permutations([e for e in events if e not in before]),
                      label="order after")
    kept, pruned = RulesEngine(config), FanoutJob(config)
    derived = FeedState(outbox_cap=config.timeline_cap)
    derived_kept = FeedState(outbox_cap=config.timeline_cap)
    for event in data.draw(st.permutations(before), label="order before"):
        effects = kept.apply(event)
        assert pruned.apply(event) == effects
        derived.apply(effects)
        derived_kept.apply(effects)
    held = _posts_held(pruned)
    _prune_all(pruned, horizon_ms, posts=True)
    event_note("deleted posts pruned" if _posts_held(pruned) < held else "none pruned")
    _assert_same_windows(kept, pruned, horizon_ms)
    for i, event in enumerate(after):
        effects, got = kept.apply(event), pruned.apply(event)
        if event.event_type == "post_deleted" and got != effects:
            assert effects == [] and len(got) == 1 and isinstance(got[0], PostRetract)
        else:
            assert got == effects
        derived.apply(got)
        derived_kept.apply(effects)
        if i in prune_at:
            _prune_all(pruned, horizon_ms, posts=True)
            _assert_same_windows(kept, pruned, horizon_ms)
    reference = reference_for(events, config)
    assert_matches(derived, reference, config)
    assert_matches(derived_kept, reference, config)


def _assert_same_windows(kept: RulesEngine, pruned: FanoutJob, horizon_ms: int) -> None:
    """What each current follower has, and what a follow at or after the horizon would
    get, is the same with and without the pruning."""
    for key, whole in kept.states.items():
        if not isinstance(whole, AuthorState):
            continue
        rules = pickle.loads(pruned.summaries[key.text])
        starts = [since for _f, since in whole.followers()]
        for since in [*starts, horizon_ms, horizon_ms + 1, horizon_ms + 5_000, 2 ** 62]:
            assert rules.delivered(since, pruned.config) == whole.delivered(since, kept.config)
        assert rules.outbox(pruned.config) == whole.outbox(kept.config)


def _posts_held(job: FanoutJob) -> int:
    return sum(len(pickle.loads(raw).posts) for raw in job.summaries.values())


def _post_of(author: str, j: int, rules: AuthorState) -> bool:
    return f"{author}-p{j}" in rules.posts


def test_a_deleted_post_goes_once_no_window_reaches_it() -> None:
    """Posts 0..5 by ``a``, the merge window 2 posts: post 1 deleted. At a horizon after
    post 5 it is 4 posts back, out of any new follower's window; a follower who started
    at post 2 still has it in hers (1 post back) and holds it until she unfollows."""
    config = RulesConfig(follow_merge_limit=2)
    job = FanoutJob(config)
    for j in range(6):
        job.apply(_created("a", j, j))
    job.apply(new_event("follow", event_id="follow-f1", event_time=BASE + timedelta(seconds=2),
                        follower_id="f", followee_id="a"))
    job.apply(new_event("post_deleted", event_id="delete-p1", author_id="a", post_id="a-p1",
                        event_time=BASE + timedelta(seconds=6)))
    horizon = int((BASE + timedelta(seconds=7)).timestamp() * 1000)
    assert _prune_all(job, horizon, posts=True) == 0  # in f's window
    assert _post_of("a", 1, pickle.loads(job.summaries["a"]))
    job.apply(new_event("unfollow", event_id="unfollow-f1", event_time=BASE + timedelta(seconds=8),
                        follower_id="f", followee_id="a"))
    assert _prune_all(job, horizon, posts=True) == 1
    rules = pickle.loads(job.summaries["a"])
    assert not _post_of("a", 1, rules) and [k[1] for k in rules.order] == [
        "a-p0", "a-p2", "a-p3", "a-p4", "a-p5"]
    assert rules.retired == []
    # Not yet at a horizon with fewer than 2 posts between it and the post.
    job.apply(new_event("post_deleted", event_id="delete-p4", author_id="a", post_id="a-p4",
                        event_time=BASE + timedelta(seconds=9)))
    assert _prune_all(job, horizon, posts=True) == 0
    later = int((BASE + timedelta(seconds=30)).timestamp() * 1000)
    _prune_all(job, later, posts=True)  # f's tombstone goes
    # Still among the 2 newest posts: a new follow's window has it.
    assert _post_of("a", 4, pickle.loads(job.summaries["a"]))
    for j in range(6, 8):
        job.apply(_created("a", j, j))
    assert _prune_all(job, later, posts=True) == 1
    assert not _post_of("a", 4, pickle.loads(job.summaries["a"]))


def test_a_post_deleted_before_its_create_arrives_or_moved_by_a_re_create_is_noted() -> None:
    """Every way a deleted post gets a place in ``order`` notes it (``retired``): the
    create that places a post whose delete came first, and a re-create moving it (two
    creates of one id at different times: outside the pruning contract, but noted)."""
    config = RulesConfig(follow_merge_limit=0)
    job = FanoutJob(config)
    job.apply(new_event("post_deleted", event_id="delete-p1", author_id="a", post_id="a-p1",
                        event_time=BASE + timedelta(seconds=5)))
    job.apply(_created("a", 1, 1))
    rules = pickle.loads(job.summaries["a"])
    assert rules.retired_keys() == [rules.order[0]]
    moved = _created("a", 0, 2)  # an older create of another id: a plain new post
    job.apply(moved)
    early = new_event("post_created", event_id="evt-early", author_id="a", post_id="a-p1",
                      event_time=BASE, caption="",
                      media=[{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}])
    job.apply(early)  # the same id created earlier: the deleted post moves
    rules = pickle.loads(job.summaries["a"])
    assert (int(BASE.timestamp() * 1000), "a-p1") in rules.retired_keys()
    assert _prune_all(job, int((BASE + timedelta(seconds=9)).timestamp() * 1000),
                      posts=True) == 1
    assert not _post_of("a", 1, pickle.loads(job.summaries["a"]))
