"""The rebuild jobs and the on-call commands on the real stack (CQL store, Redis, the GCS
emulator, Beam's DirectRunner): an archive written from a generated workload, rebuilt into
a fresh keyspace and compared with the independent reference model, then wiped and rebuilt
again (exact dumps), a one-user backfill, a resumed many-user backfill, verify before and
after injected drift, and the quality gate stopping a job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from feedline.archive.store import Archive
from feedline.settings import (
    BatchSettings,
    CqlSettings,
    FeedSettings,
    RedisSettings,
    StackSettings,
    get_batch_settings,
)
from feedline.stores.cql import connect, drop_keyspace, migrate
from feedline.stores.object_store import storage_client
from feedline.workload import Workload, WorkloadSpec
from jobs.feedctl.main import main as feedctl
from jobs.feedctl.rebuild import rebuild_all
from pipelines.batch import rebuild_timelines
from schemas.event_contracts import encode_event, new_event
from schemas.redis_keys import RedisKeys
from tests.support.archive import write_archive
from tests.support.compare import mismatches
from tests.support.dump import differences, dump_cql, dump_redis, wipe
from tests.support.fixtures import unique
from tests.support.reference import reference_for
from tests.support.stores import read_state

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=150, posts=160, mean_followers=10, max_followers=40,
                    likes_per_post=3, comments_per_post=1, post_delete_share=0.05,
                    unfollow_share=0.05, seed=7)
REBUILT_TABLES = ("timelines", "post_counters", "user_counters", "celebrities")


@dataclass
class Env:
    settings: BatchSettings
    session: object
    redis: redis.Redis
    keys: RedisKeys
    events: list

    def dumps(self) -> tuple[dict, dict]:
        return dump_cql(self.session), dump_redis(self.redis, self.keys.prefix)

    def argv(self) -> list[str]:
        return ["--settings-json", self.settings.model_dump_json()]


def _settings(stack: StackSettings, keyspace: str, prefix: str, root: str) -> BatchSettings:
    return BatchSettings(kafka=stack.kafka, cql=CqlSettings(**{**stack.cql.model_dump(),
                                                               "keyspace": keyspace}),
                         redis=RedisSettings(url=stack.redis.url, key_prefix=prefix),
                         storage=stack.storage, feed=FEED, archive_prefix=root)


@contextmanager
def isolated_stores(stack: StackSettings,
                    name: str) -> Iterator[tuple[BatchSettings, Any, redis.Redis]]:
    """Settings on a new keyspace, Redis prefix and archive root, with a CQL session and a
    Redis client on them; everything is removed afterwards."""
    tag = unique(name)
    keyspace, prefix, root = f"ks_{tag}", f"fl{tag}", f"test_{tag}/events"
    migrate(stack.cql, keyspace=keyspace)
    settings = _settings(stack, keyspace, prefix, root)
    cluster, session = connect(settings.cql, keyspace=keyspace)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        yield settings, session, client
    finally:
        cluster.shutdown()
        wipe_prefix(client, prefix)
        client.close()
        drop_keyspace(stack.cql, keyspace)
        bucket = storage_client(stack.storage).bucket(stack.storage.archive_bucket)
        for blob in bucket.list_blobs(prefix=f"test_{tag}/"):
            blob.delete()


@pytest.fixture(scope="module")
def env(stack: StackSettings) -> Iterator[Env]:
    with isolated_stores(stack, "rb") as (settings, session, client):
        produced = list(Workload(SPEC).events())
        write_archive(Archive.open(stack.storage, settings.archive_prefix), stack.kafka,
                      produced, part_lines=500)
        yield Env(settings, session, client, RedisKeys(settings.redis.key_prefix),
                  [p.event for p in produced])


def wipe_prefix(client: redis.Redis, prefix: str) -> None:
    stale = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if stale:
        client.delete(*stale)


@pytest.fixture(scope="module")
def rebuilt(env: Env) -> tuple[dict, dict]:
    """A first full rebuild (every table) into the empty keyspace; its dumps."""
    assert rebuild_timelines.run([*env.argv(), "--all-tables"]) == 0
    assert rebuild_all(env.argv()) == 0
    return env.dumps()


@pytest.fixture
def cli_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """feedctl reads its settings from FEEDLINE_*: point them at the test's stores."""
    s = env.settings
    for name, value in {
        "FEEDLINE_CQL__KEYSPACE": s.cql.keyspace, "FEEDLINE_REDIS__KEY_PREFIX": s.redis.key_prefix,
        "FEEDLINE_ARCHIVE_PREFIX": s.archive_prefix,
        "FEEDLINE_FEED": s.feed.model_dump_json(),
    }.items():
        monkeypatch.setenv(name, value)
    get_batch_settings.cache_clear()
    yield
    get_batch_settings.cache_clear()


def test_rebuild_equals_the_reference_model(env: Env, rebuilt: tuple[dict, dict]) -> None:
    expected = reference_for(env.events, FEED)
    assert expected.celebrities and expected.deleted_posts and expected.post_counters
    assert any(len(t) > FEED.timeline_cap for t in expected.timelines.values())
    stored = read_state(env.session, env.redis, env.keys)
    assert mismatches(stored, expected, FEED.timeline_cap) == []


def test_wipe_then_rebuild_all_gives_the_same_stores(env: Env, rebuilt: tuple[dict, dict]
                                                      ) -> None:
    cql_before, redis_before = rebuilt
    wipe(env.session, env.redis, env.keys.prefix, REBUILT_TABLES)
    assert dump_cql(env.session, REBUILT_TABLES) != {t: cql_before[t] for t in REBUILT_TABLES}
    assert rebuild_all(env.argv()) == 0
    cql_after, redis_after = env.dumps()
    assert differences(cql_before, cql_after) == []
    assert differences(redis_before, redis_after) == []
    # Running it again over intact stores changes nothing either.
    assert rebuild_all([*env.argv(), "--no-gate"]) == 0
    assert env.dumps() == (cql_before, redis_before)


def _a_reader(env: Env, dumps: tuple[dict, dict], rank: int = 0) -> str:
    """A user with a full cached timeline (so a change shows in both stores)."""
    sizes: dict[str, int] = {}
    for row in dumps[0]["timelines"]:
        sizes[row[0]] = sizes.get(row[0], 0) + 1
    return sorted(sizes, key=lambda u: (-sizes[u], u))[rank]


def _corrupt(env: Env, user: str) -> None:
    env.session.execute("DELETE FROM timelines WHERE user_id = %s", (user,))
    env.redis.zadd(env.keys.timeline(user), {"bogus_post": 1})
    env.redis.delete(env.keys.followed_celebrities(user))


def test_dry_run_reports_and_writes_nothing(env: Env, rebuilt: tuple[dict, dict],
                                            capfd: pytest.CaptureFixture[str]) -> None:
    user = _a_reader(env, rebuilt, 1)
    _corrupt(env, user)
    damaged = env.dumps()
    assert rebuild_timelines.run([*env.argv(), "--dry-run", "--no-gate"]) == 0
    assert env.dumps() == damaged
    assert f"would change {user}" in capfd.readouterr().err
    assert rebuild_timelines.run([*env.argv(), "--users", user, "--no-gate"]) == 0
    assert env.dumps() == rebuilt


def test_backfill_one_user(env: Env, rebuilt: tuple[dict, dict], cli_env: None) -> None:
    user = _a_reader(env, rebuilt, 2)
    _corrupt(env, user)
    assert env.dumps() != rebuilt
    assert feedctl(["backfill", "--user", user, "--dry-run", "--no-gate"]) == 0
    assert env.dumps() != rebuilt
    assert feedctl(["backfill", "--user", user]) == 0
    assert differences(env.dumps()[0], rebuilt[0]) == []
    assert env.dumps() == rebuilt


def test_backfill_many_resumes_from_its_checkpoint(env: Env, rebuilt: tuple[dict, dict],
                                                   cli_env: None, tmp_path: Path) -> None:
    done_before, pending = _a_reader(env, rebuilt, 3), _a_reader(env, rebuilt, 4)
    _corrupt(env, done_before)
    _corrupt(env, pending)
    users = tmp_path / "users.txt"
    users.write_text(f"# two users\n{done_before}\n{pending}\n")
    checkpoint = tmp_path / "backfill.done"
    checkpoint.write_text(f"{done_before}\n")  # as an interrupted run would have left it
    base = ["backfill", "--users-file", str(users), "--checkpoint", str(checkpoint),
            "--rate", "50"]
    assert feedctl(base) == 0
    assert not checkpoint.exists()  # a completed run removes its checkpoint
    cql, _ = env.dumps()
    assert {r for r in cql["timelines"] if r[0] == pending} == \
        {r for r in rebuilt[0]["timelines"] if r[0] == pending}
    assert not any(r[0] == done_before for r in cql["timelines"])  # skipped: "done" before
    assert feedctl(base) == 0
    assert env.dumps() == rebuilt


def test_verify_reports_drift_it_did_not_have(env: Env, rebuilt: tuple[dict, dict],
                                              cli_env: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert feedctl(["verify", "--sample", "40", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "40 user(s) checked, 0 with drift" in out
    timeline_user, counter_user = _a_reader(env, rebuilt, 5), _a_reader(env, rebuilt, 6)
    newest = env.redis.zrevrange(env.keys.timeline(timeline_user), 0, 0)[0]
    env.redis.zrem(env.keys.timeline(timeline_user), newest)
    env.session.execute("UPDATE user_counters SET followers = 999 WHERE user_id = %s",
                        (counter_user,))
    try:
        code = feedctl(["verify", "--no-gate", "--users", f"{timeline_user},{counter_user},"
                        f"{_a_reader(env, rebuilt, 7)}"])
        out = capsys.readouterr().out
        assert code == 1
        assert f"{timeline_user}  DRIFT  redis timeline: 1 missing (e.g. {newest})" in out
        assert f"{counter_user}  DRIFT  cql user counters" in out
        assert "3 user(s) checked, 2 with drift" in out
    finally:
        assert rebuild_all([*env.argv(), "--no-gate"]) == 0
    assert env.dumps() == rebuilt


def test_a_failing_quality_gate_stops_the_job(stack: StackSettings) -> None:
    with isolated_stores(stack, "rbgate") as (settings, session, client):
        produced = list(Workload(WorkloadSpec(users=30, posts=20, mean_followers=5,
                                              max_followers=10, seed=3)).events())
        bad = json.loads(encode_event(new_event("follow", follower_id="a", followee_id="b")))
        del bad["follower_id"]
        write_archive(Archive.open(stack.storage, settings.archive_prefix), stack.kafka,
                      produced, extra=[("follows", json.dumps(bad).encode())])
        argv = ["--settings-json", settings.model_dump_json()]
        assert rebuild_all(argv) == 1
        assert session.execute("SELECT count(*) FROM timelines").one()[0] == 0
        assert not list(client.scan_iter(match=f"{settings.redis.key_prefix}:*"))
        assert rebuild_all([*argv, "--quarantine"]) == 0
        assert session.execute("SELECT count(*) FROM timelines").one()[0] > 0
