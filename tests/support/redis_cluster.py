"""Fixtures of the Redis Cluster tests: a 3-master cluster and a single Redis, no stack.

``servers`` starts the cluster of ``jobs.localstack.redis_cluster`` on
``local.redis_cluster_port`` (``FEEDLINE_LOCAL__REDIS_CLUSTER_PORT``; a cluster already
formed there is used as it is) and a single Redis on the port after its three, from the
Debian redis-server, and stops what it started. ``prefix`` is a unique key prefix whose
keys go from both servers after the test.
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
from jobs.localstack.redis_cluster import MASTERS, cluster_urls, formed, redis_cluster_services
from jobs.localstack.redis_server import RedisService
from jobs.localstack.stack import wait_healthy


def _wait(service: RedisService, settings: StackSettings) -> None:
    wait_healthy(service, settings.local.start_timeout_s, lambda _line: None, time.monotonic())


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(cluster URL, single Redis URL): started here unless the cluster runs already."""
    base = StackSettings()
    state = Path(tmp_path_factory.mktemp("rc-state"))
    port = base.local.redis_cluster_port
    settings = base.model_copy(update={"local": base.local.model_copy(
        update={"state_dir": state})})
    started: list[RedisService] = []
    try:
        urls = cluster_urls(settings)
        try:
            running = formed(urls)
        except redis.RedisError:
            running = False
        if not running:
            masters = redis_cluster_services(settings)
            for master in masters:
                master.start()
                started.append(master)
            for master in masters:
                _wait(master, settings)
                master.after_healthy()
        single = RedisService(settings.model_copy(update={"redis": settings.redis.model_copy(
            update={"url": f"redis://127.0.0.1:{port + MASTERS}/0"})}))
        single.start()
        started.append(single)
        _wait(single, settings)
        yield urls[0], single.url()
    finally:
        for service in reversed(started):
            service.process.stop()


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
