"""Realtime push on a 3-master Redis Cluster reads what it reads on one Redis.

The same push events are written, through the writers' publish functions
(``feedline.stores.push.queue_feed_events``, ``queue_notification_event``) in their
pipelines, to a single Redis in the default layout and to a Redis Cluster in the cluster
layout; ``push_subscription`` (``PushSubscription`` there, ``ClusterPushSubscription`` here)
must hand out the same events in the same order, resume the same way from a
``Last-Event-ID``, and wake up as soon as a stream on another node is written. The reader
follows celebrities whose streams live on another node than the user's, and one on the same
node in another slot. Servers: ``tests/support/redis_cluster.py`` (the stack's cluster).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.cluster
import redis.exceptions
from redis.asyncio import Redis

from feedline.rules.effects import (
    Effect,
    OutboxAdd,
    OutboxRemove,
    PostRetract,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
)
from feedline.settings_blocks import RedisSettings
from feedline.stores.async_redis import async_redis
from feedline.stores.cluster_cache import cluster_client
from feedline.stores.cluster_push import ClusterPushSubscription, push_subscription
from feedline.stores.cluster_writes import cache_client
from feedline.stores.push import queue_feed_events, queue_notification_event
from feedline.stores.push_reader import PushMessage, PushSubscription
from schemas.redis_keys import RedisKeys
from schemas.redis_push import EntryId, parse_event_id
from tests.support.redis_cluster import prefix, servers

__all__ = ["prefix", "servers"]  # the fixtures

ME = "me"
#: One write of a round: queues on a pipeline of (client, keys).
Write = Callable[[Any, RedisKeys], object]
Seen = tuple[str | None, str, str]  # source, event, data


def _celebrities(cluster: Any, keys: RedisKeys) -> tuple[list[str], str, str]:
    """Two celebrities on other nodes than the user's stream, one on its node (another slot)."""
    home = cluster.get_node_from_key(keys.push(ME)).name
    far: list[str] = []
    near = None
    for n in range(500):
        star = f"star{n}"
        node = cluster.get_node_from_key(keys.author_push(star)).name
        if node != home and len(far) < 2:
            far.append(star)
        elif node == home and near is None:
            near = star
    assert len(far) == 2 and near is not None
    return [*far, near], far[0], near


def _clients(servers: tuple[str, str], prefix: str) -> list[tuple[Any, RedisKeys]]:
    cluster_url, single_url = servers
    return [(cache_client(RedisSettings(url=single_url)), RedisKeys(prefix)),
            (cache_client(RedisSettings(url=cluster_url, cluster=True)),
             RedisKeys(prefix, cluster=True))]


def _readers(servers: tuple[str, str]) -> list[Redis]:
    cluster_url, single_url = servers
    return [async_redis(single_url, decode_responses=True, socket_timeout=10),
            cluster_client(cluster_url, decode_responses=True, socket_timeout=10)]


def _post(rng: random.Random, n: int, author: str, user: str | None) -> Write:
    post_id, created = f"p{n}", 1_700_000_000_000 + n
    effects: list[Effect] = [PostUpsert(post_id, author, created, "c", (), f"e{n}")]
    if user is None:
        effects.append(OutboxAdd(author, post_id, created))
    else:
        effects += [TimelineAdd(user, post_id, created, author),
                    TimelineAdd(f"other{rng.randint(0, 3)}", post_id, created, author)]
    return lambda pipe, keys: queue_feed_events(pipe, keys, effects)


def _delete(n: int, author: str, user: str | None) -> Write:
    post_id, created = f"p{n}", 1_700_000_000_000 + n
    effects: list[Effect] = [PostRetract(post_id, author, created)]
    effects.append(OutboxRemove(author, post_id) if user is None
                   else TimelineRemove(user, post_id, created))
    return lambda pipe, keys: queue_feed_events(pipe, keys, effects)


def _notification(n: int) -> Write:
    return lambda pipe, keys: queue_notification_event(pipe, keys, ME, f"like:p{n}", None)


def _rounds(rng: random.Random, celebrities: list[str], mixed: bool) -> list[list[Write]]:
    """Rounds of writes; unless ``mixed``, each round's events for the reader in one stream."""
    rounds, n = [], 0
    for _ in range(rng.randint(8, 16)):
        sources = rng.sample([None, *celebrities], rng.randint(1, 3) if mixed else 1)
        writes: list[Write] = []
        for _ in range(rng.randint(1, 4)):
            source = rng.choice(sources)
            n += 1
            kind = rng.random()
            if source is None:
                writes.append(_post(rng, n, f"a{n % 5}", ME) if kind < 0.6 else
                              _delete(n, f"a{n % 5}", ME) if kind < 0.8 else _notification(n))
            else:
                writes.append(_post(rng, n, source, None) if kind < 0.7 else
                              _delete(n, source, None))
        if rng.random() < 0.3:  # events of nobody the reader follows
            n += 1
            writes.append(_post(rng, n, "stranger", None))
        rounds.append(writes)
    return rounds


def _write(rounds: list[list[Write]], clients: list[tuple[Any, RedisKeys]]) -> None:
    """Each round in one pipeline per server, the rounds at least 2 ms apart."""
    for writes in rounds:
        for client, keys in clients:
            pipe = client.pipeline(transaction=False)
            for write in writes:
                write(pipe, keys)
            pipe.execute()
        time.sleep(0.003)


async def _drain(subscription: PushSubscription) -> list[PushMessage]:
    out: list[PushMessage] = []
    for _ in range(1000):
        got = await subscription.read()
        if not got:
            return out
        out += got
    raise AssertionError("the streams did not run dry")


def _seen(messages: list[PushMessage]) -> list[Seen]:
    return [(m.author_id, m.event, m.data) for m in messages]


def _check_order(messages: list[PushMessage]) -> None:
    """Oldest first by id, each stream's ids growing, no entry twice."""
    keys = [(parse_event_id(m.id)[0].key(), m.author_id or "") for m in messages]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def _check_resumed(messages: list[PushMessage], at: int, resumed: list[PushMessage]) -> None:
    """What followed ``at``, plus at most other streams' events of its millisecond."""
    last = parse_event_id(messages[at].id)[0]
    later = {m.id for m in messages[at + 1:]}
    ids = {m.id for m in resumed}
    assert later <= ids
    for m in resumed:
        if m.id not in later:
            entry = parse_event_id(m.id)[0]
            assert entry.ms == last.ms and m.author_id != messages[at].author_id, m


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_cluster_push_reads_what_one_redis_reads(servers: tuple[str, str], prefix: str,
                                                 seed: int, mixed: bool) -> None:
    rng = random.Random(seed)
    clients = _clients(servers, prefix)
    celebrities, _far, _near = _celebrities(clients[1][0], clients[1][1])
    count = rng.choice([1, 2, 3, 200])
    rounds = _rounds(rng, celebrities, mixed)

    async def run() -> list[list[PushMessage]]:
        readers = _readers(servers)
        try:
            subs = [push_subscription(r, keys, ME, block_ms=100, count=count)
                    for r, (_, keys) in zip(readers, clients, strict=True)]
            assert isinstance(subs[1], ClusterPushSubscription)
            assert type(subs[0]) is PushSubscription
            for sub in subs:
                assert not await sub.start(celebrities, None)
            await asyncio.to_thread(_write, rounds, clients)
            read = [await _drain(sub) for sub in subs]
            at = rng.randrange(len(read[0]))
            for messages, r, (_, keys) in zip(read, readers, clients, strict=True):
                again = push_subscription(r, keys, ME, block_ms=100, count=count)
                assert not await again.start(celebrities, messages[at].id)
                resumed = await _drain(again)
                _check_resumed(messages, at, resumed)
                if not mixed:  # one stream per round: the resume is exact
                    assert _seen(resumed) == _seen(messages[at + 1:])
            return read
        finally:
            for r in readers:
                await r.aclose()

    try:
        single, sharded = asyncio.run(run())
    finally:
        for client, _ in clients:
            client.close()
    for messages in (single, sharded):
        _check_order(messages)
    if mixed:  # the same events; order within a round's millisecond follows its ids
        assert sorted(_seen(single), key=repr) == sorted(_seen(sharded), key=repr)
    else:
        assert _seen(single) == _seen(sharded)
    assert {m.author_id for m in sharded} - {None}, "no celebrity event was read"


def test_a_write_on_another_node_wakes_the_blocked_read(servers: tuple[str, str],
                                                       prefix: str) -> None:
    """The concurrent per-slot XREAD BLOCKs: a wake-up at once, and none without events."""
    clients = _clients(servers, prefix)
    cluster, keys = clients[1]
    celebrities, far, near = _celebrities(cluster, keys)

    async def run() -> tuple[list[PushMessage], float, list[PushMessage], float]:
        reader = cluster_client(servers[0], decode_responses=True, socket_timeout=10)
        try:
            sub = push_subscription(reader, keys, ME, block_ms=400)
            await sub.start(celebrities, None)
            began = time.monotonic()
            idle = await sub.read()
            idle_s = time.monotonic() - began
            sub.block_ms = 5000
            task = asyncio.ensure_future(sub.read())
            await asyncio.sleep(0.3)
            began = time.monotonic()
            pipe = cluster.pipeline(transaction=False)
            _post(random.Random(0), 1, far, None)(pipe, keys)
            await asyncio.to_thread(pipe.execute)
            woke = await task
            return idle, idle_s, woke, time.monotonic() - began
        finally:
            await reader.aclose()

    try:
        idle, idle_s, woke, woke_s = asyncio.run(run())
    finally:
        cluster.close()
        clients[0][0].close()
    assert idle == [] and 0.35 <= idle_s < 2
    assert [(m.author_id, m.event) for m in woke] == [(far, "feed")] and woke_s < 2
    assert near != far


def test_follow_and_a_trimmed_resume_on_the_cluster(servers: tuple[str, str],
                                                    prefix: str) -> None:
    """``follow`` reads a new celebrity from now; a resume past the window says reset."""
    clients = _clients(servers, prefix)
    celebrities, far, near = _celebrities(clients[1][0], clients[1][1])
    rng = random.Random(1)
    _write([[_post(rng, n, far, None) for n in range(1100)]], clients)

    async def run() -> list[tuple[bool, list[Seen]]]:
        readers = _readers(servers)
        out = []
        try:
            for r, (client, keys) in zip(readers, clients, strict=True):
                first = client.xrange(keys.author_push(far), count=1)[0][0]
                oldest = f"{EntryId.parse(first.decode()).ms - 1}-0@{far}"
                trimmed = await push_subscription(r, keys, ME, block_ms=100).start(
                    [far], oldest)
                sub = push_subscription(r, keys, ME, block_ms=100)
                await sub.start([], None)
                await sub.follow([near])
                _write([[_post(rng, 5000, near, None), _post(rng, 5001, far, None),
                         _post(rng, 5002, "x", ME)]], [(client, keys)])
                out.append((trimmed, _seen(await _drain(sub))))
        finally:
            for r in readers:
                await r.aclose()
        return out

    try:
        (single_trimmed, single), (sharded_trimmed, sharded) = asyncio.run(run())
    finally:
        for client, _ in clients:
            client.close()
    assert single_trimmed and sharded_trimmed
    assert sorted(single, key=repr) == sorted(sharded, key=repr) and len(sharded) == 2
    assert {source for source, _, _ in sharded} == {None, near}
    assert celebrities


def test_one_xread_over_the_slots_is_refused(servers: tuple[str, str], prefix: str) -> None:
    """Why the cluster reader exists: the single-node read fails on the cluster layout."""
    clients = _clients(servers, prefix)
    cluster, keys = clients[1]
    celebrities, _, _ = _celebrities(cluster, keys)

    async def run() -> None:
        reader = cluster_client(servers[0], decode_responses=True, socket_timeout=10)
        try:
            sub = PushSubscription(reader, keys, ME, block_ms=100)
            await sub.start(celebrities, None)
            with pytest.raises(redis.exceptions.RedisClusterException):
                await sub.read()
        finally:
            await reader.aclose()

    try:
        asyncio.run(run())
    finally:
        cluster.close()
        clients[0][0].close()
