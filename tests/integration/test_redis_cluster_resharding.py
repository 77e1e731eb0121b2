"""Resharding a Redis Cluster under the feed reader: slots move between masters key by key.

A private 3-master cluster (``jobs.localstack.redis_cluster``'s masters on ports of their
own: ``local.redis_cluster_port`` + 10, 11, 12, and a temporary folder) holds the worlds of
``test_api_feed_reader`` in the cluster layout: the reader's timeline and followed
celebrities, the celebrities' outboxes, the posts. Then the slots those keys live in move
to another master the way ``redis-cli --cluster reshard`` moves them: the target
``IMPORTING``, the source ``MIGRATING``, ``MIGRATE`` of one key at a time, then
``SETSLOT … NODE`` on every master. After every key that moved, the cache-first reader
(``FeedReader`` over ``ClusterFeedCache``, the CQL store a ``FakeStore``) pages through the
feed, which must be exactly the model's: from the cache, or from the store, marked
degraded, while one step's keys are split between two nodes (the script gets TRYAGAIN).
Before the first move and after the last, pages come from the cache again: the client
followed the MOVED redirections (a degraded read there is retried, for at most a minute: a
loaded machine's cluster can be slow to answer, and once was in CI).
Needs no stack (Debian's redis-server only).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import redis.cluster
from redis.crc import key_slot

from feedline.settings import LocalStackSettings, StackSettings
from feedline.stores.cluster_cache import ClusterFeedCache, cluster_client
from feedline.stores.errors import Breaker
from feedline.stores.feed_reader import REDIS_DOWN, FeedReader
from jobs.localstack.redis_cluster import cluster_urls, redis_cluster_services
from jobs.localstack.redis_server import RedisService
from jobs.localstack.stack import start_services
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys
from tests.integration import test_api_feed_reader as worlds
from tests.support.fake_store import FakeStore
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Private:
    """A private cluster: its settings and its masters."""

    settings: StackSettings
    services: list[RedisService]

    @property
    def urls(self) -> list[str]:
        """The masters' URLs."""
        return cluster_urls(self.settings)


@pytest.fixture(scope="module")
def private() -> Iterator[Private]:
    """A private 3-master cluster, formed; stopped afterwards."""
    base = StackSettings()
    with tempfile.TemporaryDirectory(prefix="fl-reshard-") as state:
        settings = base.model_copy(update={"local": LocalStackSettings(
            state_dir=Path(state), redis_cluster_port=base.local.redis_cluster_port + 10)})
        services = redis_cluster_services(settings)
        try:
            start_services(services, settings, say=lambda _line: None)
            yield Private(settings, services)
        finally:
            for service in services:
                service.process.stop()


@pytest.fixture(scope="module")
def masters(private: Private) -> list[str]:
    """The URLs of the private cluster's masters."""
    return private.urls


def _admin(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)


def _owner(urls: Sequence[str], slot: int) -> str:
    """The URL of the master that serves ``slot`` now."""
    with _admin(urls[0]) as client:
        ranges = client.execute_command("CLUSTER SLOTS")
    for low, high, primary, *_replicas in ranges:
        if int(low) <= slot <= int(high):
            port = int(primary[1])
            return next(u for u in urls if urlsplit(u).port == port)
    raise AssertionError(f"slot {slot} is served by no master")


def move_slot(urls: Sequence[str], slot: int, target: str) -> Iterator[str]:
    """Move ``slot`` to ``target`` one key at a time; yields after each key moved
    (``"migrating"``) and once the slot is handed over (``"moved"``)."""
    source = _owner(urls, slot)
    assert source != target
    parts = urlsplit(target)
    with _admin(source) as src, _admin(target) as dst:
        src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1):
            src.execute_command("MIGRATE", parts.hostname, parts.port, "", 0, 5000,
                                "AUTH2", parts.username or "default", parts.password or "",
                                "KEYS", *keys)
            yield "migrating"
        for url in (target, source, *[u for u in urls if u not in (source, target)]):
            with _admin(url) as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    yield "moved"


def _slots_in_use(keys: RedisKeys, store: FakeStore) -> list[int]:
    """The slots of the reader's keys, of each celebrity's outbox and of some posts."""
    chosen = [keys.timeline("me"), *[keys.outbox(c) for c in sorted(store.celebrity_ids)],
              *[keys.post(p) for p in sorted(store.live)[:4]]]
    return list(dict.fromkeys(key_slot(k.encode()) for k in chosen))


async def _feed(reader: FeedReader, limit: int) -> tuple[list[str], set[str]]:
    """Every post id of the reader's feed, page after page, and how pages were degraded."""
    seen: list[str] = []
    degraded: set[str] = set()
    after = None
    for _ in range(200):
        page = await reader.home("me", after, limit)
        if page.degraded is not None:
            degraded.add(page.degraded)
        seen += [item.post_id for item in page.items]
        after = page.next
        if after is None:
            return seen, degraded
    raise AssertionError("paging did not end")


async def _settled_feed(reader: FeedReader, limit: int,
                       timeout_s: float = 60.0) -> tuple[list[str], set[str], int]:
    """``_feed`` once Redis answers it whole, and how many reads before were degraded.

    With no slot moving, every read should come from Redis; a degraded one is tolerated
    (the cluster can be slow to answer on a loaded machine: a page then honestly comes
    from the store), but Redis must answer one by itself within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    failed = 0
    while True:
        seen, degraded = await _feed(reader, limit)
        if not degraded or time.monotonic() >= deadline:
            return seen, degraded, failed
        failed += 1
        await asyncio.sleep(1.0)


@pytest.mark.parametrize("seed", range(8))
def test_feeds_stay_exact_while_their_slots_move(masters: list[str], seed: int,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(seed)
    cap, limit = rng.choice([5, 50]), rng.randint(1, 6)
    keys = RedisKeys(f"flrs{seed}x{time.monotonic_ns() % 10**6}", cluster=True)
    writer = redis.cluster.RedisCluster.from_url(masters[0], decode_responses=True)
    store, expected = worlds.build_world(random.Random(seed), writer, keys, cap)
    writer.sadd(keys.followed_celebrities("me"), *store.celebrity_ids, COMPLETE_MEMBER)
    slots = _slots_in_use(keys, store)
    targets: dict[int, str] = {}
    steps: list[tuple[str, list[str], set[str]]] = []
    retried: dict[str, int] = {}

    async def read_while_moving() -> None:
        client = cluster_client(masters[0], decode_responses=True, socket_timeout=5)
        # No pause after a failed read (the default skips the cache for a second): every
        # step tries the cache.
        reader = FeedReader(ClusterFeedCache(client, keys, timeline_cap=cap),
                            store, timeline_cap=cap,  # type: ignore[arg-type]
                            breaker=Breaker(0.0))
        try:
            seen, degraded, retried["before"] = await _settled_feed(reader, limit)
            steps.append(("before", seen, degraded))
            for slot in slots:
                source = _owner(masters, slot)
                target = targets[slot] = masters[(masters.index(source) + 1) % len(masters)]
                for step in move_slot(masters, slot, target):
                    steps.append((f"{step} {slot}", *await _feed(reader, limit)))
            seen, degraded, retried["after"] = await _settled_feed(reader, limit)
            steps.append(("after", seen, degraded))
        finally:
            await client.aclose()

    try:
        asyncio.run(read_while_moving())
    finally:
        for key in writer.scan_iter(match=keys.pattern(), count=1000):
            writer.delete(key)
        writer.close()
    degraded = [name for name, _, how in steps if how]
    why = sorted({r.getMessage() for r in caplog.records if "redis" in r.getMessage()})
    print(f"{len(slots)} slots moved in {len(steps) - 2} steps; {len(degraded)} feeds read "
          f"from the store meanwhile ({', '.join(degraded[:4])}…); degraded reads with no "
          f"slot moving: {retried}; "
          f"why: {why[:4]}")
    assert len(steps) > 2 + len(slots)  # keys moved one by one, pages read between
    wrong = [(name, feed) for name, feed, _ in steps if feed != expected]
    assert not wrong, f"feeds differ from the model at {wrong[:3]} (expected {expected})"
    # Before and after the moves, Redis answered (misses are not degradations): after
    # them, by following the MOVED redirections.
    assert steps[0][2] == set() and steps[-1][2] == set(), (steps[0], steps[-1], retried)
    assert all(_owner(masters, slot) == target for slot, target in targets.items())


def test_the_client_learns_the_cluster_again_after_a_master_restarts(private: Private) -> None:
    """A master stops while reads and readiness pings go on (each node fails some of them:
    the cluster is down meanwhile), then starts again from its ``nodes.conf``: the same
    client object must serve again by itself (redis-py 5.3 had dropped every node it could
    learn from: ``ReachableCluster.initialize`` puts its seeds back)."""
    keys = RedisKeys(f"flrr{time.monotonic_ns() % 10**6}", cluster=True)
    victim = private.services[1]
    outcomes: list[str] = []

    async def scenario() -> None:
        client = cluster_client(private.urls[0], decode_responses=True, socket_timeout=2,
                                socket_connect_timeout=2)
        cache = ClusterFeedCache(client, keys, timeline_cap=5)

        async def attempt() -> bool:
            try:
                await cache.ping()
                await cache.post_views([f"p{i}" for i in range(30)])  # posts on every node
            except REDIS_DOWN as error:
                outcomes.append(type(error).__name__)
                return False
            outcomes.append("ok")
            return True

        try:
            assert await attempt()
            victim.process.stop()
            for _ in range(20):
                assert not await attempt()
                await asyncio.sleep(0.25)
            start_services([victim], private.settings, say=lambda _line: None)
            deadline = time.monotonic() + 120
            while not await attempt():
                assert time.monotonic() < deadline, f"never served again: {outcomes[-5:]}"
                await asyncio.sleep(0.5)
        finally:
            await client.aclose()

    asyncio.run(scenario())
    eventually(lambda: victim.healthy(), "the master healthy again")
    print(f"outcomes: {outcomes[:3]} … {outcomes[-3:]} ({len(outcomes)} attempts)")
