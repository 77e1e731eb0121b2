from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import yaml

from feedline.settings import LocalStackSettings, StackSettings
from feedline.stores.cql import added_field, load_migrations
from jobs.localstack.api import ApiService
from jobs.localstack.flink import (
    _set,
    flink_home,
    install_cluster_lib,
    thread_mode,
    write_flink_conf,
)
from jobs.localstack.redis_server import RedisGuardsService, RedisService
from pipelines.streaming.topic_counts import INVALID_KEY, key_of


def test_nested_set_replaces_flat_and_nested_spellings() -> None:
    tree = {"rest.port": 1, "rest": {"address": "x"}}
    _set(tree, "rest.port", 8081)
    assert tree == {"rest": {"address": "x", "port": 8081}}


def test_generated_flink_conf_binds_loopback_and_sizes_memory(tmp_path: Path) -> None:
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path))
    conf = yaml.safe_load((write_flink_conf(settings) / "config.yaml").read_text())
    assert conf["rest"]["bind-address"] == "127.0.0.1"
    assert conf["jobmanager"]["bind-host"] == "127.0.0.1"
    assert conf["taskmanager"]["memory"]["process"]["size"] == "2048m"
    assert conf["taskmanager"]["memory"]["jvm-metaspace"]["size"] == "512m"
    assert conf["taskmanager"]["memory"]["task"]["off-heap"]["size"] == "256m"
    assert conf["taskmanager"]["numberOfTaskSlots"] == settings.flink.task_slots
    assert conf["execution"]["checkpointing"]["dir"].startswith(f"file://{tmp_path}")
    # Progress read through REST is at most half a second old (the default cache: 10 s).
    assert conf["metrics"]["fetcher"]["update-interval"] == "500"


def test_a_client_never_reads_a_half_written_flink_conf(tmp_path: Path) -> None:
    """Clients started side by side (``Sandbox.deploy_all``) each rewrite the configuration
    while the others' launchers read it: a reader sees the whole file, always."""
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path))
    conf = write_flink_conf(settings) / "config.yaml"
    whole = conf.read_text()
    done = threading.Event()

    def rewrite() -> None:
        for _ in range(40):
            write_flink_conf(settings)
        done.set()

    writers = [threading.Thread(target=rewrite) for _ in range(3)]
    for writer in writers:
        writer.start()
    read = []
    while not done.is_set():
        read.append(conf.read_text())
    for writer in writers:
        writer.join()
    assert read and all(text == whole for text in read)
    assert sorted(p.name for p in conf.parent.iterdir()) == sorted(
        ["config.yaml", "log4j-console.properties", "log4j-cli.properties", "log4j.properties"])


def test_thread_mode_puts_flink_python_on_the_cluster_class_path(tmp_path: Path) -> None:
    process = StackSettings(local=LocalStackSettings(state_dir=tmp_path / "p"))
    conf = yaml.safe_load((write_flink_conf(process) / "config.yaml").read_text())
    assert not thread_mode(process)
    assert "parent-first-patterns" not in conf.get("classloader", {})
    threaded = StackSettings.model_validate(
        {"local": {"state_dir": tmp_path / "t"}, "flink": {"python_execution_mode": "thread"}})
    conf = yaml.safe_load((write_flink_conf(threaded) / "config.yaml").read_text())
    assert thread_mode(threaded)
    assert conf["classloader"]["parent-first-patterns"]["additional"] == "pemja."
    folder = install_cluster_lib(threaded)
    (folder / "stale.jar").symlink_to(tmp_path / "gone.jar")
    install_cluster_lib(threaded)  # again: idempotent, and a stale link goes
    names = sorted(link.name for link in folder.iterdir())
    lib = sorted(jar.name for jar in (flink_home() / "lib").glob("*.jar"))
    assert [n for n in names if not n.startswith("flink-python-")] == lib
    assert len([n for n in names if n.startswith("flink-python-")]) == 1
    assert all((folder / n).resolve().is_file() for n in names)


def test_migrations_are_ordered_and_statements_idempotent() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for m in migrations:
        for stmt in m.statements():
            if added_field(stmt) is not None:
                continue  # the runner skips a field the type has (ScyllaDB: no IF NOT EXISTS)
            guard = "IF EXISTS" if stmt.upper().startswith("DROP ") else "IF NOT EXISTS"
            assert guard in stmt.upper(), stmt[:60]
            assert not re.search(r"\bcounter\b", stmt, re.I), "bigint, never CQL counters"


def test_topic_counts_key_of() -> None:
    assert key_of('{"post_id": "p1"}', "post_id") == "p1"
    assert key_of('{"post_id": 5}', "post_id") == INVALID_KEY
    assert key_of("[1]", "post_id") == INVALID_KEY
    assert key_of("nope", "post_id") == INVALID_KEY


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    from jobs.localstack.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(5000)]  # about 78 would start with '-' unguarded
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)


def test_guards_redis_never_evicts_and_the_api_is_given_it(tmp_path: Path) -> None:
    settings = StackSettings(local=LocalStackSettings(state_dir=tmp_path, redis_guards_port=6391))
    cache, guards = RedisService(settings), RedisGuardsService(settings)
    for svc in (cache, guards):
        svc.home.mkdir(parents=True)
        svc.prepare()
    cache_conf = (cache.home / "redis.conf").read_text().splitlines()
    guards_conf = (guards.home / "redis.conf").read_text().splitlines()
    assert "maxmemory-policy allkeys-lru" in cache_conf
    assert "maxmemory-policy noeviction" in guards_conf
    assert "port 6391" in guards_conf and "maxmemory 128mb" in guards_conf
    assert guards.home != cache.home and guards.marker() != cache.marker()

    _, env = ApiService(settings).command()
    # The guards server has the cache's ACL user (the URL's credentials), on its own port.
    assert json.loads(env["FEEDLINE_REDIS"])["guards_url"] == (
        "redis://feedline:feedline-development-redis-password@127.0.0.1:6391/0")
    assert json.loads(env["FEEDLINE_REDIS"])["url"] == settings.redis.url
    configured = settings.model_copy(update={"redis": settings.redis.model_copy(
        update={"guards_url": "redis://elsewhere:7000/2"})})
    _, env = ApiService(configured).command()
    assert json.loads(env["FEEDLINE_REDIS"])["guards_url"] == "redis://elsewhere:7000/2"
