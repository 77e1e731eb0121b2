"""A local Redis Cluster from the Debian redis-server: three masters, no replicas.

``local up`` starts it as the cache when ``redis.cluster`` is set (``redis.url`` naming one
of its masters), and beside the single cache Redis when ``local.redis_cluster`` is (the
tests' stack: the cluster tests and the API e2e's cluster variant use it). Each master is
a ``RedisService`` with ``cluster-enabled yes`` on ``local.redis_cluster_port`` + 0, 1, 2
(and the cluster bus on each port + 10000), with the cache's credentials and eviction.
Once the last master is healthy, ``form_cluster`` gives each master a third of the 16384
slots (``CLUSTER ADDSLOTSRANGE``) and introduces them (``CLUSTER MEET``); it is idempotent,
and masters restarted later rejoin from their ``nodes.conf``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import redis

from feedline.settings import StackSettings, redact_url
from jobs.localstack.redis_server import RedisService

#: Hash slots of a Redis Cluster.
SLOTS = 16384
#: Masters of the local cluster.
MASTERS = 3


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Contiguous, near-equal slot ranges (first, last), one per master, covering all."""
    bounds = [round(i * SLOTS / masters) for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def cluster_urls(settings: StackSettings) -> list[str]:
    """The masters' URLs: the cache's credentials, the cluster's ports, database 0."""
    auth = urlsplit(settings.redis.url).netloc.rpartition("@")[0]
    first = settings.local.redis_cluster_port
    return [f"redis://{auth + '@' if auth else ''}127.0.0.1:{first + i}/0"
            for i in range(MASTERS)]


class RedisClusterMaster(RedisService):
    """One master of the local Redis Cluster."""

    def __init__(self, settings: StackSettings, index: int) -> None:
        self.index = index
        self.name = f"redis-cluster-{index + 1}"
        super().__init__(settings)

    def url(self) -> str:
        """The URL of this master."""
        return cluster_urls(self.settings)[self.index]

    def config_lines(self) -> list[str]:
        """The cache's redis.conf, in cluster mode."""
        return [*super().config_lines(), "cluster-enabled yes",
                "cluster-config-file nodes.conf", "cluster-node-timeout 5000"]

    def after_healthy(self) -> None:
        """The last master forms the cluster (the others were started and waited for first)."""
        if self.index == MASTERS - 1:
            form_cluster(cluster_urls(self.settings))


def cluster_runs(settings: StackSettings) -> bool:
    """Whether the stack runs the local cluster (as the cache, or beside the single one)."""
    return settings.redis.cluster or settings.local.redis_cluster


def check_cluster_url(settings: StackSettings) -> str | None:
    """Why ``redis.url`` cannot be the local cluster's (None: it can, or no cluster cache).

    With ``redis.cluster`` the stack starts no single cache Redis: the URL every process
    reads must name one of the masters it starts.
    """
    if not settings.redis.cluster:
        return None
    parts = urlsplit(settings.redis.url)
    first = settings.local.redis_cluster_port
    if parts.hostname in ("127.0.0.1", "localhost") and \
            first <= (parts.port or 6379) < first + MASTERS:
        return None
    return (f"redis.cluster is set but FEEDLINE_REDIS__URL ({redact_url(settings.redis.url)})"
            f" names no master of the local Redis Cluster: use port {first}, {first + 1} or "
            f"{first + 2} of 127.0.0.1 (local.redis_cluster_port), e.g. "
            f"{redact_url(cluster_urls(settings)[0])}")


def redis_cluster_services(settings: StackSettings) -> list[RedisService]:
    """The three masters, in start order."""
    return [RedisClusterMaster(settings, i) for i in range(MASTERS)]


def _info(client: redis.Redis) -> dict[str, str]:
    text = client.execute_command("CLUSTER INFO")
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    if isinstance(text, bytes):
        text = text.decode()
    return dict(line.split(":", 1) for line in str(text).split() if ":" in line)


def _owns_slots(client: redis.Redis) -> bool:
    nodes = client.execute_command("CLUSTER NODES")
    if isinstance(nodes, bytes):
        nodes = nodes.decode()
    if isinstance(nodes, dict):  # redis-py parses it: {address: {flags, slots, ...}}
        return any("myself" in str(n.get("flags", "")) and n.get("slots")
                   for n in nodes.values())
    for line in str(nodes).splitlines():
        fields = line.split()
        if len(fields) > 2 and "myself" in fields[2]:
            return len(fields) > 8
    return False


def formed(urls: Sequence[str]) -> bool:
    """Every master sees a healthy cluster of all of them."""
    for url in urls:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            info = _info(client)
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) \
                    != len(urls):
                return False
    return True


def form_cluster(urls: Sequence[str], timeout_s: float = 120.0) -> None:
    """Give each master its slot range and introduce them; no-op once formed."""
    if formed(urls):
        return
    ranges = slot_ranges(len(urls))
    first = urlsplit(urls[0])
    with redis.Redis.from_url(urls[0], socket_timeout=2) as seed:
        for url, (low, high) in zip(urls, ranges, strict=True):
            with redis.Redis.from_url(url, socket_timeout=2) as client:
                if not _owns_slots(client):
                    client.execute_command("CLUSTER ADDSLOTSRANGE", low, high)
            parts = urlsplit(url)
            if parts.port != first.port:
                seed.execute_command("CLUSTER MEET", parts.hostname or "127.0.0.1",
                                     parts.port or 6379)
    deadline = time.monotonic() + timeout_s
    while not formed(urls):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Redis Cluster at {len(urls)} masters did not form "
                               f"within {timeout_s:.0f}s")
        time.sleep(0.2)
