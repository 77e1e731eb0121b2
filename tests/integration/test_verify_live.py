"""A live verify on the real stack (Kafka, the CQL store, Redis, the GCS emulator): the
stores hold every event of a workload (as the streaming jobs would), the archive only its
first part, and the rest sits in Kafka past every consumer's commit — the state of a stack
taking events while it is verified. Plain verify calls the users the tail changed drifted;
a live verify skips them (all the users the independent reference models say the tail
changed, checked here) and finds real drift in the others."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient

from feedline.archive.store import Archive
from feedline.settings import BatchSettings, FeedSettings, StackSettings, get_batch_settings
from feedline.workload import Workload, WorkloadSpec
from jobs.feedctl.main import main as feedctl
from jobs.feedctl.rebuild import rebuild_all
from jobs.load import produce
from jobs.localstack.kafka import ensure_topics
from jobs.verifying import check
from schemas.redis_keys import RedisKeys
from tests.support.archive import write_archive
from tests.support.fixtures import unique
from tests.support.isolated import isolated_stores
from tests.support.notifications_reference import reference_notifications
from tests.support.reference import reference_for

FEED = FeedSettings(celebrity_threshold=12, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=150, posts=160, mean_followers=6, max_followers=20, likes_per_post=2,
                    comments_per_post=1, post_delete_share=0.05, unfollow_share=0.05,
                    seed=23)
#: The share of the workload's events that reached the archive.
ARCHIVED = 0.97


def per_user(events: list[Any]) -> dict[str, tuple[Any, ...]]:
    """Each user's expected timeline, followed celebrities, counters and notifications."""
    expected = reference_for(events, FEED)
    groups: dict[str, dict[str, Any]] = {}
    for (recipient, key), group in reference_notifications(events,
                                                           known_users_only=True).items():
        groups.setdefault(recipient, {})[key] = group
    users = (set(expected.timelines) | set(expected.followed_celebrities)
             | set(expected.user_counters) | set(groups))
    return {u: (expected.timelines.get(u, {}), expected.followed_celebrities.get(u, set()),
                expected.user_counters.get(u, {}), groups.get(u, {})) for u in users}


@pytest.fixture(scope="module")
def live(stack: StackSettings) -> Iterator[tuple[BatchSettings, Any, Any, list[str], set[str]]]:
    """Stores from every event, an archive of the first 97 %, the rest in the topics.

    Yields the settings, a CQL session, a Redis client, every user, and the users the
    reference models say the unarchived events changed.
    """
    names = {role: unique(f"vl{role[:2]}") for role in ("uploads", "follows", "engagements")}
    kafka = stack.kafka.model_copy(update={f"{role}_topic": name for role, name in names.items()})
    ensure_topics(stack.kafka.bootstrap_servers, {name: 1 for name in names.values()})
    produced = list(Workload(SPEC).events())
    cut = int(len(produced) * ARCHIVED)
    with isolated_stores(stack, "vl", FEED, kafka) as (settings, session, client):
        # What the jobs applied: every event (rebuilt from a second archive root).
        everything = settings.model_copy(update={"archive_prefix":
                                                 settings.archive_prefix + "-all"})
        write_archive(Archive.open(stack.storage, everything.archive_prefix), kafka, produced,
                      part_lines=500)
        assert rebuild_all(["--settings-json", everything.model_dump_json()]) == 0
        # What the archiver wrote: the first part; the rest is still in Kafka.
        write_archive(Archive.open(stack.storage, settings.archive_prefix), kafka,
                      produced[:cut], part_lines=500)
        assert produce(kafka, produced[cut:]) == len(produced) - cut
        before = per_user([p.event for p in produced[:cut]])
        after = per_user([p.event for p in produced])
        changed = {u for u in set(before) | set(after) if before.get(u) != after.get(u)}
        users = sorted(set(before) | set(after))
        try:
            yield settings, session, client, users, changed
        finally:
            admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
            try:
                admin.delete_topics(list(names.values()))
            finally:
                admin.close()


def test_plain_verify_calls_the_tail_drift_and_live_verify_skips_exactly_enough(
        live: tuple[BatchSettings, Any, Any, list[str], set[str]]) -> None:
    settings, _session, _client, users, changed = live
    assert len(changed) >= 5 and len(users) - len(changed) >= 20, "a workload worth checking"
    plain = check(settings, users=users, gate=False, progress=lambda _m: None)
    assert plain.drifted, "the stores are ahead of the archive: plain verify sees drift"
    assert set(plain.drifted) <= changed
    report = check(settings, users=users, live=True, progress=lambda _m: None)
    assert report.gate == "passed"
    assert report.drifted == []
    assert changed <= set(report.skipped), "every user the tail changed is skipped"
    assert report.checked == len(users) - len(report.skipped) >= 20
    produced = sum(1 for _ in Workload(SPEC).events())
    assert report.tail_records == produced - int(produced * ARCHIVED)


def test_live_verify_still_finds_drift_in_users_the_tail_did_not_change(
        live: tuple[BatchSettings, Any, Any, list[str], set[str]],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings, session, client, users, changed = live
    report = check(settings, users=users, live=True, gate=False, progress=lambda _m: None)
    quiet = [row for row in report.users if row.timeline_entries > 0]
    victim = quiet[0].user
    assert victim not in changed
    keys = RedisKeys(settings.redis.key_prefix)
    row = session.execute("SELECT created_at, post_id FROM timelines WHERE user_id = %s "
                          "LIMIT 1", (victim,)).one()
    session.execute("DELETE FROM timelines WHERE user_id = %s AND created_at = %s "
                    "AND post_id = %s", (victim, row.created_at, row.post_id))
    client.zrem(keys.timeline(victim), row.post_id)
    try:
        for name, value in {"FEEDLINE_KAFKA": settings.kafka.model_dump_json(),
                            "FEEDLINE_CQL__KEYSPACE": settings.cql.keyspace,
                            "FEEDLINE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
                            "FEEDLINE_ARCHIVE_PREFIX": settings.archive_prefix,
                            "FEEDLINE_FEED": settings.feed.model_dump_json()}.items():
            monkeypatch.setenv(name, value)
        get_batch_settings.cache_clear()
        other = quiet[1].user
        skipped = sorted(changed)[0]
        code = feedctl(["verify", "--live", "--no-gate", "--json", "--users",
                        f"{victim},{other},{skipped}"])
        document = json.loads(capsys.readouterr().out)
        assert code == 1
        assert (document["checked"], document["drifted"], document["skipped"]) == (
            2, 1, [skipped])
        drifted = {u["user"]: u["problems"] for u in document["users"] if u["drift"]}
        assert list(drifted) == [victim]
        assert any(f"missing (e.g. {row.post_id})" in p for p in drifted[victim])
        assert feedctl(["verify", "--live", "--until", "2026-01-01T00:00:00Z", "--users",
                        victim]) == 2
    finally:  # the module's stores are dropped after this last test
        get_batch_settings.cache_clear()
