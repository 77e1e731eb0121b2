"""``FanoutOperator`` with stand-ins for Flink's keyed state, event-time timers and watermark.

What the rules' own tests cannot see: that the operator, under a lateness bound, sets a
timer per follow change and per post event, and that when the watermark passes one it
prunes what ``feedline.rules.retention`` says may go (tombstones, deleted posts out of every
window) — and nothing else: the effects of later events stay those of the rules run on
every event with nothing pruned. Without a bound it sets no timer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from feedline.rules.effects import PostRetract
from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job
from pipelines.streaming.fanout_state import EDGES_STATE, POST_SWEEP_STATE
from pipelines.streaming.operators import FanoutOperator
from schemas.event_contracts import new_event
from tests.unit.test_notification_steps import FakeMapState
from tests.unit.test_rules_properties import BASE

BOUND_MS = 10_000
CONFIG = RulesConfig(follow_merge_limit=2)


@dataclass
class Backend:
    """Keyed states, event-time timers and the watermark of one operator instance."""

    key: str = ""
    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    maps: dict[tuple[str, str], FakeMapState] = field(default_factory=dict)
    timers: set[tuple[str, int]] = field(default_factory=set)
    watermark: int = -(2 ** 63)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class ValueState:
    def __init__(self, backend: Backend, name: str) -> None:
        self.backend, self.name = backend, name

    def value(self) -> Any:
        return self.backend.values.get((self.backend.key, self.name))

    def update(self, value: Any) -> None:
        self.backend.values[(self.backend.key, self.name)] = value


class MapState:
    """The current key's ``FakeMapState`` (it stores pickles, as PyFlink does)."""

    def __init__(self, backend: Backend, name: str) -> None:
        self.backend, self.name = backend, name

    def _map(self) -> FakeMapState:
        return self.backend.maps.setdefault((self.backend.key, self.name), FakeMapState())

    def get(self, key: Any) -> Any:
        return self._map().get(key)

    def put(self, key: Any, value: Any) -> None:
        self._map().put(key, value)

    def remove(self, key: Any) -> None:
        self._map().remove(key)

    def contains(self, key: Any) -> bool:
        return key in self._map().data

    def keys(self) -> Any:
        return self._map().keys()

    def items(self) -> Any:
        self.backend.counts[f"walks of {self.name}"] += 1
        return self._map().items()


class Counter:
    def __init__(self, backend: Backend, name: str) -> None:
        self.backend, self.name = backend, name

    def inc(self, n: int = 1) -> None:
        self.backend.counts[self.name] += n


class Context:
    """The runtime context, the element context and the timer service in one."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def get_state(self, descriptor: Any) -> ValueState:
        return ValueState(self.backend, descriptor.name)

    def get_map_state(self, descriptor: Any) -> MapState:
        return MapState(self.backend, descriptor.name)

    def get_metrics_group(self) -> Any:
        return self

    def counter(self, name: str) -> Counter:
        return Counter(self.backend, name)

    def get_attempt_number(self) -> int:
        return 0

    def get_current_key(self) -> str:
        return self.backend.key

    def timer_service(self) -> Any:
        return self

    def register_event_time_timer(self, ts: int) -> None:
        self.backend.timers.add((self.backend.key, ts))

    def current_watermark(self) -> int:
        return self.backend.watermark


class Harness:
    def __init__(self, bound_ms: int | None = BOUND_MS, config: RulesConfig = CONFIG) -> None:
        self.backend = Backend()
        self.op = FanoutOperator(config, dedup_window_s=60, lateness_bound_ms=bound_ms)
        self.op.open(Context(self.backend))
        self.reference = RulesEngine(config)

    def send(self, event: Any, *, pruned_post: bool = False) -> None:
        """Apply an event: its effects are the unpruned rules' — but for a delete of a
        post already pruned (``pruned_post``), which retracts it again (retention's one
        documented difference) where the rules, which remember it, do nothing."""
        expected = self.reference.apply(event, Job.FANOUT)
        self.backend.key = event.key  # the author (the followee of a follow change)
        got = [effect for _first, effects
               in self.op.process_element(event, Context(self.backend)) for effect in effects]
        if pruned_post:
            assert expected == []
            expected = [PostRetract(event.post_id, event.author_id, None)]
        assert got == expected

    def advance(self, watermark: int) -> None:
        """Move the watermark and fire the timers it passes, oldest first."""
        self.backend.watermark = watermark
        for key, ts in sorted(self.backend.timers, key=lambda t: t[1]):
            if ts <= watermark:
                self.backend.timers.discard((key, ts))
                self.backend.key = key
                list(self.op.on_timer(ts, Context(self.backend)))


def _ms(second: int) -> int:
    return int((BASE + timedelta(seconds=second)).timestamp() * 1000)


def _post(j: int) -> Any:
    return new_event("post_created", event_id=f"post-a-{j:04d}", author_id="a",
                     post_id=f"a-p{j}", event_time=BASE + timedelta(seconds=j), caption="",
                     media=[{"media_id": "m1", "content_type": "image/jpeg",
                             "uri": "gs://b/m1"}])


def _edge(kind: str, follower: str, second: int) -> Any:
    return new_event(kind, event_id=f"{kind}-{follower}-{second:04d}", follower_id=follower,
                     followee_id="a", event_time=BASE + timedelta(seconds=second))


def _delete(j: int, second: int) -> Any:
    return new_event("post_deleted", event_id=f"delete-a-{j:04d}-{second:04d}", author_id="a",
                     post_id=f"a-p{j}", event_time=BASE + timedelta(seconds=second))


def test_timers_prune_tombstones_and_deleted_posts_and_nothing_a_later_event_needs() -> None:
    h = Harness()
    for j in range(6):
        h.send(_post(j))
    h.send(_edge("follow", "f", 2))  # f's window: the 2 posts before second 2 (p0, p1)
    h.send(_edge("follow", "g", 0))
    h.send(_delete(1, 6))
    h.send(_delete(5, 7))
    h.send(_post(8))
    h.send(_post(9))
    assert {ts for _key, ts in h.backend.timers} == {
        _ms(s) + BOUND_MS + 1 for s in range(10)}
    # The horizon is the watermark less the bound: p8 and p9 are after it, so p5 is still
    # among the 2 newest posts before it (a new follow's window); p1 is in f's.
    h.advance(_ms(7) + BOUND_MS + 1)
    assert h.backend.counts["posts_pruned"] == 0
    assert {ts for _key, ts in h.backend.timers} == {_ms(s) + BOUND_MS + 1 for s in (8, 9)}
    h.send(_edge("unfollow", "f", 10))
    h.send(_post(12))
    h.advance(_ms(12) + BOUND_MS + 1)
    assert h.backend.counts["edges_pruned"] == 1  # f's tombstone
    assert h.backend.counts["posts_pruned"] == 2  # p1 and p5, out of every window now
    assert not h.backend.maps[("a", POST_SWEEP_STATE)].data  # every fired sweep forgotten
    # Later events (at or after the horizon) have the unpruned rules' effects.
    h.send(_edge("follow", "f", 20))
    h.send(_delete(1, 21), pruned_post=True)
    h.send(_edge("unfollow", "g", 22))
    h.send(_post(23))
    h.send(_delete(3, 24))


def test_without_a_bound_no_timer_is_set() -> None:
    h = Harness(bound_ms=None)
    h.send(_post(0))
    h.send(_edge("follow", "f", 1))
    h.send(_delete(0, 2))
    assert h.backend.timers == set()


def test_a_held_post_costs_one_walk_of_the_followers_not_one_per_post() -> None:
    """A celebrity's posts walk no follower; neither may the sweep after each of them. A
    deleted post in a follower's window is found held once and looked at again only when
    a follower who held it leaves (or another deleted post becomes a candidate)."""
    h = Harness(config=RulesConfig(celebrity_threshold=2, follow_merge_limit=2))
    for j in range(3):
        h.send(_post(j))
    for follower in ("v", "w"):
        h.send(_edge("follow", follower, 0))  # windows empty: nothing before second 0
    for follower in ("x", "y", "z"):  # five followers: a celebrity, two of them left
        h.send(_edge("follow", follower, 2))  # x, y and z hold p0 and p1 in their windows
    h.send(_delete(1, 3))
    walks = f"walks of {EDGES_STATE}"
    base = h.backend.counts[walks]  # the follows' walks (crossing the threshold)

    def walked() -> int:
        return h.backend.counts[walks] - base

    h.advance(_ms(3) + BOUND_MS + 1)
    assert walked() == 0  # p1 is not yet 2 posts back from the horizon
    for j in range(10, 30):
        h.send(_post(j))  # a celebrity's post walks no follower
        h.advance(_ms(j) + BOUND_MS + 1)
    assert walked() == 1 and h.backend.counts["posts_pruned"] == 0
    for follower in ("x", "y"):
        h.send(_edge("unfollow", follower, 40))
    h.send(_post(41))
    h.advance(_ms(41) + BOUND_MS + 1)
    assert walked() == 2 and h.backend.counts["posts_pruned"] == 0  # z holds it still
    h.send(_edge("unfollow", "z", 42))
    h.send(_post(43))
    h.advance(_ms(43) + BOUND_MS + 1)
    assert h.backend.counts["posts_pruned"] == 1
