"""Slow and flaky network between the API and its stores, through Toxiproxy.

A toxiproxy-server process (``make toxiproxy``; the ``toxiproxy`` fixture of the fault tests'
conftest) runs for the session on 127.0.0.1 with one
proxy to the stack's Redis and one to its Cassandra. The API runs in-process under uvicorn
(``InProcessApi``) on this test's keyspace and key prefix, with its Redis URL and CQL port
pointing at the proxies; the stores are seeded directly, not through the proxies. Toxics
(latency, a bandwidth limit, connection resets) go on these proxies only: the shared stores
and everyone else's connections to them are never touched.

What is asserted is behaviour, not speed: which answers come back (200 with the same items,
degraded or not; 429; a precise 503 with Retry-After), never 500, and recovery once the toxic
is removed. Read latencies are measured and printed (p50/p99 per toxic, docs/RELIABILITY.md).

Kafka is left out: its brokers advertise their own listener address, so clients that
bootstrap through a proxy then connect to the broker directly, around it.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from feedline.settings import (
    ApiSettings,
    CqlSettings,
    RedisSettings,
    ServingSettings,
    StackSettings,
)
from tests.faults.test_kafka_freeze import InProcessApi
from tests.integration import test_api_stack
from tests.integration.test_api_stack import Seeder, auth, consume
from tests.support.toxiproxy import Proxy, Toxiproxy
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

api_settings = test_api_stack.api_settings  # this test's topics, keyspace and key prefix
seeder = test_api_stack.seeder

#: Reads measured per phase (p99 of so few is about their maximum) ...
READS = 30
#: ... one started every so often at most, so that a phase outlasts the reader's Redis
#: breaker pause (``REDIS_PAUSE_S``) and shows the reads that probe Redis again.
PACE_S = 0.1
#: Readers at once in the concurrent phases.
CLIENTS = 4
#: Recovery bound once a toxic is removed (a hang guard, not a speed claim).
RECOVERY_BOUND_S = 120.0
FRIENDS = ("bob", "carol")


@dataclass(frozen=True)
class Proxies:
    redis: Proxy
    cql: Proxy


@pytest.fixture(scope="session")
def session_proxies(toxiproxy: Toxiproxy, stack: StackSettings) -> Proxies:
    redis_upstream = stack.redis.url.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    cql_upstream = f"{stack.cql.contact_points[0]}:{stack.cql.port}"
    return Proxies(toxiproxy.proxy("redis", redis_upstream),
                   toxiproxy.proxy("cassandra", cql_upstream))


@pytest.fixture
def proxies(session_proxies: Proxies) -> Iterator[Proxies]:
    """The proxies, free of toxics after the test whatever happened."""
    yield session_proxies
    session_proxies.redis.clear()
    session_proxies.cql.clear()


def _through(url: str, listen: str) -> str:
    """``url`` (its credentials kept) pointing at a proxy's ``host:port``."""
    auth = urlsplit(url).netloc.rpartition("@")[0]
    return f"redis://{auth + '@' if auth else ''}{listen}/0"


@pytest.fixture
def net_settings(api_settings: ServingSettings, proxies: Proxies) -> ServingSettings:
    """The API reaching Redis (cache and request guards) and CQL through the proxies."""
    return api_settings.model_copy(update={
        "redis": RedisSettings(url=_through(api_settings.redis.url, proxies.redis.listen),
                               key_prefix=api_settings.redis.key_prefix),
        "cql": CqlSettings(**{**api_settings.cql.model_dump(), "contact_points": ("127.0.0.1",),
                              "port": proxies.cql.port}),
        "api": ApiSettings(**{**api_settings.api.model_dump(), "access_log": False})})


@dataclass(frozen=True)
class Read:
    elapsed_s: float
    status: int
    degraded: str | None
    retry_after: str | None
    content_type: str
    body: Any


def read_feed(client: httpx.Client, settings: ServingSettings, user: str,
              limit: int = 10) -> Read:
    """A first page of ``limit`` (10 by default: past the 8 entries the test settings
    cache per timeline, so the page's tail is read from CQL and hydrated from Redis)."""
    started = time.monotonic()
    response = client.get("/v1/feed", params={"limit": limit}, headers=auth(settings, user))
    return Read(time.monotonic() - started, response.status_code,
                response.headers.get("x-feed-degraded"), response.headers.get("retry-after"),
                response.headers.get("content-type", ""),
                response.json() if response.content else None)


def post_ids(read: Read) -> list[str]:
    return [item["post_id"] for item in read.body["items"]]


def summary(label: str, reads: list[Read]) -> str:
    """p50/p99 of the read latencies in ms, and the answers seen."""
    ms = sorted(r.elapsed_s * 1000 for r in reads)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    answers: dict[str, int] = {}
    for r in reads:
        key = f"{r.status}{'/degraded=' + r.degraded if r.degraded else ''}"
        answers[key] = answers.get(key, 0) + 1
    return (f"{label:<28} n={len(reads):>3} p50={statistics.median(ms):7.0f} ms "
            f"p99={p99:7.0f} ms max={ms[-1]:7.0f} ms {answers}")


def phase(client: httpx.Client, settings: ServingSettings, user: str, label: str,
          results: list[str], reads: int = READS, pace_s: float = 0.0,
          before_each: Callable[[], None] | None = None, limit: int = 10) -> list[Read]:
    done = []
    for _ in range(reads):
        if before_each is not None:
            before_each()
        started = time.monotonic()
        done.append(read_feed(client, settings, user, limit))
        time.sleep(max(0.0, pace_s - (time.monotonic() - started)))
    results.append(summary(label, done))
    print(results[-1])
    return done


def concurrent_phase(url: str, settings: ServingSettings, user: str, label: str,
                     results: list[str], clients: int = CLIENTS) -> list[Read]:
    """``clients`` readers at once, each making a paced phase of reads."""
    per_client: list[list[Read]] = [[] for _ in range(clients)]

    def run(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            per_client[n] = phase(client, settings, user, f"{label} #{n}", [], pace_s=PACE_S)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [read for reads in per_client for read in reads]
    results.append(summary(label, done))
    print(results[-1])
    return done


def seed_world(seeder: Seeder, readers: tuple[str, ...]) -> None:
    for reader in readers:
        for friend in FRIENDS:
            seeder.follow(reader, friend)
    for n in range(6):
        for friend in FRIENDS:
            seeder.post(friend, f"{friend}-p{n}")


def assert_served(reads: list[Read], expected: list[str]) -> None:
    """Every read answered 200 with the expected items (from Redis or, degraded, from CQL)."""
    for read in reads:
        assert read.status == 200, (read.status, read.body)
        assert post_ids(read) == expected, read.degraded


@pytest.mark.parametrize("budget_s", [None, 30.0], ids=["budget", "no-budget"])
def test_slow_redis_reads_fall_back_to_cql_and_recover(
        net_settings: ServingSettings, proxies: Proxies, seeder: Seeder,
        budget_s: float | None) -> None:
    """Reads under Redis latency; ``no-budget`` (a 30 s budget) shows what each Redis call's
    socket timeout alone gives, for comparison."""
    settings = net_settings
    if budget_s is not None:
        settings = settings.model_copy(update={"redis": settings.redis.model_copy(
            update={"read_budget_s": budget_s})})
    seed_world(seeder, ("alice",))
    expected = seeder.newest_first(set(FRIENDS))[:10]
    results: list[str] = []
    print(f"\nRedis read budget {settings.redis.read_budget_s} s, "
          f"socket timeout {settings.api.redis_timeout_s} s")
    with InProcessApi(settings) as api, httpx.Client(base_url=api.url, timeout=60) as client:
        warm = read_feed(client, settings, "alice")  # caches the timeline
        assert warm.status == 200 and post_ids(warm) == expected
        baseline = phase(client, settings, "alice", "no toxic", results, pace_s=PACE_S)
        assert_served(baseline, expected)
        assert not any(r.degraded for r in baseline)

        for latency_ms in (300, 450):
            with proxies.redis.toxic("latency", latency=latency_ms):
                assert_served(phase(client, settings, "alice", f"redis +{latency_ms} ms",
                                    results, pace_s=PACE_S), expected)
        with proxies.redis.toxic("latency", latency=450):  # everyone reading at once
            assert_served(concurrent_phase(api.url, settings, "alice",
                                           f"redis +450 ms, {CLIENTS} clients", results),
                          expected)

        with proxies.redis.toxic("latency", latency=2000):
            slow = phase(client, settings, "alice", "redis +2 s", results, pace_s=PACE_S)
        assert_served(slow, expected)
        # A latency far above the Redis time budget (and socket timeout): the reader gave up
        # on Redis and served the same page from CQL, saying so.
        assert all(r.degraded == "redis" for r in slow)

        removed_at = time.monotonic()
        recovered = eventually(
            lambda: (r := read_feed(client, settings, "alice")).degraded is None and r,
            "reads served from Redis again after the toxic is removed",
            timeout_s=RECOVERY_BOUND_S, every_s=0.1)
        print(f"reads from Redis again {time.monotonic() - removed_at:.1f} s after the "
              "latency toxic was removed")
        assert recovered.status == 200 and post_ids(recovered) == expected
        after = phase(client, settings, "alice", "no toxic (after)", results, pace_s=PACE_S)
        assert_served(after, expected)
    print("\n".join(["", *results]))


@pytest.mark.usefixtures("held_rate_clock")
def test_flaky_redis_reads_never_fail_and_guards_hold(
        net_settings: ServingSettings, proxies: Proxies, seeder: Seeder) -> None:
    limit = 8
    settings = net_settings.model_copy(update={"api": ApiSettings(
        **{**net_settings.api.model_dump(), "rate_limit_per_minute": limit})})
    readers = tuple(f"reader{n}" for n in range(3))
    seed_world(seeder, readers)
    expected = seeder.newest_first(set(FRIENDS))[:10]
    results: list[str] = []
    with InProcessApi(settings) as api, httpx.Client(base_url=api.url, timeout=60) as client:
        baseline = phase(client, settings, readers[0], "no toxic", results, reads=limit)
        assert_served(baseline, expected)

        with proxies.redis.toxic("reset_peer", timeout=0):
            reset = phase(client, settings, readers[1], "redis reset_peer", results,
                          reads=limit + 2)
            # Never 500: served (from CQL) up to the limit, counted in process, then 429.
            assert_served(reset[:limit], expected)
            assert all(r.degraded == "redis" for r in reset[:limit])
            for refused in reset[limit:]:
                assert refused.status == 429 and refused.retry_after is not None, refused

            # A write with an Idempotency-Key cannot be recorded: refused, precisely.
            key = {"Idempotency-Key": str(uuid.uuid4())}
            headers = {**auth(settings, readers[2]), **key}
            during = client.put("/v1/users/dave/follow", headers=headers)
            print(f"write with an Idempotency-Key during the resets: {during.status_code} "
                  f"{during.text}")
            assert during.status_code in (202, 503), during.text
            if during.status_code == 503:
                assert during.headers["retry-after"]
                assert during.headers["content-type"].startswith("application/problem+json")

        # Once Redis answers again, retries of that write are applied exactly once.
        removed_at = time.monotonic()
        retried = eventually(
            lambda: (r := client.put("/v1/users/dave/follow", headers=headers)).status_code
            == 202 and r, "the retried write accepted after the toxic is removed",
            timeout_s=RECOVERY_BOUND_S, every_s=0.1)
        print(f"the retried write accepted {time.monotonic() - removed_at:.1f} s after the "
              "reset_peer toxic was removed")
        again = client.put("/v1/users/dave/follow", headers=headers)
        assert again.status_code == 202 and again.json() == retried.json()
        produced = [event for _key, event in consume(settings, settings.kafka.follows_topic)
                    if event["follower_id"] == readers[2]]
        assert [e["event_id"] for e in produced] == [retried.json()["event_id"]]

    print("\n".join(["", *results]))


def test_throttled_redis_reads_are_served(
        net_settings: ServingSettings, proxies: Proxies, seeder: Seeder) -> None:
    settings = net_settings
    seed_world(seeder, ("frank",))
    expected = seeder.newest_first(set(FRIENDS))[:10]
    results: list[str] = []

    def from_redis() -> bool:
        return read_feed(client, settings, "frank").degraded is None

    with InProcessApi(settings) as api, httpx.Client(base_url=api.url, timeout=60) as client:
        eventually(from_redis, "reads served from Redis", timeout_s=RECOVERY_BOUND_S)
        baseline = phase(client, settings, "frank", "no toxic", results, pace_s=PACE_S)
        assert_served(baseline, expected)
        with proxies.redis.toxic("bandwidth", rate=1):  # 1 KB/s from Redis
            narrow = phase(client, settings, "frank", "redis bandwidth 1 KB/s", results,
                           pace_s=PACE_S)
        assert_served(narrow, expected)
        removed_at = time.monotonic()
        eventually(from_redis, "reads served from Redis again after the toxic is removed",
                   timeout_s=RECOVERY_BOUND_S, every_s=0.1)
        print(f"reads from Redis again {time.monotonic() - removed_at:.1f} s after the "
              "bandwidth toxic was removed")
    print("\n".join(["", *results]))


def test_slow_and_resetting_cql_answers_or_refuses_precisely(
        net_settings: ServingSettings, proxies: Proxies, seeder: Seeder,
        redis_keys: Any) -> None:
    settings = net_settings
    seed_world(seeder, ("erin",))
    expected = seeder.newest_first(set(FRIENDS))[:10]
    redis_client, keys = redis_keys
    deadline_s = settings.api.request_deadline_s
    results: list[str] = []

    def uncache() -> None:
        """Drop this test's keys: the next read must come from CQL (and re-cache)."""
        stale = list(redis_client.scan_iter(match=keys.pattern(), count=1000))
        if stale:
            redis_client.delete(*stale)

    def answered_or_refused(read: Read) -> None:
        assert read.elapsed_s < deadline_s + 5, "the read outlived the request deadline"
        if read.status == 200:
            assert post_ids(read) == expected
        else:
            assert read.status in (503, 504), (read.status, read.body)
            assert read.content_type.startswith("application/problem+json")
            assert read.retry_after is not None or read.status == 504
            assert read.status == 504 or read.body["dependency"] == "cql", read.body

    with InProcessApi(settings) as api, httpx.Client(base_url=api.url, timeout=60) as client:
        baseline = phase(client, settings, "erin", "cql, page not cached", results,
                         reads=10, before_each=uncache)
        assert_served(baseline, expected)

        with proxies.cql.toxic("latency", latency=500):
            slow = phase(client, settings, "erin", "cql +500 ms, not cached", results,
                         reads=10, before_each=uncache)
            # A page Redis holds alone (5 of the 8 cached entries) needs no CQL read.
            cached = phase(client, settings, "erin", "cql +500 ms, cached, limit 5", results,
                           reads=10, limit=5)
        assert_served(cached, expected[:5])  # the reads above cached the timeline again
        for read in slow:
            answered_or_refused(read)

        with proxies.cql.toxic("reset_peer", timeout=0):
            reset = phase(client, settings, "erin", "cql reset_peer, not cached", results,
                          reads=10, before_each=uncache)
        for read in reset:
            answered_or_refused(read)
        assert any(r.status == 503 for r in reset), "no read was refused with CQL resetting"

        def recovered() -> Read | None:
            uncache()
            read = read_feed(client, settings, "erin")
            return read if read.status == 200 else None

        started = time.monotonic()
        first = eventually(recovered, "reads served from CQL again after the toxic is removed",
                           timeout_s=RECOVERY_BOUND_S, every_s=0.1)
        print(f"CQL reads answered again {time.monotonic() - started:.1f} s after the "
              "reset_peer toxic was removed")
        assert post_ids(first) == expected
        assert_served(phase(client, settings, "erin", "cql after, not cached", results,
                            reads=10, before_each=uncache), expected)
    print("\n".join(["", *results]))


#: How long a writer whose CQL answers are lost may take to give up: several times the
#: driver's request timeout (10 s, ``feedline.stores.cql.connect``); a hang guard.
LOST_ANSWERS_GUARD_S = 90.0


def test_a_writer_whose_cql_answers_are_lost_raises_instead_of_waiting(
        stack: StackSettings, proxies: Proxies, keyspace: str, redis_keys: Any) -> None:
    """The streaming writers' CQL requests carry the request timeout.

    With Toxiproxy's ``timeout`` toxic (timeout 0) the proxy keeps the connection open and
    drops whatever comes back, so requests sent then are never answered. The driver's
    ``execute_concurrent`` sends requests with no timeout and would wait for ever (a writer
    did, after a Cassandra freeze: its job running, writing nothing). The writer must raise
    ``OperationTimedOut`` instead (its job then restarts from a checkpoint), and write again
    once the answers come back (the driver closes the connection whose answers were lost and
    opens a new one by itself; meanwhile a write may find no host).
    """
    from cassandra import OperationTimedOut
    from cassandra.cluster import NoHostAvailable

    from feedline.rules.effects import TimelineAdd
    from feedline.stores.cql import connect
    from feedline.stores.feed_writer import FeedWriter

    client, keys = redis_keys
    cql = CqlSettings(**{**stack.cql.model_dump(), "contact_points": ("127.0.0.1",),
                         "port": proxies.cql.port})
    cluster, session = connect(cql, keyspace=keyspace)
    try:
        writer = FeedWriter(session, client, keys, timeline_cap=10, retries=0)
        base_ms = 1_780_000_000_000
        writer.write([TimelineAdd("reader", "p1", base_ms, "author")])
        outcome: list[object] = []

        def write() -> None:
            try:
                writer.write([TimelineAdd("reader", "p2", base_ms + 1, "author")])
                outcome.append("written")
            except Exception as exc:  # what the writer raised is the outcome asserted
                outcome.append(exc)

        with proxies.cql.toxic("timeout", timeout=0):
            thread = threading.Thread(target=write, daemon=True)
            thread.start()
            thread.join(LOST_ANSWERS_GUARD_S)
        assert not thread.is_alive(), \
            f"the writer still waits for lost CQL answers after {LOST_ANSWERS_GUARD_S:.0f} s"
        assert len(outcome) == 1 and isinstance(outcome[0], OperationTimedOut), outcome

        def written_again() -> bool:
            try:
                writer.write([TimelineAdd("reader", "p3", base_ms + 2, "author")])
            except (OperationTimedOut, NoHostAvailable):  # the driver reconnects by itself
                return False
            return True

        eventually(written_again, "the writer writes again once CQL answers",
                   timeout_s=RECOVERY_BOUND_S, every_s=1.0)
        rows = session.execute("SELECT post_id FROM timelines WHERE user_id = %s", ("reader",))
        assert {row.post_id for row in rows} >= {"p1", "p3"}
    finally:
        cluster.shutdown()
