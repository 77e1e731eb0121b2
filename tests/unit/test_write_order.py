"""Write order from the events: the rules keys' write clocks, the owners of the rows
effects write, and the writers' buffering across a restore (with stand-ins for Flink)."""

from __future__ import annotations

import os
import sysconfig
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from feedline.rules.effects import (
    CelebritySet,
    EdgeUpsert,
    FollowedCelebrityAdd,
    OutboxAdd,
    PostCountersSet,
    PostRetract,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
    UserCounterSet,
)
from feedline.rules.flink_keys import operator_index
from feedline.rules.write_order import (
    BUCKET_NAMES,
    LEGACY_BUCKETS,
    WRITER_BUCKETS,
    EventClock,
    _spread_names,
    owner_bucket,
    split_by_bucket,
    stamped,
    write_owner,
)
from feedline.settings import FlinkSettings
from feedline.stores.push import feed_events
from pipelines.streaming import operators
from pipelines.streaming.job_graph import (
    UNLIMITED_ATTEMPTS,
    python_options,
    restart_options,
    split_for_writers,
    state_options,
)


def test_the_clock_follows_the_wall_clock_and_never_goes_back() -> None:
    clock = EventClock()
    first = clock.stamp(1_000_000, 3)
    assert first == 1_000_000 and clock.last_us == 1_000_002
    assert clock.stamp(999_000, 2) == 1_000_003  # a clock behind: still after the others
    assert clock.stamp(2_000_000, 1) == 2_000_000
    assert clock.stamp(2_000_000, 0) == 2_000_001 and clock.last_us == 2_000_000  # no effects


def test_a_restored_clock_writes_after_whatever_it_gave_out_after_its_checkpoint() -> None:
    clock = EventClock()
    clock.resume(attempt=0, margin_us=1_000)
    assert clock.offset_us == 0
    clock.stamp(1_000, 1)
    checkpoint = EventClock(clock.last_us, clock.offset_us)
    # After the checkpoint the first attempt stamped more effects, then died.
    before_crash = clock.stamp(5_000, 3) + 2
    new_key = EventClock()  # first used after the checkpoint too
    new_key_before_crash = new_key.stamp(6_000, 4) + 3
    # The restart replays the same events, maybe in another order, on a TaskManager whose
    # clock is up to the margin behind the failed one's: they land after the crash's writes.
    restarted_now = 6_000 - 900
    checkpoint.resume(attempt=1, margin_us=1_000)
    assert checkpoint.stamp(restarted_now, 1) > before_crash
    checkpoint.resume(attempt=1, margin_us=1_000)  # the same attempt: no second move
    assert checkpoint.offset_us == 1_000
    restored_new_key = EventClock()
    restored_new_key.resume(attempt=1, margin_us=1_000)
    assert restored_new_key.stamp(restarted_now, 1) > new_key_before_crash


def test_a_replayed_cell_is_not_beaten_by_a_failed_attempts_write_far_ahead_in_event_time(
) -> None:
    """The failed attempt applied a late-arriving event (minutes ahead in event time) and
    then a cell's stale value; the replay writes that cell's final value before it reaches
    the late event. With write times from event time plus a fixed margin the stale value
    kept the higher time; from the wall clock, every write of the replay is later."""
    minute_us = 60_000_000
    checkpoint = EventClock()
    checkpoint.stamp(1_000, 1)
    failed = EventClock(checkpoint.last_us, checkpoint.offset_us)
    failed.stamp(2_000, 1)  # the late event, 10 minutes ahead in event time: cell B
    stale = failed.stamp(3_000, 1)  # cell A, its value before an event not yet applied
    replay = EventClock(checkpoint.last_us, checkpoint.offset_us)
    replay.resume(attempt=1)
    final = replay.stamp(3_000 + minute_us, 1)  # a minute later on the wall clock: A final
    assert final > stale


def test_every_effect_on_a_row_has_one_owner() -> None:
    assert write_owner(TimelineAdd("reader", "p1", 5, "author")) == "reader"
    assert write_owner(TimelineRemove("reader", "p1", 5)) == "reader"
    assert write_owner(FollowedCelebrityAdd("reader", "celeb")) == "reader"
    assert write_owner(PostRetract("p1", "author", 5)) == "author"
    assert write_owner(OutboxAdd("author", "p1", 5)) == "author"
    assert write_owner(CelebritySet("author", True)) == "author"
    assert write_owner(EdgeUpsert("followee", "follower", 5)) == "followee"
    assert write_owner(PostCountersSet("p1", 1, 0)) == "post:p1"
    assert write_owner(UserCounterSet("u1", "posts", 2)) == "user:u1"
    with pytest.raises(TypeError):
        write_owner("not an effect")  # type: ignore[arg-type]


def test_buckets_are_stable_and_spread() -> None:
    assert owner_bucket("u00017") == owner_bucket("u00017")
    buckets = {owner_bucket(f"u{i:05d}") for i in range(2_000)}
    assert buckets == set(BUCKET_NAMES) and len(BUCKET_NAMES) == WRITER_BUCKETS


@pytest.mark.parametrize("parallelism", [1, 2, 4, 8, 16])
def test_every_writer_instance_gets_as_many_buckets(parallelism: int) -> None:
    per_instance = Tally(operator_index(name, parallelism) for name in BUCKET_NAMES)
    assert sorted(per_instance) == list(range(parallelism))
    assert set(per_instance.values()) == {WRITER_BUCKETS // parallelism}


def test_bucket_names_are_among_those_the_ticks_visit() -> None:
    """A savepoint of the 128 buckets before holds state under "0".."127"; the ticks name
    every one of them and the buckets in use (pipelines.streaming.job_graph)."""
    assert {int(name) for name in BUCKET_NAMES} <= set(range(LEGACY_BUCKETS))
    with pytest.raises(ValueError, match="divide"):
        _spread_names(12)


def test_an_events_effects_split_by_bucket_keep_their_order_and_times() -> None:
    effects = [TimelineAdd(f"r{i % 5}", f"p{i}", i, "a") for i in range(40)]
    parts = dict(split_by_bucket(stamped(100, effects)))
    assert sorted(t for items in parts.values() for t, _ in items) == list(range(100, 140))
    for bucket, items in parts.items():
        assert [t for t, _ in items] == sorted(t for t, _ in items)
        assert {owner_bucket(write_owner(e)) for _, e in items} == {bucket}
    assert {bucket: pairs for bucket, pairs, _ in split_for_writers((100, effects))} == parts


def test_push_events_are_judged_per_event_and_go_with_their_effects() -> None:
    """A follower's timeline add is news because the post's upsert is in the same event;
    the writer of the follower's bucket never sees that upsert, so the event travels with
    the add (judged among one bucket's effects alone, it was dropped)."""
    post = PostUpsert("p1", "author", 5, "hi", (), "e1")
    adds = [TimelineAdd(f"fan{n}", "p1", 5, "author") for n in range(30)]
    elements = list(split_for_writers((100, [post, *adds])))
    pushed = {push.user_id for _bucket, _pairs, pushes in elements for push in pushes}
    assert pushed == {f"fan{n}" for n in range(30)}
    for bucket, pairs, pushes in elements:
        assert {p.user_id for p in pushes} == {e.user_id for _, e in pairs
                                                 if isinstance(e, TimelineAdd)}
        assert all(owner_bucket(p.user_id or "") == bucket for p in pushes)
    lonely = [(bucket, pairs) for bucket, pairs, _ in elements
              if not any(isinstance(e, PostUpsert) for _, e in pairs)]
    assert lonely and all(feed_events([e for _, e in pairs]) == [] for _, pairs in lonely)


# --- the writer operator with stand-ins for Flink's keyed state and timers -------------------


@dataclass
class FakeWriter:
    written: list[Any] = field(default_factory=list)
    pushed: list[Any] = field(default_factory=list)

    def write_stamped(self, items: list[Any], pushes: list[Any] | None = None) -> int:
        self.written.extend(items)
        self.pushed.extend(pushes or [])
        return len(items)


@dataclass
class Backend:
    """Keyed list state and processing-time timers: what a checkpoint holds."""

    lists: dict[str, list[Any]] = field(default_factory=dict)
    timers: set[tuple[str, int]] = field(default_factory=set)
    key: str = ""
    now: int = 0


class ListState:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def add(self, value: Any) -> None:
        self.backend.lists.setdefault(self.backend.key, []).append(value)

    def get(self) -> list[Any]:
        return list(self.backend.lists.get(self.backend.key, []))

    def clear(self) -> None:
        self.backend.lists.pop(self.backend.key, None)


class Counter:
    def inc(self, n: int = 1) -> None:
        pass


class Context:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def get_metrics_group(self) -> Any:
        return self

    def counter(self, _name: str) -> Counter:
        return Counter()

    def get_list_state(self, _descriptor: Any) -> ListState:
        return ListState(self.backend)

    def get_current_key(self) -> str:
        return self.backend.key

    def timer_service(self) -> Any:
        return self

    def current_processing_time(self) -> int:
        return self.backend.now

    def register_processing_time_timer(self, ts: int) -> None:
        self.backend.timers.add((self.backend.key, ts))


def _writer(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FakeWriter]:
    fake = FakeWriter()
    monkeypatch.setattr(operators, "open_writer", lambda _json: (fake, lambda: None))
    op = operators.BufferedWriteEffects("{}", flush_effects=5, flush_ms=100)
    op.open(Context(backend))
    return op, fake


def _send(op: Any, backend: Backend, bucket: str, items: list[Any],
          pushes: list[Any] | None = None) -> None:
    backend.key = bucket
    list(op.process_element((bucket, items, pushes or []), Context(backend)))


def _fire(op: Any, backend: Backend, until: int) -> None:
    backend.now = until
    for key, ts in sorted(backend.timers, key=lambda t: t[1]):
        if ts <= until:
            backend.timers.discard((key, ts))
            backend.key = key
            list(op.on_timer(ts, Context(backend)))


def test_buffered_effects_are_written_and_forgotten_per_bucket(
        monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend(now=1_000)
    op, fake = _writer(backend, monkeypatch)
    _send(op, backend, "1", [(1, "a"), (2, "b")])
    _send(op, backend, "2", [(3, "c")])
    assert fake.written == [] and backend.lists  # waiting for the timer
    _fire(op, backend, 1_100)
    assert fake.written == [(1, "a"), (2, "b"), (3, "c")]
    assert backend.lists == {} and backend.timers == set()
    _send(op, backend, "1", [(4, "d"), (5, "e"), (6, "f")])
    _send(op, backend, "3", [(7, "g"), (8, "h")])  # five effects: written at once
    assert fake.written[3:] == [(4, "d"), (5, "e"), (6, "f"), (7, "g"), (8, "h")]
    assert backend.lists  # forgotten only in the buckets' own timers
    _fire(op, backend, 1_200)
    assert backend.lists == {}


def test_after_a_restore_every_effect_before_the_checkpoint_is_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend(now=1_000)
    op, before = _writer(backend, monkeypatch)
    _send(op, backend, "1", [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")])  # written
    _send(op, backend, "2", [(6, "f")])  # buffered only
    checkpoint = Backend({k: list(v) for k, v in backend.lists.items()}, set(backend.timers),
                         now=5_000)
    _send(op, backend, "2", [(7, "g")])  # after the barrier: replayed from Kafka instead
    # The worker dies; a new one starts from the checkpoint and gets a new element for
    # bucket 2 before the restored timers fire.
    restored, after = _writer(checkpoint, monkeypatch)
    _send(restored, checkpoint, "2", [(7, "g")])
    _fire(restored, checkpoint, 5_100)
    assert {e for _, e in before.written + after.written} >= set("abcdefg")
    # Bucket 1's effects were written but not yet forgotten at the checkpoint: written
    # again (harmless). Bucket 2's restored element is written, the new one once.
    assert sorted(e for _, e in after.written) == list("abcdefg")
    assert checkpoint.lists == {} and checkpoint.timers == set()


def test_after_a_restore_a_buckets_held_effects_are_written_before_its_new_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One owner's effects reach the stores in the rules' order across a restore too: a
    savepoint held a celebrity flag in bucket 2; the author's next post (its outbox add)
    must not be written before it, even when the buffer fills before bucket 2's timer."""
    backend = Backend(now=1_000)
    op, _before = _writer(backend, monkeypatch)
    _send(op, backend, "2", [(1, "flag")])  # buffered, then the job stops with a savepoint
    savepoint = Backend({k: list(v) for k, v in backend.lists.items()}, set(), now=9_000)
    restored, after = _writer(savepoint, monkeypatch)
    _send(restored, savepoint, "2", [(2, "post"), (3, "outbox add")])
    _send(restored, savepoint, "7", [(4, "x"), (5, "y"), (6, "z")])  # five new: written
    assert [e for _, e in after.written] == ["flag", "post", "outbox add", "x", "y", "z"]
    _fire(restored, savepoint, 9_100)
    assert savepoint.lists == {} and len(after.written) == 6


def test_a_tick_writes_a_restored_bucket_whose_timer_never_fires(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PyFlink was seen not to fire a restored processing-time timer: a bucket that gets no
    new effect after a restore is written when a tick (an element without effects)
    reaches it; a tick to a clean bucket does nothing."""
    backend = Backend(now=1_000)
    op, _before = _writer(backend, monkeypatch)
    _send(op, backend, "9", [(1, "a"), (2, "b")])  # buffered, then the job stops
    savepoint = Backend({k: list(v) for k, v in backend.lists.items()}, set(), now=9_000)
    restored, after = _writer(savepoint, monkeypatch)  # its restored timers are lost
    _fire(restored, savepoint, 9_500)
    assert after.written == []
    _send(restored, savepoint, "9", [])  # a tick
    _send(restored, savepoint, "4", [])  # a tick to a bucket with nothing held
    _fire(restored, savepoint, 9_600)
    assert after.written == [(1, "a"), (2, "b")] and savepoint.lists == {}
    _send(restored, savepoint, "9", [])  # clean now: no timer, nothing written
    assert savepoint.timers == set()
    _fire(restored, savepoint, 9_700)
    assert after.written == [(1, "a"), (2, "b")]


def test_the_writer_publishes_the_push_events_it_was_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Carried events are published with their effects; a bucket restored from a savepoint
    of the writer before they were carried (pairs alone) has them judged among its pairs."""
    post = PostUpsert("p1", "author", 5, "hi", (), "e1")
    add = TimelineAdd("fan", "p1", 5, "author")
    older = Backend({"8": [[(1, post), (2, add)]]}, now=1_000)
    op, fake = _writer(older, monkeypatch)
    carried = feed_events([post, add])
    _send(op, older, "3", [(3, TimelineAdd("other", "p1", 5, "author"))], ["an event"])
    _send(op, older, "8", [])  # a tick: bucket 8 takes what it held
    _fire(op, older, 1_100)
    assert fake.pushed == ["an event", *carried] and len(carried) == 1


def test_runtime_options_come_from_the_flink_settings() -> None:
    defaults = python_options(FlinkSettings())
    assert defaults["python.execution-mode"] == "process"
    assert defaults["python.fn-execution.bundle.time"] == "50"
    tuned = python_options(FlinkSettings.model_validate(
        {"python_execution_mode": "thread", "python_bundle_time_ms": 200,
         "python_bundle_size": 1000}))
    assert (tuned["python.execution-mode"], tuned["python.fn-execution.bundle.time"],
            tuned["python.fn-execution.bundle.size"]) == ("thread", "200", "1000")
    assert "python.pythonpath" not in defaults
    # Thread mode's embedded interpreter gets the site-packages PEMJA leaves out of its path.
    thread_path = tuned["python.pythonpath"].split(os.pathsep)
    assert sysconfig.get_paths()["purelib"] in thread_path
    # ... and the folders the project's packages are imported from (an editable install
    # reaches them through a .pth import hook, which the embedded interpreter never reads).
    import feedline
    import pipelines
    assert str(Path(feedline.__file__).resolve().parent.parent) in thread_path
    assert str(Path(pipelines.__file__).resolve().parent.parent) in thread_path
    pinned = python_options(FlinkSettings.model_validate(
        {"python_execution_mode": "thread", "python_thread_paths": ["/opt/a", "/opt/b"]}))
    assert pinned["python.pythonpath"] == os.pathsep.join(["/opt/a", "/opt/b"])


def test_the_state_backend_comes_from_the_flink_settings() -> None:
    assert state_options(FlinkSettings()) == {"state.backend.type": "hashmap"}
    assert state_options(FlinkSettings.model_validate({"state_backend": "rocksdb"})) == {
        "state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true"}
    with pytest.raises(ValueError, match="state_backend"):
        FlinkSettings.model_validate({"state_backend": "memory"})


def test_jobs_restart_with_growing_waits_and_never_give_up() -> None:
    prefix = "restart-strategy.exponential-delay."
    defaults = restart_options(FlinkSettings())
    assert defaults["restart-strategy.type"] == "exponential-delay"
    assert (defaults[prefix + "initial-backoff"], defaults[prefix + "max-backoff"]) == \
        ("1000 ms", "10000 ms")
    assert defaults[prefix + "attempts-before-reset-backoff"] == str(UNLIMITED_ATTEMPTS)
    assert float(defaults[prefix + "backoff-multiplier"]) > 1
    tuned = restart_options(FlinkSettings.model_validate(
        {"restart_initial_backoff_ms": 200, "restart_max_backoff_ms": 2000}))
    assert (tuned[prefix + "initial-backoff"], tuned[prefix + "max-backoff"]) == \
        ("200 ms", "2000 ms")
    # A ceiling below the first wait is the first wait (Flink refuses max < initial).
    low = restart_options(FlinkSettings.model_validate(
        {"restart_initial_backoff_ms": 5000, "restart_max_backoff_ms": 2000}))
    assert low[prefix + "max-backoff"] == "5000 ms"
    assert not any(key.startswith("restart-strategy.fixed-delay") for key in defaults)


def test_the_attempt_number_is_read_in_both_execution_modes() -> None:
    from types import SimpleNamespace

    from pipelines.streaming.operators import attempt_number

    process_mode = SimpleNamespace(get_attempt_number=lambda: 3)
    assert attempt_number(process_mode) == 3  # type: ignore[arg-type]

    class ThreadMode:  # PyFlink 2.2's embedded context: the Java method moved in Flink 2
        _runtime_context = SimpleNamespace(
            getTaskInfo=lambda: SimpleNamespace(getAttemptNumber=lambda: 2))

        def get_attempt_number(self) -> int:
            raise AttributeError("'pemja.PyJObject' object has no attribute 'getAttemptNumber'")

    assert attempt_number(ThreadMode()) == 2  # type: ignore[arg-type]
