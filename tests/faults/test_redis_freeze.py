"""Redis frozen (SIGSTOP) for about 20 s while feeds are read and follows written, then resumed.

The app runs in-process (``tests/support/faults.py``) on this test's keyspace and key
prefix, over stores seeded with the streaming jobs' rules and writer (``world``); the
reference model (``tests/support/reference.py``) computed from the same events states
each reader's feed. While Redis is frozen every read must still answer 200, from the CQL
store, with ``X-Feed-Degraded: redis`` and exactly the reference feed; follows without an
Idempotency-Key are accepted (the rate limit is counted elsewhere or let through); follows
with one are accepted too when the request guards have their own Redis (the stack's
``redis-guards``, as the stack's API runs), and answer 503 when they share the frozen
cache (``redis.guards_url`` unset): the client retries them with the same key; ``/readyz``
says Redis is down on every poll. After SIGCONT, within ``RECOVERY_BOUND_S``, reads are served from
Redis again (no header) and ``/readyz`` is ready; every write answered 202 is in Kafka
exactly once, a retried key produced at most one event, and the test's stores equal the
reference exactly (``tests/support/compare.py``).

Not covered here: the streaming jobs writing into a frozen Redis (no jobs run: the writes
of this test are checked in Kafka, the feeds against the seeded stores).

It freezes the shared stack's Redis: every other user of the stack stalls meanwhile.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from feedline.settings import ServingSettings, StackSettings
from jobs.localstack.redis_server import guards_url
from tests.faults.conftest import World
from tests.integration.test_api_stack import FEED
from tests.support.compare import mismatches
from tests.support.faults import (
    InProcessApi,
    Traffic,
    assert_readiness_down_while_frozen,
    down_in,
    expected_feed,
    feed_items,
    freeze,
    in_kafka_exactly_once,
    read_feeds_twice,
)
from tests.support.stores import read_state
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

#: Redis is resumed after this long (FAULTS_REDIS_FREEZE_S, 5-30 s) once a degraded read
#: and a /readyz saying Redis is down were seen, and after 30 s whatever happens.
FREEZE_MAX_S = 30.0
FREEZE_MIN_S = min(max(float(os.environ.get("FAULTS_REDIS_FREEZE_S", "20")), 5.0),
                   FREEZE_MAX_S)
#: The stated recovery bound: from SIGCONT to reads from Redis and /readyz ready.
RECOVERY_BOUND_S = 30.0


@pytest.fixture(params=["guards-apart", "guards-shared"])
def guarded_settings(request: pytest.FixtureRequest, freeze_settings: ServingSettings,
                     stack: StackSettings) -> Iterator[ServingSettings]:
    """The API with its request guards (rate-limit counters, Idempotency-Key records) in the
    stack's own non-evicting Redis, as the stack runs it (``guards-apart``), or in the cache
    Redis that is frozen (``guards-shared``, ``redis.guards_url`` unset)."""
    if request.param == "guards-shared":
        yield freeze_settings
        return
    url = guards_url(stack)
    yield freeze_settings.model_copy(update={
        "redis": freeze_settings.redis.model_copy(update={"guards_url": url})})
    client = redis.Redis.from_url(url)
    stale = list(client.scan_iter(match=f"{freeze_settings.redis.key_prefix}:*", count=1000))
    if stale:
        client.delete(*stale)
    client.close()


def test_reads_fall_back_to_cql_while_redis_is_frozen(
        guarded_settings: ServingSettings, stack: StackSettings, world: World,
        cql_session: Any, redis_keys: Any) -> None:
    settings = guarded_settings
    guards_apart = settings.redis.guards_url is not None
    want = {user: expected_feed(world.expected, user) for user in world.readers}
    assert all(want.values()) and len({len(f) for f in want.values()}) > 1
    with InProcessApi(settings) as api:
        # Before the fault: every feed equals the reference and comes from Redis (cached).
        for answer in read_feeds_twice(api, settings, world.readers, want):
            assert answer.degraded is None, answer
        with Traffic(api, settings, writers=2, keyed_writers=1, readers=2,
                     read_users=world.readers) as traffic:
            traffic.wait_flowing(RECOVERY_BOUND_S)

            def seen(frozen_at: float) -> bool:
                degraded = any(a.degraded == "redis" and a.started > frozen_at
                               for a in list(traffic.reads))
                down = any(down_in(a, "redis") and a.started > frozen_at
                           for a in list(traffic.readiness))
                return degraded and down

            fault = freeze(stack, "redis", min_s=FREEZE_MIN_S, max_s=FREEZE_MAX_S, seen=seen)
            thawed_at = fault.thawed_at

            def from_redis_after(moment: float) -> float | None:
                return next((a.ended for a in list(traffic.reads)
                             if a.started > moment and a.status == 200 and a.degraded is None
                             and a.label != world.star_only), None)

            cached_again = eventually(lambda: from_redis_after(thawed_at),
                                      "a read served from Redis after it came back",
                                      timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            ready = eventually(lambda: traffic.ready_after(thawed_at),
                               "/readyz ready after Redis came back",
                               timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            eventually(lambda: sum(a.started > cached_again and a.degraded is None
                                   for a in list(traffic.reads)) >= 10,
                       "reads served from Redis steadily after the recovery",
                       timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            keyed_ok: float = eventually(
                lambda: next((a.ended for a in list(traffic.keyed)
                              if a.started > thawed_at and a.status == 202), None),
                "a keyed write accepted after Redis came back",
                timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
    print(f"recovery after SIGCONT: read from Redis after {cached_again - thawed_at:.1f} s, "
          f"/readyz ready after {ready.ended - thawed_at:.1f} s, keyed write accepted after "
          f"{keyed_ok - thawed_at:.1f} s; {traffic.summary()}")

    # Reads: always 200 and exactly the reference feed; while frozen, from the CQL store.
    assert all(a.status == 200 for a in traffic.reads), traffic.summary()
    wrong = [a.label for a in traffic.reads if feed_items(a) != want[a.label]]
    assert not wrong, f"{len(wrong)} feeds differ from the reference (readers {set(wrong)})"
    during = [a for a in traffic.reads if fault.during(a)]
    assert during, f"no read happened while Redis was frozen ({traffic.summary()})"
    assert all(a.degraded == "redis" for a in during), traffic.summary()
    print(f"{len(during)} reads while frozen, slowest "
          f"{max(a.ended - a.started for a in during):.2f} s")

    assert_readiness_down_while_frozen(traffic, fault, "redis")

    # Writes without a key: accepted throughout. With a key: accepted throughout when the
    # guards have their own Redis; 503 (redis) while frozen when they share the cache's.
    assert all(a.status == 202 for a in traffic.writes), traffic.summary()
    assert any(fault.during(a) for a in traffic.writes), traffic.summary()
    refused = [a for a in traffic.keyed if a.status == 503]
    if guards_apart:
        assert all(a.status == 202 for a in traffic.keyed), traffic.summary()
        assert any(fault.during(a) for a in traffic.keyed), traffic.summary()
    else:
        assert all(a.status in (202, 503) for a in traffic.keyed), traffic.summary()
        assert refused, f"no keyed write refused while Redis was frozen ({traffic.summary()})"
    for answer in refused:
        assert answer.body["dependency"] == "redis" and int(answer.retry_after or 0) >= 1

    # Kafka: every 202 exactly once; a key retried after 503s produced at most one event.
    events = in_kafka_exactly_once(settings, settings.kafka.follows_topic,
                                   [a for a in traffic.writes + traffic.keyed if a.status == 202])
    per_key: dict[str, set[str]] = defaultdict(set)
    for answer in traffic.keyed:
        if answer.status == 202:
            per_key[answer.label].add(answer.body["event_id"])
    assert all(len(ids) == 1 for ids in per_key.values()), "a key answered two event ids"
    keyed_events = Counter((event["follower_id"], event["followee_id"]) for event in events
                           if event["follower_id"].startswith("keyed"))
    assert max(keyed_events.values()) == 1, "a retried key produced two events"

    # The stores themselves equal the reference: Redis holds every reader's timeline again.
    client, keys = redis_keys
    state = read_state(cql_session, client, keys)
    assert mismatches(state, world.expected, FEED.timeline_cap) == []
