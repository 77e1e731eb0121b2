"""Cassandra frozen (SIGSTOP) for about 25 s while feeds are read and follows written, then resumed.

The app runs in-process (``tests/support/faults.py``) on this test's keyspace and key
prefix, over stores seeded with the streaming jobs' rules and writer (``world``). Half the
readers read their feed before the freeze (Redis caches it), the other half only once
Cassandra is frozen. The API's contract, read in ``serving/`` and
``feedline/stores/feed_reader.py``: a feed Redis holds is served from Redis alone, 200 and
complete, no header (nothing was degraded); a feed Redis does not hold must be read from
the CQL store and answers 503 ``dependency: cql`` with Retry-After; so does the feed of a
reader who follows celebrities only (an empty timeline: ``FeedReader`` reads it from the CQL
store however warm Redis is); writes go to Kafka only and are accepted; ``/readyz`` says
cql is down. After SIGCONT, within ``RECOVERY_BOUND_S``
and with no manual step, the cold feeds are served (and cached), ``/readyz`` is ready, every
feed equals the reference and the test's stores equal the reference exactly
(``tests/support/compare.py``); every write answered 202 is in Kafka exactly once.

Not covered here: the streaming jobs writing into a frozen Cassandra (no jobs run).

It freezes the shared stack's Cassandra: every other user of the stack stalls meanwhile.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from feedline.settings import ServingSettings, StackSettings
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

#: Cassandra is resumed after this long (FAULTS_CQL_FREEZE_S, 5-30 s) once a cold read was
#: refused and /readyz said cql was down, and after 30 s whatever happens.
FREEZE_MAX_S = 30.0
FREEZE_MIN_S = min(max(float(os.environ.get("FAULTS_CQL_FREEZE_S", "25")), 5.0),
                   FREEZE_MAX_S)
#: The stated recovery bound: from SIGCONT to every feed served and /readyz ready.
RECOVERY_BOUND_S = 60.0


def test_cached_feeds_and_writes_survive_a_frozen_cassandra(
        freeze_settings: ServingSettings, stack: StackSettings, world: World,
        cql_session: Any, redis_keys: Any) -> None:
    settings = freeze_settings
    want = {user: expected_feed(world.expected, user) for user in world.readers}
    warm, cold = world.readers[::2], world.readers[1::2]  # the celebrity-only reader: warm
    from_cql = [*cold, world.star_only]  # feeds read from the CQL store whatever Redis holds
    with InProcessApi(settings) as api:
        read_feeds_twice(api, settings, warm, want)
        with Traffic(api, settings, writers=2, keyed_writers=1, readers=2,
                     read_users=warm) as traffic:
            traffic.wait_flowing(RECOVERY_BOUND_S)

            def seen(frozen_at: float) -> bool:
                refused = any(a.status == 503 and a.started > frozen_at
                              for a in list(traffic.reads))
                down = any(down_in(a, "cql") and a.started > frozen_at
                           for a in list(traffic.readiness))
                return refused and down

            fault = freeze(stack, "cassandra", min_s=FREEZE_MIN_S, max_s=FREEZE_MAX_S,
                           seen=seen, on_frozen=lambda: traffic.read_users.extend(cold))
            thawed_at = fault.thawed_at

            def all_served_after(moment: float) -> float | None:
                served = {a.label: a.ended for a in list(traffic.reads)
                          if a.started > moment and a.status == 200}
                return max(served.values()) if set(served) >= set(from_cql) else None

            served = eventually(lambda: all_served_after(thawed_at),
                                "every feed served after Cassandra came back",
                                timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            ready = eventually(lambda: traffic.ready_after(thawed_at),
                               "/readyz ready after Cassandra came back",
                               timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            eventually(lambda: sum(a.started > served and a.status == 200
                                   for a in list(traffic.reads)) >= 10,
                       "reads served steadily after the recovery",
                       timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
    print(f"recovery after SIGCONT: every feed served after {served - thawed_at:.1f} s, "
          f"/readyz ready after {ready.ended - thawed_at:.1f} s; {traffic.summary()}")

    # Reads: warm feeds 200 from Redis throughout; cold ones and the celebrity-only reader's
    # 503 (cql) only until recovery.
    for answer in traffic.reads:
        if answer.status == 200:
            assert feed_items(answer) == want[answer.label], answer.label
            assert answer.degraded is None
            continue
        assert answer.status == 503, answer
        assert answer.label in from_cql and answer.started < served, answer
        assert answer.body["dependency"] == "cql" and int(answer.retry_after or 0) >= 1
    during = [a for a in traffic.reads if fault.during(a)]
    assert any(a.label not in from_cql and a.status == 200 for a in during), traffic.summary()
    assert any(a.label in cold and a.status == 503 for a in during), traffic.summary()
    assert any(a.label == world.star_only and a.status == 503 for a in during), traffic.summary()

    assert_readiness_down_while_frozen(traffic, fault, "cql")

    # Writes: accepted throughout (they need Kafka and, with a key, Redis only).
    assert all(a.status == 202 for a in traffic.writes + traffic.keyed), traffic.summary()
    assert any(fault.during(a) for a in traffic.writes), traffic.summary()
    in_kafka_exactly_once(settings, settings.kafka.follows_topic, traffic.writes + traffic.keyed)

    # The stores themselves equal the reference: nothing lost or half-written by the fault,
    # every reader's timeline cached again by the reads.
    client, keys = redis_keys
    state = read_state(cql_session, client, keys)
    assert mismatches(state, world.expected, FEED.timeline_cap) == []
