"""The notifications job's per-key steps with registers in map state (dict-backed fakes that
pickle, as Flink's state does) equal the in-process engine and the reference, in any
delivery order of the two hops; an event touches O(window) register entries."""

from __future__ import annotations

import pickle
import random
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedline.rules.notification_book import NotificationBook, NotificationEngine
from feedline.rules.notifications import DEFAULT_PARAMS
from pipelines.streaming.notification_steps import (
    fresh_summary,
    is_candidate,
    leaves_recipient_unchanged,
    post_step,
    recipient_step,
)
from pipelines.streaming.notifications_job import by_recipient, post_targets, recipient_targets
from pipelines.streaming.state_map import StateMap
from schemas.event_contracts import new_event
from tests.support.notification_workload import NotificationWorkload, as_ref
from tests.support.notifications_reference import reference_notifications
from tests.unit.test_notifications_properties import event_lists

MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]


class FakeMapState:
    """A MapState that stores pickles: a change not ``put`` back is lost, as in Flink.

    Like PyFlink's cached map state, ``keys`` and ``items`` iterate the live entries and
    ``get`` touches an LRU order, so reading while walking fails as it does in a job.
    """

    def __init__(self) -> None:
        self.data: OrderedDict[str, bytes] = OrderedDict()
        self.gets = 0
        self.puts = 0

    def get(self, key: str) -> Any:
        self.gets += 1
        raw = self.data.get(key)
        if raw is not None:
            self.data.move_to_end(key)
        return None if raw is None else pickle.loads(raw)

    def put(self, key: str, value: Any) -> None:
        self.puts += 1
        self.data[key] = pickle.dumps(value)

    def remove(self, key: str) -> None:
        self.data.pop(key, None)

    def keys(self) -> Iterator[str]:
        return iter(self.data)

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, raw in self.data.items():
            yield key, pickle.loads(raw)

    def clear(self) -> None:
        self.data.clear()


class KeyedJob:
    """The job's two keyed steps over fake keyed state; candidates may be held back."""

    def __init__(self) -> None:
        self.summaries: dict[str, bytes] = {}
        self.maps: dict[tuple[str, str], FakeMapState] = {}
        self.book = NotificationBook()
        self.skipped = 0

    def state(self, key: str, name: str) -> FakeMapState:
        return self.maps.setdefault((key, name), FakeMapState())

    def _summary(self, key: str) -> Any:
        raw = self.summaries.get(key)
        return fresh_summary(key) if raw is None else pickle.loads(raw)

    def post(self, key: str, event: Any) -> list[tuple[str, Any]]:
        summary = self._summary(key)
        plain, candidates, _writes, cleared = post_step(
            summary, self.state(key, "likes"), self.state(key, "comments"), event)
        if cleared:
            self.state(key, "likes").clear()
            self.state(key, "comments").clear()
        self.summaries[key] = pickle.dumps(summary)
        self._write(plain)
        return candidates

    def recipient(self, key: str, item: Any) -> None:
        summary = self._summary(key)
        if key in self.summaries and leaves_recipient_unchanged(summary, item):
            self.skipped += 1
            return  # as the operator does; the comparisons check it changes nothing
        effects, _writes = recipient_step(summary, self.state(key, "edges"), item)
        self.summaries[key] = pickle.dumps(summary)
        self._write(effects)

    def _write(self, effects: list[Any]) -> None:
        for _recipient, owned in by_recipient(effects):
            self.book.apply(owned)

    def groups(self) -> dict[tuple[str, str], Any]:
        return {(r, k): as_ref(g) for r, groups in self.book.groups.items()
                for k, g in groups.items()}


def run_in_order(events: list[Any]) -> KeyedJob:
    """Each event to its post key, candidates at once to their gate, then the recipients."""
    job = KeyedJob()
    for event in events:
        for key, e in post_targets(event):
            for target, candidate in job.post(key, e):
                job.recipient(target, candidate)
        for key, e in recipient_targets(event):
            job.recipient(key, e)
    return job


def run_shuffled(events: list[Any], seed: int) -> KeyedJob:
    """The hops interleaved at random: each key sees its own inputs in order, candidates
    arrive late, recipient keys may see events before or after the post keys."""
    rng = random.Random(seed)
    job = KeyedJob()
    post_queue = [(key, e) for event in events for key, e in post_targets(event)]
    recipient_queue = [(key, e) for event in events for key, e in recipient_targets(event)]
    candidates: list[tuple[str, Any]] = []
    while post_queue or recipient_queue or candidates:
        choice = rng.randrange(3)
        if choice == 0 and post_queue:
            candidates.extend(job.post(*post_queue.pop(0)))
        elif choice == 1 and recipient_queue:
            job.recipient(*recipient_queue.pop(0))
        elif candidates:
            job.recipient(*candidates.pop(0))
    return job


def engine_groups(events: list[Any]) -> dict[tuple[str, str], Any]:
    engine = NotificationEngine(DEFAULT_PARAMS)
    for event in events:
        engine.apply(event)
    return {(r, k): as_ref(g) for r, groups in engine.book.groups.items()
            for k, g in groups.items()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_lists(), seed=st.integers(0, 2**16))
def test_keyed_steps_equal_the_engine_and_the_reference(events: list[Any], seed: int) -> None:
    expected = reference_notifications(events, known_users_only=True)
    assert run_in_order(events).groups() == engine_groups(events) == expected
    assert run_shuffled(events, seed).groups() == expected


def test_a_random_workload_through_the_keyed_steps() -> None:
    workload = NotificationWorkload(seed=3, users=20, posts=60)
    produced = [*workload.follows(150), *workload.activity()]
    events = [p.event for p in [*produced, *workload.redelivered()]]
    expected = reference_notifications(events, known_users_only=True)
    assert any(g[0] == "mention" for g in expected.values())
    assert {g[0] for g in expected.values()} == {"like", "comment", "follow", "mention"}
    job = run_shuffled(events, seed=5)
    assert job.groups() == expected
    assert job.skipped > len(events) // 2  # most events need no recipient-state write


def test_only_follows_of_a_known_user_change_its_recipient_key() -> None:
    like = new_event("like", user_id="bob", post_id="p1")
    follow = new_event("follow", follower_id="cat", followee_id="bob")
    follows_other = new_event("follow", follower_id="bob", followee_id="cat")
    summary = fresh_summary("recipient:bob")
    assert not leaves_recipient_unchanged(None, like)
    assert not leaves_recipient_unchanged(summary, like)  # not known yet
    summary.known = True
    assert leaves_recipient_unchanged(summary, like)
    assert leaves_recipient_unchanged(summary, follows_other)
    assert not leaves_recipient_unchanged(summary, follow)


def test_an_event_touches_a_window_of_registers_not_all_of_them() -> None:
    job = KeyedJob()
    key = "npost:p1"
    job.post(key, new_event("post_created", event_id="create01", author_id="ann", post_id="p1",
                            caption="", media=MEDIA))
    likes = job.state(key, "likes")
    for n in range(400):
        before_gets, before_puts = likes.gets, likes.puts
        job.post(key, new_event("like", event_id=f"like{n:06d}", user_id=f"fan{n}", post_id="p1"))
        assert likes.puts - before_puts == 1  # the liker's own register
        # the liker's register, the author's, and the window's shown actors
        assert likes.gets - before_gets <= DEFAULT_PARAMS.window + 2
    assert len(likes.data) == 400
    summary = pickle.loads(job.summaries[key])
    assert summary.likes == 400
    assert len(pickle.dumps(summary)) < 4_000  # bounded, whatever the like count
    assert job.groups()[("ann", "like:p1")][2] == 400


def test_a_deleted_post_clears_its_registers() -> None:
    job = KeyedJob()
    key = "npost:p1"
    job.post(key, new_event("post_created", event_id="create01", author_id="ann", post_id="p1",
                            caption="hi @bob", media=MEDIA))
    job.post(key, new_event("like", event_id="like0001", user_id="bob", post_id="p1"))
    job.post(key, new_event("comment", event_id="comment01", user_id="bob", post_id="p1",
                            comment_id="c1", text="@cat"))
    assert job.state(key, "likes").data and job.state(key, "comments").data
    candidates = job.post(key, new_event("post_deleted", event_id="delete01", author_id="ann",
                                         post_id="p1"))
    assert not job.state(key, "likes").data and not job.state(key, "comments").data
    assert all(is_candidate(c) for _, c in candidates)
    assert {target for target, _ in candidates} == {"recipient:bob", "recipient:cat"}


def test_state_map_reads_once_writes_back_changes_only() -> None:
    state = FakeMapState()
    state.put("a", [1])
    state.put("b", [2])
    state.puts = 0
    view = StateMap(state)
    view["a"].append(10)  # changed in place: written back
    assert view.get("b") == [2]  # only read: not written
    assert view.get("zz") is None and "zz" not in view
    view["c"] = [3]
    view.setdefault("d", []).append(4)
    del view["b"]
    assert sorted(view) == ["a", "c", "d"] and len(view) == 3
    assert dict(view.items()) == {"a": [1, 10], "c": [3], "d": [4]}
    assert state.gets == 5  # a, b, zz, c, d: each key read once, walks read none
    assert view.flush() == 4  # a changed, c and d new, b removed
    assert state.puts == 3
    assert {k: state.get(k) for k in list(state.keys())} == {"a": [1, 10], "c": [3], "d": [4]}
    assert StateMap(state).flush() == 0


def test_by_recipient_keeps_each_recipients_order() -> None:
    class E:
        def __init__(self, recipient: str, n: int) -> None:
            self.recipient_id, self.n = recipient, n

    effects = [E("a", 1), E("b", 2), E("a", 3)]
    assert [(r, [e.n for e in es]) for r, es in by_recipient(effects)] == [
        ("a", [1, 3]), ("b", [2])]


def test_targets_route_through_the_rule_keys() -> None:
    like = new_event("like", user_id="bob", post_id="p1")
    follow = new_event("follow", follower_id="bob", followee_id="ann")
    assert [k for k, _ in post_targets(like)] == ["npost:p1"]
    assert [k for k, _ in recipient_targets(like)] == ["recipient:bob"]
    assert list(post_targets(follow)) == []
    assert [k for k, _ in recipient_targets(follow)] == ["recipient:ann", "recipient:bob"]
