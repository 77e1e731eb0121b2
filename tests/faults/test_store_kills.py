"""Kafka, Cassandra and Redis killed (SIGKILL) or frozen (SIGSTOP) while the streaming jobs
run and clients use the API.

Each test opens a sandbox (its own topics, keyspace and Redis prefix: ``jobs/sandbox.py``),
deploys the fan-out and counters jobs with 1 s checkpoints, produces half of a generated
workload and runs the API in-process on the sandbox with feed readers, writers (follows;
one of them with an Idempotency-Key, retried with the same key on a 5xx) and a /readyz
poller. Then it kills one store, and the stack's supervisor must start it again with no
manual step (within ``RESTART_BOUND_S``; the supervisor is held until /readyz said the store
was down, at most ``FREEZE_MAX_S``: a Redis restarts faster than a slow machine polls); or
freezes it for ``FREEZE_S`` to ``FREEZE_MAX_S``
(until /readyz said it was down), and it must be used again by itself after SIGCONT. The
rest of the workload is produced while the store is down (after it is back, for Kafka: a
producer cannot reach it). Afterwards:

(a) within ``RECOVERY_BOUND_S`` of the store being back, /readyz is ready, writes are
    accepted and feeds read again; no answer at any time was a 500;
(b) /readyz said the store was down on a poll while it was down;
(c) every write answered 202 is in Kafka, and a key made at most one distinct event;
(d) the stores equal the reference computed from every event in the sandbox's topics (the
    generator's and the API's): nothing lost, nothing applied twice; and every reader's
    feed through the API equals the reference feed.

Redis keeps nothing across a restart (the local one has no persistence: it is a cache), so
after its kill (d) holds for the CQL store (after a freeze, for both), and the API's feeds
must still equal the reference: the reader falls back to CQL and refills the cache as feeds
are read. The same with the sandbox on the stack's Redis Cluster and one of its masters
killed (a third of the keys gone, the cluster down until the master is back).

Each test kills one of the shared stack's servers: every other user of the stack sees it
down for a while (Cassandra longest: its restart replays the commit log).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import pytest

from feedline.settings import (
    ApiSettings,
    FeedSettings,
    RedisSettings,
    ServingSettings,
    StackSettings,
)
from feedline.workload import Workload, WorkloadSpec, user_id
from jobs.load import produce
from jobs.localstack.redis_server import guards_url
from jobs.sandbox import Sandbox, open_sandbox
from tests.support.faults import (
    Answer,
    Freeze,
    InProcessApi,
    Traffic,
    down_in,
    expected_feed,
    freeze,
    read_feeds_twice,
)
from tests.support.fixtures import cluster_cache
from tests.support.kills import Kill, kill, supervised_service, topic_events
from tests.support.pipeline import wait_converged
from tests.support.reference import Expected, reference_for
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

FEED = FeedSettings(celebrity_threshold=15, follow_merge_limit=4, timeline_cap=12)
#: Small enough that every reader's whole feed fits on one API page.
SPEC = WorkloadSpec(users=60, posts=60, mean_followers=5, max_followers=20,
                    likes_per_post=2, comments_per_post=1, post_delete_share=0.1)
#: From SIGKILL to the store healthy again, restarted by the supervisor (Cassandra replays
#: its commit log; a loaded 2-core machine takes minutes).
RESTART_BOUND_S = 300.0
#: From the store back to the API and the jobs working again.
RECOVERY_BOUND_S = 120.0
#: How long a frozen store stays stopped: at least this, and until /readyz said it was down
#: (at most ``FREEZE_MAX_S``): past the clients' socket and request timeouts.
FREEZE_S = 20.0
FREEZE_MAX_S = 45.0
READERS = [user_id(n) for n in range(12)]
#: The readiness name of each killed service.
DEPENDENCY = {"kafka": "kafka", "cassandra": "cql", "redis": "redis",
              "redis-cluster-2": "redis"}


@contextmanager
def pipeline(stack: StackSettings,
             cache: RedisSettings | None = None) -> Iterator[tuple[Sandbox, ServingSettings]]:
    """A sandbox running both streaming jobs, and API settings on its stores (its cache:
    ``cache``, else the stack's)."""
    flink = stack.flink.model_copy(update={"checkpoint_interval_ms": 1000})
    sandbox = open_sandbox(stack, FEED, flink, cache=cache)
    try:
        sandbox.deploy_all(("fanout", "counters"))
        streaming = sandbox.streaming
        redis = streaming.redis.model_copy(update={"guards_url": guards_url(stack)})
        settings = ServingSettings(
            environment="test", kafka=streaming.kafka, cql=streaming.cql, redis=redis,
            storage=streaming.storage, feed=FEED,
            api=ApiSettings(rate_limit_per_minute=100_000, celebrity_cache_s=0,
                            gc_freeze=False, access_log=False))
        yield sandbox, settings
    finally:
        sandbox.close()


def answered_after(answers: list[Answer], moment: float, status: int) -> Answer | None:
    return next((a for a in list(answers) if a.status == status and a.started > moment), None)


def fault_mid_workload(stack: StackSettings, service: str, seed: int,
                       how: str = "kill", cache: RedisSettings | None = None) -> None:
    if how == "kill":
        supervised_service(stack, service)  # skips when nothing would restart it
    produced = list(Workload(replace(SPEC, seed=seed)).events())
    half = len(produced) // 2
    with pipeline(stack, cache) as (sandbox, settings):
        kafka = sandbox.streaming.kafka
        produce(kafka, produced[:half])
        with InProcessApi(settings) as api, Traffic(
                api, settings, writers=1, keyed_writers=1, readers=2,
                read_users=READERS) as traffic:
            traffic.wait_flowing(RECOVERY_BOUND_S)

            def produce_rest() -> None:
                produce(kafka, produced[half:])

            # The rest of the workload arrives while the store is down; for Kafka, once
            # it is back (a producer cannot reach a dead broker).
            while_down = (lambda: None) if service == "kafka" else produce_rest
            dependency = DEPENDENCY[service]

            def said_down(since: float) -> bool:
                return any(a.started > since and down_in(a, dependency)
                           for a in list(traffic.readiness))

            fault: Kill | Freeze
            if how == "kill":
                # Until /readyz said so, the supervisor waits: a Redis is back within a
                # couple of seconds, less than a slow machine's poll takes.
                fault = kill(stack, service, timeout_s=RESTART_BOUND_S,
                             detail=traffic.summary, on_killed=while_down, seen=said_down,
                             seen_max_s=FREEZE_MAX_S)
                hit, back = fault.killed_at, fault.back_at
            else:
                fault = freeze(stack, service, min_s=FREEZE_S, max_s=FREEZE_MAX_S,
                               seen=said_down, on_frozen=while_down)
                hit, back = fault.frozen_at, fault.thawed_at
            if service == "kafka":
                produce_rest()
            for what, answers, status in (("/readyz ready", traffic.readiness, 200),
                                          ("a write accepted", traffic.writes, 202),
                                          ("a feed read", traffic.reads, 200)):
                eventually(partial(answered_after, answers, back, status),
                           f"{what} after {service} came back", timeout_s=RECOVERY_BOUND_S,
                           detail=traffic.summary)
        print(f"{service} {how}: back {back - hit:.1f} s after the fault began; "
              f"{traffic.summary()}")
        check_answers(traffic, fault, DEPENDENCY[service])
        expected = check_kafka_and_reference(settings, traffic)
        store = "cql" if DEPENDENCY[service] == "redis" and how == "kill" else None
        assert wait_converged(sandbox, expected, store=store) == []
        with InProcessApi(settings) as api:
            read_feeds_twice(api, settings, READERS,
                             {user: expected_feed(expected, user) for user in READERS})


def check_answers(traffic: Traffic, fault: Kill | Freeze, dependency: str) -> None:
    """(a) no 500s, refusals say when to retry; (b) /readyz told the truth."""
    requests = [*traffic.writes, *traffic.keyed, *traffic.reads]
    assert all(a.status in (200, 202, 503, 504) for a in [*requests, *traffic.readiness]), \
        traffic.summary()
    for answer in requests:
        if answer.status == 503:
            assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer
    down = [a for a in traffic.readiness if fault.during(a) and down_in(a, dependency)]
    assert down, f"/readyz never said {dependency} was down while it was ({traffic.summary()})"
    assert all(set(a.body["checks"].values()) <= {"ok", "down"} for a in traffic.readiness)


def check_kafka_and_reference(settings: ServingSettings, traffic: Traffic) -> Expected:
    """(c) accepted writes are in Kafka, a key made at most one event; the reference from
    every event in the sandbox's topics (a retried key's event once: consumers deduplicate
    on its id, as the rules do)."""
    events = topic_events(settings, settings.kafka.event_topics)
    ids = Counter(event.event_id for event in events)
    accepted = [a for a in [*traffic.writes, *traffic.keyed] if a.status == 202]
    missing = [a.body["event_id"] for a in accepted if ids[a.body["event_id"]] == 0]
    assert not missing, f"{len(missing)} writes answered 202 are not in Kafka"
    per_key: dict[str, set[str]] = {}
    for answer in traffic.keyed:
        if answer.status == 202:
            per_key.setdefault(answer.label, set()).add(answer.body["event_id"])
    assert all(len(made) == 1 for made in per_key.values()), "a retried key made two events"
    unique = list({event.event_id: event for event in events}.values())
    expected = reference_for(unique, FEED)
    assert expected.celebrities and expected.deleted_posts
    return expected


def test_kafka_killed_mid_workload(stack: StackSettings) -> None:
    fault_mid_workload(stack, "kafka", seed=61)


def test_cassandra_killed_mid_workload(stack: StackSettings) -> None:
    fault_mid_workload(stack, "cassandra", seed=62)


def test_redis_killed_mid_workload(stack: StackSettings) -> None:
    fault_mid_workload(stack, "redis", seed=63)


def test_a_redis_cluster_master_killed_mid_workload(stack: StackSettings) -> None:
    """The jobs write to and the API reads from the stack's Redis Cluster; one of its three
    masters is killed. It comes back empty, owning its slots again (``nodes.conf``)."""
    fault_mid_workload(stack, "redis-cluster-2", seed=65, cache=cluster_cache(stack))


@pytest.mark.parametrize("service", ["kafka", "cassandra", "redis"])
def test_store_frozen_under_the_streaming_jobs(stack: StackSettings, service: str) -> None:
    fault_mid_workload(stack, service, seed=64, how="freeze")
