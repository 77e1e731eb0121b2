"""Fixtures of the Redis Cluster tests: the stack's 3-master cluster and a single Redis.

``servers`` gives the local stack's Redis Cluster (``jobs.localstack.redis_cluster``, on
``local.redis_cluster_port``; the ``stack`` fixture starts it) and starts a single Redis of
its own on the port after its three, from the Debian redis-server, stopped afterwards.
``prefix`` is a unique key prefix whose keys go from both servers after the test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster

from feedline.settings import StackSettings
from jobs.localstack.redis_cluster import MASTERS, cluster_urls, formed
from jobs.localstack.redis_server import RedisService
from jobs.localstack.stack import wait_healthy


@pytest.fixture(scope="module")
def servers(stack: StackSettings,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(cluster URL, single Redis URL): the stack's Redis Cluster, a single Redis of its own."""
    urls = cluster_urls(stack)
    assert formed(urls), "the stack's Redis Cluster is not formed"
    state = Path(tmp_path_factory.mktemp("rc-state"))
    settings = stack.model_copy(update={"local": stack.local.model_copy(
        update={"state_dir": state})})
    port = stack.local.redis_cluster_port + MASTERS
    single = RedisService(settings.model_copy(update={"redis": settings.redis.model_copy(
        update={"url": f"redis://127.0.0.1:{port}/0"})}))
    single.start()
    try:
        wait_healthy(single, settings.local.start_timeout_s, lambda _line: None,
                     time.monotonic())
        yield urls[0], single.url()
    finally:
        single.process.stop()


@pytest.fixture
def prefix(servers: tuple[str, str]) -> Iterator[str]:
    """A unique key prefix; its keys go from both servers after the test."""
    name = f"flrc_{uuid.uuid4().hex[:10]}"
    yield name
    cluster_url, single_url = servers
    with redis.Redis.from_url(single_url) as single:
        stale = list(single.scan_iter(match=f"{name}*", count=1000))
        if stale:
            single.delete(*stale)
    cluster = redis.cluster.RedisCluster.from_url(cluster_url)
    try:
        for key in list(cluster.scan_iter(match=f"{name}*", count=1000)):
            cluster.delete(key)
    finally:
        cluster.close()
