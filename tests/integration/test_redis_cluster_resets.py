"""Feed reads on the Redis Cluster while its nodes keep dropping every client connection.

On a connection error redis-py's cluster client closes the connections of every node,
also those other requests are opening or writing on at that moment; their next write
found the stream writer gone and raised ``AttributeError`` (a 500 from the API), seen
when a master was killed mid-workload (``test_store_kills``). Here the nodes drop their
clients (``CLIENT KILL TYPE normal``) round after round while several readers share one
client, as the API's requests do: every read must answer, from Redis or degraded to the
store, the same page, and the reads are served from Redis again once the drops stop.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import redis.cluster
from redis.asyncio.cluster import RedisCluster

from feedline.stores.cluster_cache import ClusterFeedCache, cluster_client
from feedline.stores.errors import Breaker
from feedline.stores.feed_reader import FeedReader
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys
from tests.integration import test_api_feed_reader as worlds
from tests.support.redis_cluster import prefix, servers

__all__ = ["prefix", "servers"]  # the fixtures

#: Rounds of connection drops on every master, and the readers sharing one client.
ROUNDS, READERS, LIMIT = 150, 8, 5


def test_reads_while_the_nodes_drop_their_clients_answer_and_then_recover(
        servers: tuple[str, str], prefix: str) -> None:
    cluster_url, _ = servers
    keys = RedisKeys(prefix, cluster=True)
    writer = redis.cluster.RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        store, expected = worlds.build_world(random.Random(5), writer, keys, 50)
        writer.sadd(keys.followed_celebrities("me"), *store.celebrity_ids, COMPLETE_MEMBER)
    finally:
        writer.close()
    assert len(expected) > LIMIT
    outcomes: Counter[str] = Counter()
    wrong: list[list[str]] = []
    failures: list[str] = []

    async def run() -> list[str | None]:
        client = cluster_client(cluster_url, decode_responses=True, socket_timeout=5,
                                socket_connect_timeout=5)
        admin = RedisCluster.from_url(cluster_url)
        # No pause after a failed read: every read tries Redis.
        reader = FeedReader(ClusterFeedCache(client, keys, timeline_cap=50), store,
                            timeline_cap=50, breaker=Breaker(0.0),  # type: ignore[arg-type]
                            redis_budget_s=60.0)
        dropping = True

        async def read() -> str | None:
            page = await reader.home("me", None, LIMIT)
            ids = [item.post_id for item in page.items]
            if ids != expected[:LIMIT]:
                wrong.append(ids)
            return page.degraded

        async def read_on() -> None:
            while dropping:
                try:
                    outcomes["degraded" if await read() else "from redis"] += 1
                except Exception as error:  # what the test looks for
                    failures.append(repr(error))
                await asyncio.sleep(0)

        async def drop() -> None:
            nonlocal dropping
            try:
                for _ in range(ROUNDS):
                    await admin.client_kill_filter(_type="normal", skipme=True,
                                                   target_nodes=RedisCluster.PRIMARIES)
                    await asyncio.sleep(0.02)
            finally:
                dropping = False

        try:
            await asyncio.gather(drop(), *(read_on() for _ in range(READERS)))
            # A connection the last round dropped fails once more at most: then the reads
            # come from Redis again, by themselves.
            after = [await read() for _ in range(10)]
            return after[after.index(None):] if None in after else after
        finally:
            await client.aclose()
            await admin.aclose()

    after = asyncio.run(run())
    assert failures == [], f"{len(failures)} reads failed: {Counter(failures).most_common(3)}"
    assert not wrong, wrong[:3]
    # The drops reached the reads (some were served from the store).
    assert outcomes["degraded"] > 0 and outcomes["from redis"] > 0, dict(outcomes)
    assert after and set(after) == {None}, (after, dict(outcomes))
