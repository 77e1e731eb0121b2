"""The local Redis Cluster's configuration (``jobs.localstack.redis_cluster``), no server."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from feedline.settings import LocalStackSettings, RedisSettings, StackSettings
from jobs.localstack import stack
from jobs.localstack.redis_cluster import (
    MASTERS,
    SLOTS,
    cluster_urls,
    redis_cluster_services,
    slot_ranges,
)


def test_the_slot_ranges_cover_every_slot_once() -> None:
    for masters in (1, 2, 3, 5):
        ranges = slot_ranges(masters)
        assert ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    assert slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]


def test_three_masters_in_cluster_mode_on_consecutive_ports(tmp_path: Path) -> None:
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path,
                                                      redis_cluster_port=7201))
    masters = redis_cluster_services(settings)
    assert [m.name for m in masters] == ["redis-cluster-1", "redis-cluster-2",
                                         "redis-cluster-3"]
    assert len(masters) == MASTERS and len({m.home for m in masters}) == MASTERS
    for port, master in enumerate(masters, start=7201):
        master.home.mkdir(parents=True)
        master.prepare()
        conf = (master.home / "redis.conf").read_text().splitlines()
        assert f"port {port}" in conf and "cluster-enabled yes" in conf
        assert "cluster-config-file nodes.conf" in conf
        assert "maxmemory-policy allkeys-lru" in conf  # a cache, like the single Redis
        assert master.marker() == f":{port}"
    # The cache's credentials, database 0; the first master is what redis.url names.
    assert cluster_urls(settings)[2].endswith("@127.0.0.1:7203/0")


def test_local_up_does_not_start_the_cluster(tmp_path: Path) -> None:
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path))
    assert not any(s.name.startswith("redis-cluster") for s in stack.services(settings))


def _names(settings: StackSettings, every: bool = False) -> list[str]:
    return [s.name for s in stack.services(settings, every=every)
            if s.name.startswith("redis") and s.name != "redis-exporter"]


def test_the_cluster_is_started_beside_or_instead_of_the_single_cache(tmp_path: Path) -> None:
    local = LocalStackSettings(state_dir=tmp_path, redis_cluster_port=7201)
    cluster = ["redis-cluster-1", "redis-cluster-2", "redis-cluster-3"]
    assert _names(StackSettings(local=local)) == ["redis", "redis-guards"]
    # local.redis_cluster (the tests' stack): beside the single cache Redis.
    beside = local.model_copy(update={"redis_cluster": True})
    assert _names(StackSettings(local=beside)) == ["redis", *cluster, "redis-guards"]
    # redis.cluster: the cluster is the cache; no single cache Redis is started.
    as_cache = StackSettings(local=local, redis=RedisSettings(
        url="redis://u:pw@127.0.0.1:7202/0", cluster=True))
    assert _names(as_cache) == [*cluster, "redis-guards"]
    assert stack.check_cluster_url(as_cache) is None
    # `down` stops both kinds, whichever an earlier `up` started.
    assert _names(as_cache, every=True) == _names(StackSettings(local=local), every=True) == [
        "redis", *cluster, "redis-guards"]


def test_a_cluster_cache_url_must_name_a_local_master(tmp_path: Path) -> None:
    local = LocalStackSettings(state_dir=tmp_path, redis_cluster_port=7201)
    for url in ("redis://u:secret@127.0.0.1:6379/0", "redis://u:secret@127.0.0.1:7204/0",
                "redis://u:secret@10.0.0.5:7201/0"):
        problem = stack.check_cluster_url(StackSettings(
            local=local, redis=RedisSettings(url=url, cluster=True)))
        assert problem is not None and "FEEDLINE_REDIS__URL" in problem
        assert "7201, 7202 or 7203" in problem and "secret" not in problem
    # Without redis.cluster any URL goes (the single cache Redis listens on it).
    assert stack.check_cluster_url(StackSettings(local=local)) is None
    with pytest.raises(stack.StackError, match="names no master of the local Redis Cluster"):
        stack.up(StackSettings(local=local, redis=RedisSettings(
            url="redis://127.0.0.1:6379/0", cluster=True)), say=lambda _line: None)
    assert not any(tmp_path.iterdir())  # refused before anything was written or started
