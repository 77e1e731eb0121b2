"""Property test: effects written by several writers, in any interleaving, with replays,
leave the real CQL store and Redis equal to the reference model.

The streaming graph in miniature: events arrive in a random order, with duplicates; each
rules key applies them in that order with its write clock (``write_order.EventClock``);
each event's effects are split by the owner of their rows into writer buckets, and each
bucket belongs to one of several writers (``FeedWriter`` instances). The writers then run
in a random interleaving, each in random chunks and in its own order (as Flink delivers
one key's elements), and some writers restart: they write again from an earlier position
(as after a restore from a checkpoint), and some old chunks are written once more at a
random later time (a restored batch whose effects were written already). The stores must
equal ``tests.support.reference`` exactly.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import RuleKey, RuleState, apply_event, new_state, rule_keys
from feedline.rules.write_order import EventClock, StampedEffect, split_by_bucket, stamped
from feedline.stores.feed_writer import FeedWriter
from schemas.event_contracts import new_event
from schemas.redis_keys import RedisKeys
from tests.support.compare import mismatches
from tests.support.dump import TABLES, wipe
from tests.support.fixtures import unique
from tests.support.reference import reference
from tests.support.stores import read_state

USERS = [f"u{i}" for i in range(7)]
BASE = datetime(2026, 11, 21, tzinfo=UTC)
KINDS = ["post_created"] * 5 + ["post_deleted", "like", "unlike", "comment",
                                "comment_deleted"] + ["follow"] * 5 + ["unfollow"] * 2


def _event(rng: random.Random, i: int) -> Any:
    kind = rng.choice(KINDS)
    when = BASE + timedelta(milliseconds=rng.randrange(0, 20_000, 250))
    eid = f"evt{i:05d}"
    author, user = rng.choice(USERS), rng.choice(USERS)
    post_id = f"{author}-p{rng.randrange(5)}"
    if kind == "post_created":
        media = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/m1"}]
        return new_event(kind, event_id=eid, event_time=when, author_id=author, post_id=post_id,
                         caption=f"c{i}", media=media)
    if kind == "post_deleted":
        return new_event(kind, event_id=eid, event_time=when, author_id=author, post_id=post_id)
    if kind in ("follow", "unfollow"):
        followee = rng.choice([u for u in USERS if u != user])
        return new_event(kind, event_id=eid, event_time=when, follower_id=user,
                         followee_id=followee)
    if kind in ("like", "unlike"):
        return new_event(kind, event_id=eid, event_time=when, user_id=user, post_id=post_id)
    return new_event(kind, event_id=eid, event_time=when, user_id=user, post_id=post_id,
                     comment_id=f"c{rng.randrange(3)}",
                     **({"text": "nice"} if kind == "comment" else {}))


def writer_queues(arrivals: list[Any], config: RulesConfig,
                  writers: int) -> list[list[list[StampedEffect]]]:
    """Each writer's elements (one event's effects on one bucket), in delivery order."""
    states: dict[RuleKey, tuple[RuleState, EventClock]] = {}
    queues: list[list[list[StampedEffect]]] = [[] for _ in range(writers)]
    wall = itertools.count(1_000_000, 1_000)  # the operators' wall clock, µs
    for event in arrivals:
        for key in rule_keys(event):
            state, clock = states.setdefault(key, (new_state(key), EventClock()))
            effects = apply_event(state, event, config)
            first = clock.stamp(next(wall), len(effects))
            for bucket, items in split_by_bucket(stamped(first, effects)):
                queues[int(bucket) % writers].append(items)
    return queues


def interleave(rng: random.Random, queues: list[list[list[StampedEffect]]]
               ) -> list[tuple[int, list[StampedEffect]]]:
    """(writer, effects of one write call) in a random interleaving, with restarts.

    A writer restarts at most once: it goes back to an earlier position and writes every
    element from there again. Some chunks already written are written once more later.
    """
    position = [0] * len(queues)
    restarted = [False] * len(queues)
    written: list[tuple[int, list[StampedEffect]]] = []
    calls: list[tuple[int, list[StampedEffect]]] = []
    while any(p < len(q) for p, q in zip(position, queues, strict=True)):
        w = rng.choice([i for i, q in enumerate(queues) if position[i] < len(q)])
        size = rng.randint(1, 4)
        chunk = [e for element in queues[w][position[w]:position[w] + size] for e in element]
        position[w] += size
        calls.append((w, chunk))
        written.append((w, chunk))
        if not restarted[w] and rng.random() < 0.15:
            restarted[w] = True
            position[w] = rng.randint(0, position[w])
        if written and rng.random() < 0.1:
            calls.append(rng.choice(written))
    return calls


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), writers=st.integers(2, 4),
       threshold=st.integers(1, 4), merge=st.integers(0, 3), cap=st.integers(1, 4),
       batch_size=st.integers(1, 7))
def test_writers_in_any_interleaving_with_replays_equal_the_reference(
        cql_session: Any, stack: Any, seed: int, writers: int, threshold: int, merge: int,
        cap: int, batch_size: int) -> None:
    import redis

    rng = random.Random(seed)
    events = [_event(rng, i) for i in range(rng.randint(20, 60))]
    arrivals = events + rng.sample(events, len(events) // 5)  # duplicates
    rng.shuffle(arrivals)
    config = RulesConfig(celebrity_threshold=threshold, follow_merge_limit=merge,
                         timeline_cap=cap)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    keys = RedisKeys(prefix=unique("flprop"))
    wipe(cql_session, client, keys.prefix, tuple(TABLES))
    try:
        pool = [FeedWriter(cql_session, client, keys, timeline_cap=cap, batch_size=batch_size)
                for _ in range(writers)]
        for w, chunk in interleave(rng, writer_queues(arrivals, config, writers)):
            pool[w].write_stamped(chunk)
        expected = reference(events, celebrity_threshold=threshold, follow_merge_limit=merge,
                             timeline_cap=cap)
        assert mismatches(read_state(cql_session, client, keys), expected, cap) == []
        # Every post has one media object: a replay never appends a list column twice.
        media = {r.post_id: r.media for r in cql_session.execute("SELECT post_id, media FROM posts")
                 if r.media is not None}
        assert {p: len(m) for p, m in media.items() if len(m) != 1} == {}
    finally:
        stale = list(client.scan_iter(match=keys.pattern(), count=1000))
        if stale:
            client.delete(*stale)
        client.close()


def test_a_restore_replaying_events_in_another_order_overrides_later_writes(
        cql_session: Any, stack: Any) -> None:
    """The job dies after writing effects of events past its checkpoint; restored, it gets
    those events again in another order (two partitions interleave differently) plus one
    more. Its writes must win over the ones the dead instance made — also the ones it made
    after applying an event ten minutes ahead in event time (``late``: u0's followers cell
    of the same counters key), which the restored job reaches only after writing u0's
    final following count (write times from event time lost here)."""
    import copy

    import redis

    def follow(i: int, kind: str, followee: str, ms: int) -> Any:
        return new_event(kind, event_id=f"evt{i:05d}", follower_id="u0", followee_id=followee,
                         event_time=BASE + timedelta(milliseconds=ms))

    x, y, w = follow(1, "follow", "ux", 5_000), follow(2, "follow", "uy", 1_000), \
        follow(3, "follow", "uw", 900)
    unfollow_w = follow(4, "unfollow", "uw", 950)
    late = new_event("follow", event_id="evt00005", follower_id="u9", followee_id="u0",
                     event_time=BASE + timedelta(minutes=10))
    config = RulesConfig(celebrity_threshold=10, follow_merge_limit=2, timeline_cap=5)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    keys = RedisKeys(prefix=unique("flrestore"))
    writer = FeedWriter(cql_session, client, keys, timeline_cap=5)
    states: dict[RuleKey, tuple[RuleState, EventClock]] = {}
    wall = itertools.count(1_000_000, 1_000)  # the operators' wall clock, µs

    def run(events: list[Any], attempt: int) -> None:
        for event in events:
            for key in rule_keys(event):
                state, clock = states.setdefault(key, (new_state(key), EventClock()))
                clock.resume(attempt)
                effects = apply_event(state, event, config)
                writer.write_stamped(stamped(clock.stamp(next(wall), len(effects)),
                                             effects))

    try:
        checkpoint = copy.deepcopy(states)  # taken before any of these events
        run([late, x, y, w], attempt=0)  # then the job fails
        states = checkpoint
        # Restored: the same events in another order, the late one last.
        run([w, unfollow_w, y, x, late], attempt=1)
        expected = reference([x, y, w, unfollow_w, late], celebrity_threshold=10,
                             follow_merge_limit=2, timeline_cap=5)
        assert expected.user_counters["u0"] == {"following": 2, "followers": 1}
        assert mismatches(read_state(cql_session, client, keys), expected, 5) == []
    finally:
        stale = list(client.scan_iter(match=keys.pattern(), count=1000))
        if stale:
            client.delete(*stale)
        client.close()
