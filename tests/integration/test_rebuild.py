"""The rebuild jobs and the on-call commands on the real stack (CQL store, Redis, the GCS
emulator, Beam's DirectRunner): an archive written from a generated workload, rebuilt into
a fresh keyspace and compared with the independent reference models (notifications
included), then wiped and rebuilt again (exact dumps), a one-user backfill, a resumed
many-user backfill, a notifications dry run, verify before and after injected drift, and
the quality gate stopping a job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from feedline.archive.store import Archive
from feedline.settings import (
    BatchSettings,
    FeedSettings,
    StackSettings,
    get_batch_settings,
)
from feedline.workload import Workload, WorkloadSpec
from jobs.feedctl.main import main as feedctl
from jobs.feedctl.rebuild import rebuild_all
from pipelines.batch import rebuild_notifications, rebuild_timelines
from schemas.event_contracts import encode_event, new_event
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import encode_group
from tests.support.archive import write_archive
from tests.support.compare import mismatches
from tests.support.dump import differences, dump_cql, dump_redis, wipe
from tests.support.isolated import isolated_stores
from tests.support.notification_workload import stored_groups
from tests.support.notifications_reference import reference_notifications
from tests.support.reference import reference_for
from tests.support.stores import read_state

FEED = FeedSettings(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=150, posts=160, mean_followers=10, max_followers=40,
                    likes_per_post=3, comments_per_post=1, post_delete_share=0.05,
                    unfollow_share=0.05, seed=7)
REBUILT_TABLES = ("timelines", "post_counters", "user_counters", "celebrities",
                  "notification_groups")


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


@pytest.fixture(scope="module")
def env(stack: StackSettings) -> Iterator[Env]:
    with isolated_stores(stack, "rb", FEED) as (settings, session, client):
        produced = list(Workload(SPEC).events())
        write_archive(Archive.open(stack.storage, settings.archive_prefix), stack.kafka,
                      produced, part_lines=500)
        yield Env(settings, session, client, RedisKeys(settings.redis.key_prefix),
                  [p.event for p in produced])


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
    notified = reference_notifications(env.events, known_users_only=True)
    assert {g[0] for g in notified.values()} >= {"like", "comment", "follow"}
    groups, twice = stored_groups(env.session)
    assert (groups, twice) == (notified, [])


def _a_recipient(rebuilt: tuple[dict, dict], but: tuple[str, ...] = ()) -> str:
    """The user with the most notification groups, other than ``but``."""
    sizes: dict[str, int] = {}
    for row in rebuilt[0]["notification_groups"]:
        sizes[row[0]] = sizes.get(row[0], 0) + 1
    return next(u for u in sorted(sizes, key=lambda u: (-sizes[u], u)) if u not in but)


def test_notifications_dry_run_reports_and_writes_nothing(
        env: Env, rebuilt: tuple[dict, dict], capfd: pytest.CaptureFixture[str]) -> None:
    user = _a_recipient(rebuilt)
    env.session.execute("DELETE FROM notification_groups WHERE recipient_id = %s", (user,))
    env.redis.hset(env.keys.notification_groups(user), "like:bogus",
                   encode_group("like", "bogus", 1, [], 1))
    damaged = env.dumps()
    assert rebuild_notifications.run([*env.argv(), "--dry-run", "--no-gate"]) == 0
    assert env.dumps() == damaged
    err = capfd.readouterr().err
    assert f"would change notifications of {user}: cql notifications:" in err
    assert rebuild_notifications.run([*env.argv(), "--users", user, "--no-gate"]) == 0
    assert env.dumps() == rebuilt


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
    other_reader = _a_reader(env, rebuilt, 7)
    recipient = _a_recipient(rebuilt, but=(timeline_user, counter_user, other_reader))
    env.session.execute("UPDATE notification_groups SET count = 99 WHERE recipient_id = %s "
                        "AND latest_at = %s AND group_key = %s",
                        next(r[:3] for r in rebuilt[0]["notification_groups"]
                             if r[0] == recipient))
    newest = env.redis.zrevrange(env.keys.timeline(timeline_user), 0, 0)[0]
    env.redis.zrem(env.keys.timeline(timeline_user), newest)
    env.session.execute("UPDATE user_counters SET followers = 999 WHERE user_id = %s",
                        (counter_user,))
    try:
        code = feedctl(["verify", "--no-gate", "--users", f"{timeline_user},{counter_user},"
                        f"{other_reader},{recipient}"])
        out = capsys.readouterr().out
        assert code == 1
        assert f"{timeline_user}  DRIFT  redis timeline: 1 missing (e.g. {newest})" in out
        assert f"{counter_user}  DRIFT  cql user counters" in out
        assert f"{recipient}  DRIFT  cql notifications: 1 different" in out
        assert "4 user(s) checked, 3 with drift" in out
    finally:
        assert rebuild_all([*env.argv(), "--no-gate"]) == 0
    assert env.dumps() == rebuilt


def test_a_failing_quality_gate_stops_the_job(stack: StackSettings) -> None:
    with isolated_stores(stack, "rbgate", FEED) as (settings, session, client):
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
