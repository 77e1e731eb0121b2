"""NotificationWriter on the real CQL store and Redis: the rules' effects of a random
workload leave exactly the engine's groups in CQL and the newest ``cap`` in Redis (a
small cap, so lists fill, overflow and are refilled); an evicted list is rebuilt on the
next write; the effects written twice change nothing; the lookup and `feedctl
notifications` read them back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from feedline.rules.effects import NotificationUpsert
from feedline.rules.notification_book import NotificationEngine
from feedline.settings import get_stack_settings
from feedline.stores.cluster_writes import delete_keys
from feedline.stores.notification_listing import NotificationLookup
from feedline.stores.notification_writer import NotificationWriter
from jobs.feedctl.main import main as feedctl
from schemas.cql_statements import ms_to_dt, prepare
from schemas.redis_push import DATA_FIELD, EVENT_FIELD, NOTIFICATION
from tests.support.notification_workload import (
    NotificationWorkload,
    as_ref,
    cached_groups,
    expected_cache,
    stored_groups,
)
from tests.support.notifications_reference import reference_notifications

CAP = 6


def _events(seed: int) -> list[Any]:
    workload = NotificationWorkload(seed=seed, users=12, posts=70)
    produced = [*workload.follows(120), *workload.activity(), *workload.heavy_recipient(14, 4)]
    return [p.event for p in [*produced, *workload.redelivered()]]


def _engine_effects(events: list[Any]) -> tuple[NotificationEngine, list[list[Any]]]:
    engine = NotificationEngine()
    return engine, [engine.apply(event) for event in events]


@pytest.fixture
def writer(cql_session, redis_keys) -> tuple[NotificationWriter, list]:
    client, keys = redis_keys
    published: list[tuple[str, tuple[str, ...]]] = []
    return NotificationWriter(cql_session, client, keys, cap=CAP,
                              notify=lambda r, g: published.append((r, g))), published


def _assert_stores_match(writer: NotificationWriter, engine: NotificationEngine) -> None:
    expected = {(r, k): as_ref(g) for r, groups in engine.book.groups.items()
                for k, g in groups.items()}
    stored, twice = stored_groups(writer.session)
    assert twice == []
    assert stored == expected
    recipients = {r for r, _ in expected}
    cache = expected_cache(expected, CAP)
    assert cached_groups(writer.redis, writer.keys, recipients) == {
        user: cache.get(user, []) for user in sorted(recipients)}


def test_the_stores_hold_the_engines_groups(writer) -> None:
    notification_writer, published = writer
    events = _events(seed=11)
    engine, effects = _engine_effects(events)
    # The reference agrees with the engine (so the stores are compared with the rules).
    assert {(r, k): as_ref(g) for r, gs in engine.book.groups.items() for k, g in gs.items()} \
        == reference_notifications(events, known_users_only=True)
    assert max(len(gs) for gs in engine.book.groups.values()) > CAP  # lists overflow
    flat = [e for batch in effects for e in batch]
    for start in range(0, len(flat), 37):  # batches cutting across events and recipients
        notification_writer.write(flat[start:start + 37])
    _assert_stores_match(notification_writer, engine)
    assert {r for r, _ in published} == {e.recipient_id for e in flat}

    # Everything again, in order (a restore replays what was written): nothing changes.
    notification_writer.write(flat)
    _assert_stores_match(notification_writer, engine)


def test_an_evicted_list_is_rebuilt_from_cql_on_the_next_write(writer) -> None:
    notification_writer, _ = writer
    events = _events(seed=12)
    engine, effects = _engine_effects(events)
    flat = [e for batch in effects for e in batch]
    half = len(flat) // 2
    notification_writer.write(flat[:half])
    client, keys = notification_writer.redis, notification_writer.keys
    for user in list(engine.book.groups):  # Redis evicts every list
        client.delete(keys.notifications(user), keys.notification_groups(user))
    notification_writer.write(flat[half:])
    # Rebuilt by an upsert (a delete of a list not cached leaves it not cached).
    touched = {e.recipient_id for e in flat[half:] if isinstance(e, NotificationUpsert)}
    assert touched
    expected = {(r, k): as_ref(g) for r, gs in engine.book.groups.items() for k, g in gs.items()}
    cache = expected_cache(expected, CAP)
    cached = cached_groups(client, keys, touched)
    for user in touched:
        assert cached[user] == cache.get(user, []), user


def test_lookup_and_feedctl_read_redis_then_cql(writer, stack, cql_session, monkeypatch,
                                                 capsys) -> None:
    notification_writer, _ = writer
    events = _events(seed=13)
    engine, effects = _engine_effects(events)
    notification_writer.write([e for batch in effects for e in batch])
    user = max(engine.book.groups, key=lambda u: len(engine.book.groups[u]))
    visible = engine.book.visible(user, CAP)
    client, keys = notification_writer.redis, notification_writer.keys
    lookup = NotificationLookup(cql_session, client, keys, cap=CAP)

    cached = lookup.read(user, 4)
    assert cached.source == "redis"
    assert [(i.group_key, i.count, i.actors) for i in cached.items] == [
        (k, g.count, g.actors) for k, g in visible[:4]]
    assert cached.unread_count == len(visible) and all(i.unread for i in cached.items)

    # Mark read through the third group (CQL and Redis, as the API will), then evict.
    marker = visible[2][1].latest_ms
    stmts = prepare(cql_session, ["notification_read_mark"])
    cql_session.execute(stmts["notification_read_mark"], (user, ms_to_dt(marker), marker * 1000))
    client.set(keys.notifications_read(user), marker)
    client.delete(keys.notifications(user))
    from_cql = lookup.read(user, 4)
    assert from_cql.source == "cql"
    assert [i.group_key for i in from_cql.items] == [i.group_key for i in cached.items]
    newer = sum(1 for _, g in visible if g.latest_ms > marker)
    assert from_cql.unread_count == newer
    assert [i.unread for i in from_cql.items] == [g.latest_ms > marker for _, g in visible[:4]]

    # feedctl notifications on the same keyspace and prefix.
    monkeypatch.setenv("FEEDLINE_CQL__KEYSPACE", cql_session.keyspace)
    monkeypatch.setenv("FEEDLINE_REDIS__KEY_PREFIX", keys.prefix)
    get_stack_settings.cache_clear()
    try:
        assert feedctl(["notifications", user, "--limit", "3", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["source"] == "cql" and doc["unread_count"] == newer
        assert [i["group_key"] for i in doc["items"]] == [k for k, _ in visible[:3]]
        assert feedctl(["notifications", user]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"notifications of {user} (from ") and visible[0][1].type in out
        # --sample with no list cached (a Redis restarted empty): a recipient of the store.
        delete_keys(client, keys.kind_pattern("nz"))
        assert feedctl(["notifications", "--sample", "--json"]) == 0
        sampled = json.loads(capsys.readouterr().out)
        assert sampled["source"] == "cql" and sampled["items"]
        assert sampled["user_id"] in engine.book.groups
        assert feedctl(["notifications", "not an id!"]) == 2
        with pytest.raises(SystemExit) as usage:  # argparse: usage line, exit 2
            feedctl(["notifications", user, "--limit", "0"])
        assert usage.value.code == 2
        assert "must be 1..500" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        get_stack_settings.cache_clear()


def test_each_written_effect_is_pushed_to_its_recipients_stream(writer) -> None:
    """Realtime push: every effect written appends its group, as written, to the
    recipient's push stream (what `GET /v1/stream` sends as `event: notification`)."""
    writer, _published = writer
    engine, effects = _engine_effects(_events(seed=5))
    flat = [e for batch in effects for e in batch]
    writer.write(flat)
    pushed: dict[str, list[dict[str, Any]]] = {}
    for recipient in {e.recipient_id for e in flat}:
        entries = writer.redis.xrange(writer.keys.push(recipient))
        assert all(_field(f, EVENT_FIELD) == NOTIFICATION for _id, f in entries)
        pushed[recipient] = [json.loads(_field(f, DATA_FIELD)) for _id, f in entries]
    assert pushed and all(pushed.values()), "a recipient's stream got no event"
    for recipient, events in pushed.items():
        mine = [e for e in flat if e.recipient_id == recipient]
        assert [p["group_key"] for p in events] == [e.group_key for e in mine][-len(events):]
        # The newest event of each group is the group as the stores hold it now.
        last = {p["group_key"]: p for p in events}
        live = engine.book.groups.get(recipient, {})
        for key, payload in last.items():
            if key in live:
                assert payload["count"] == live[key].count
            else:
                assert payload["count"] == 0


def _field(fields: dict[Any, Any], name: str) -> str:
    value = fields.get(name, fields.get(name.encode()))
    return value.decode() if isinstance(value, bytes) else str(value)
