"""The local Redis Cluster's configuration (``jobs.localstack.redis_cluster``), no server."""

from __future__ import annotations

import itertools
from pathlib import Path

from feedline.settings import LocalStackSettings, StackSettings
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
