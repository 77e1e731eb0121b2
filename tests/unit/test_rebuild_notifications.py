"""The notifications rebuild's pure parts: the two-hop derivation per rules key, the job's
own derive transform over ``beam.Create`` against the independent reference, the
recipients a rebuild replaces, and drift descriptions."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from feedline.rebuild.drift import notification_problems
from feedline.rebuild.notifications import derive_notifications
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job
from feedline.rules.notification_book import NotificationEngine
from feedline.rules.notifications import Group
from pipelines.batch.options import RebuildOptions
from pipelines.batch.rebuild_notifications import DeriveNotifications, recipient_shard
from pipelines.batch.transforms import (
    GroupByKeyShard,
    notification_route,
    route_records,
    shard_of,
)
from schemas.event_contracts import encode_event, new_event
from tests.support.notification_workload import NotificationWorkload, as_ref
from tests.support.notifications_reference import reference_notifications

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://feedline-media/m1"}]


def _produced(seed: int) -> list:
    workload = NotificationWorkload(seed=seed, users=30, posts=90)
    return [*workload.follows(250), *workload.activity(), *workload.redelivered()]


def _flat(groups: dict[str, dict[str, Group]]) -> dict[tuple[str, str], tuple]:
    return {(user, key): as_ref(g) for user, owned in groups.items() for key, g in owned.items()}


def test_two_hops_equal_the_reference_in_any_order() -> None:
    events = [p.event for p in _produced(5)]
    expected = reference_notifications(events, known_users_only=True)
    # The workload must exercise every rule, ghosts included, or equality proves little.
    assert {g[0] for g in expected.values()} == {"like", "comment", "follow", "mention"}
    assert any("ghost" in u for u, _ in reference_notifications(events).keys() - expected.keys())
    random.Random(3).shuffle(events)
    image = derive_notifications(events)
    assert _flat(image.groups) == expected
    # The recipients a rebuild replaces include the mentioned ghosts (nothing to write).
    assert any("ghost" in u for u in image.recipients - set(image.groups))


def test_two_hops_equal_the_in_process_engine() -> None:
    """The same rules as the streaming job's keys, run event by event in time order."""
    events = sorted((p.event for p in _produced(8)), key=lambda e: (e.event_time_ms, e.event_id))
    engine = NotificationEngine()
    for event in events:
        engine.apply(event)
    assert derive_notifications(events).groups == engine.book.groups


def test_named_users_keep_only_theirs() -> None:
    events = [p.event for p in _produced(5)]
    whole = derive_notifications(events)
    named = [*sorted(whole.groups)[:3], "nobody"]
    some = derive_notifications(events, users=named)
    assert some.groups == {u: whole.groups[u] for u in named if u in whole.groups}
    assert some.recipients == set(named)


def _archive_parts(produced: list) -> list:
    """The workload as archive parts read: (role, object name, lines), 300 events a part."""
    parts = [(p.role, encode_event(p.event)) for p in produced]
    chunks = [parts[i:i + 300] for i in range(0, len(parts), 300)]
    return [(role, f"part-{n}-{role}", [line for r, line in chunk if r == role])
            for n, chunk in enumerate(chunks) for role in ("uploads", "follows", "engagements")]


def _groups_out(derived) -> list:
    return [((user, key), as_ref(g)) for user, owned in derived.groups.items()
            for key, g in owned.items()]


def test_derive_transform_equals_the_reference() -> None:
    """The job's own transforms over beam.Create (route by npost / recipient key shard,
    post rules per key, regroup by recipient shard, the gate per recipient): every
    recipient comes out of exactly its own shard, and the groups equal the reference."""
    produced = _produced(13)
    expected = reference_notifications([p.event for p in produced], known_users_only=True)
    shards = 7
    options = RebuildOptions(rules=RulesConfig(), shards=shards)
    with beam.Pipeline() as pipeline:
        derived = (
            pipeline
            | "Parts" >> beam.Create(_archive_parts(produced))
            | "ByKeyShard" >> GroupByKeyShard(Job.NOTIFICATIONS, shards)
            | "Derive" >> DeriveNotifications(options)
        )
        assert_that(derived | "Groups" >> beam.FlatMap(_groups_out),
                    equal_to(sorted(expected.items())), label="GroupsEqualReference")
        misplaced = derived | "Misplaced" >> beam.FlatMap(
            lambda d: [u for u in d.recipients if recipient_shard(u, shards) != d.shard])
        assert_that(misplaced, equal_to([]), label="EachRecipientInItsShard")


def test_derive_transform_for_named_users() -> None:
    produced = _produced(13)
    whole = derive_notifications([p.event for p in produced])
    named = sorted(whole.groups)[::4]
    options = RebuildOptions(rules=RulesConfig(), shards=5, users=frozenset(named))
    with beam.Pipeline() as pipeline:
        derived = (
            pipeline
            | "Parts" >> beam.Create(_archive_parts(produced))
            | "ByKeyShard" >> GroupByKeyShard(Job.NOTIFICATIONS, 5)
            | "Derive" >> DeriveNotifications(options)
        )
        assert_that(derived | "Recipients" >> beam.FlatMap(lambda d: sorted(d.recipients)),
                    equal_to(named), label="OnlyTheNamed")
        assert_that(derived | "Groups" >> beam.FlatMap(_groups_out),
                    equal_to(sorted(_flat({u: whole.groups[u] for u in named}).items())),
                    label="TheirGroups")


def test_routing_by_post_and_recipient_keys() -> None:
    like = encode_event(new_event("like", user_id="u", post_id="p", event_time=T0))
    post = encode_event(new_event("post_created", author_id="a", post_id="p", caption="@b",
                                  media=MEDIA, event_time=T0))
    follow = encode_event(new_event("follow", follower_id="f", followee_id="a", event_time=T0))
    assert set(route_records("engagements", [like], 64, notification_route)) == {
        shard_of("npost:p", 64), shard_of("recipient:u", 64)}
    assert set(route_records("uploads", [post], 64, notification_route)) == {
        shard_of("npost:p", 64), shard_of("recipient:a", 64)}
    assert set(route_records("follows", [follow], 64, notification_route)) == {
        shard_of("recipient:a", 64), shard_of("recipient:f", 64)}


def test_notification_drift_names_what_differs() -> None:
    like = Group("like", "p1", 2, ("u2", "u1"), 20)
    follow = Group("follow", None, 1, ("f",), 10)
    expected = {"like:p1": like, "follow:2026-11-01": follow}
    rows = [("like:p1", like), ("follow:2026-11-01", follow)]
    cached = ({"like:p1": 20}, {"like:p1": like})
    assert notification_problems(expected, rows, cached, cap=1) == []
    assert notification_problems(expected, rows, ({}, {}), cap=1) == []  # not cached
    stale = Group("like", "p1", 3, ("u3", "u2", "u1"), 25)
    problems = notification_problems(expected, [*rows, ("like:p1", stale)],
                                     ({"like:p1": 25}, {"like:p1": stale}), cap=1)
    assert problems[0].startswith("cql notifications: 1 group(s) stored twice")
    assert any(p.startswith("cql notifications: 1 different (e.g. like:p1") for p in problems)
    assert any(p.startswith("redis notifications: 1 different") for p in problems)
    assert any(p.startswith("redis notification list: 1 with another time") for p in problems)
    missing = notification_problems(expected, rows[:1], cached, cap=2)
    assert missing == ["cql notifications: 1 missing (e.g. follow:2026-11-01)",
                       "redis notifications: 1 missing (e.g. follow:2026-11-01)",
                       "redis notification list: 1 missing (e.g. follow:2026-11-01)"]
