"""The rebuild's pure parts: the store image (rules per key, cells streaming leaves
behind), the routing of raw records into shards, the jobs' own derive transforms over
``beam.Create``, flags, drift descriptions."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from feedline.cli import iso_time
from feedline.rebuild.drift import user_drift
from feedline.rebuild.image import derive_image
from feedline.rules.engine import derive
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job
from feedline.rules.memory import newest
from feedline.workload import Workload, WorkloadSpec
from pipelines.batch.options import RebuildOptions, read_users_file
from pipelines.batch.rebuild_counters import DeriveCounters
from pipelines.batch.rebuild_timelines import DeriveTimelines
from pipelines.batch.transforms import (
    GroupByKeyShard,
    counter_route,
    fanout_route,
    route_records,
    shard_of,
)
from schemas.event_contracts import encode_event, new_event
from tests.support.reference import reference

MEDIA = [{"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://feedline-media/m1"}]
CONFIG = RulesConfig(celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=120, posts=150, mean_followers=10, max_followers=40,
                    likes_per_post=3, comments_per_post=1, post_delete_share=0.05,
                    unfollow_share=0.05, seed=9)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _events() -> list:
    return [p.event for p in Workload(SPEC).events()]


def test_image_per_key_equals_the_reference_and_the_in_order_engine() -> None:
    events = _events()
    image = derive_image(reversed(events), CONFIG)  # arrival order must not matter
    expected = reference(events, celebrity_threshold=25, follow_merge_limit=4, timeline_cap=12)
    assert expected.celebrities
    feed = image.feed.normalized()
    assert feed.timelines == expected.timelines
    assert feed.celebrities == expected.celebrities
    assert feed.followed_celebrities == expected.followed_celebrities
    assert feed.outboxes == {a: {p: o[p] for p in newest(o, 12)}
                             for a, o in expected.outboxes.items() if o}
    assert feed.post_counters == expected.post_counters
    assert feed.user_counters == expected.user_counters
    assert image.feed.normalized().timelines == derive(events, CONFIG).normalized().timelines


def test_image_keeps_the_cells_streaming_leaves_behind() -> None:
    def at(s: int) -> dict:
        return {"event_time": T0.replace(second=s)}

    created = new_event("post_created", author_id="a", post_id="p1", caption="hi",
                        media=MEDIA, **at(1))
    deleted = new_event("post_deleted", author_id="a", post_id="p1", **at(2))
    like = new_event("like", user_id="u", post_id="p2", post_author_id="a", **at(3))
    unlike = new_event("unlike", user_id="u", post_id="p2", post_author_id="a", **at(4))
    follow = new_event("follow", follower_id="f", followee_id="a", **at(5))
    image = derive_image([created, deleted, like, unlike, follow], CONFIG)
    row = image.post_rows["p1"]
    assert (row.deleted, row.caption, row.created_ms) == (True, "hi", created.event_time_ms)
    assert image.feed.post_counters["p2"] == (0, 0)  # written by streaming as zeros
    assert image.feed.user_counters["a"] == {"posts": 0, "followers": 1}
    assert "following" not in image.feed.user_counters["a"]  # never written at all
    assert image.readers == {"f"}


def test_routing_puts_every_key_in_one_shard_and_follows_in_both_users_shards() -> None:
    follow = encode_event(new_event("follow", follower_id="f1", followee_id="a1"))
    post = encode_event(new_event("post_created", author_id="a1", post_id="p", caption="",
                                  media=MEDIA))
    fan = route_records("follows", [follow], 16, fanout_route)
    assert fan == {shard_of("a1", 16): [("follows", follow)]}
    assert route_records("uploads", [post], 16, fanout_route) == fan | {
        shard_of("a1", 16): [("uploads", post)]}
    counted = route_records("follows", [follow], 64, counter_route)
    assert set(counted) == {shard_of("user:a1", 64), shard_of("user:f1", 64)}
    with pytest.raises(ValueError, match="not a JSON object"):
        route_records("follows", [b"[1]"], 4, fanout_route)


def _archive_parts(produced: list, roles: tuple[str, ...]) -> list:
    """The workload as archive parts read: (role, object name, lines), 500 events a part."""
    parts = [(p.role, encode_event(p.event)) for p in produced]
    chunks = [parts[i:i + 500] for i in range(0, len(parts), 500)]
    return [(role, f"part-{n}-{role}", [line for r, line in chunk if r == role])
            for n, chunk in enumerate(chunks) for role in roles]


def _timelines(readers) -> list:
    """(user, rows newest first) of each non-empty timeline of a reader shard."""
    return [(u, tuple(sorted(rows, reverse=True))) for u, rows in readers.timelines.items()
            if rows]


def test_sharded_beam_graph_equals_one_image() -> None:
    """The timelines job's own transforms over beam.Create (route and group by author
    shard, rules per shard, regroup by reader shard): the union of the shards' timelines
    equals the rules over all events at once."""
    produced = list(Workload(SPEC).events())
    whole = derive_image([p.event for p in produced], CONFIG, counters=False)
    expected = sorted((u, tuple(whole.timeline_rows(u))) for u in whole.feed.timelines
                      if whole.feed.timelines[u])

    with beam.Pipeline("DirectRunner") as pipeline:
        derived = (
            pipeline
            | "Parts" >> beam.Create(_archive_parts(produced, ("uploads", "follows")))
            | "ByAuthorShard" >> GroupByKeyShard(Job.FANOUT, 7)
            | "Derive" >> DeriveTimelines(RebuildOptions(rules=CONFIG, shards=7))
        )
        timelines = derived["readers"] | "Timelines" >> beam.FlatMap(_timelines)
        assert_that(timelines, equal_to(expected))


def test_derive_timelines_for_named_users_keeps_only_theirs() -> None:
    """--users: only the named readers come out, each once, an unknown one empty."""
    produced = list(Workload(SPEC).events())
    whole = derive_image([p.event for p in produced], CONFIG, counters=False)
    named = sorted(u for u in whole.feed.timelines if whole.feed.timelines[u])[:3]
    options = RebuildOptions(rules=CONFIG, shards=5, users=frozenset([*named, "nobody"]))
    expected = sorted([(u, tuple(whole.timeline_rows(u))) for u in named] + [("nobody", ())])

    with beam.Pipeline("DirectRunner") as pipeline:
        readers = (
            pipeline
            | "Parts" >> beam.Create(_archive_parts(produced, ("uploads", "follows")))
            | "ByAuthorShard" >> GroupByKeyShard(Job.FANOUT, 5)
            | "Derive" >> DeriveTimelines(options)
        )["readers"]
        rows = readers | "Rows" >> beam.FlatMap(
            lambda shard: [(u, tuple(sorted(r, reverse=True)))
                           for u, r in shard.timelines.items()])
        assert_that(rows, equal_to(expected))


def test_sharded_counters_equal_one_image() -> None:
    """The counters job's own transforms over beam.Create: the union of the shards'
    counters equals the counter rules over all events at once, each key in one shard."""
    produced = list(Workload(SPEC).events())
    whole = derive_image([p.event for p in produced], CONFIG, fanout=False)
    assert whole.feed.post_counters and whole.feed.user_counters
    expected = sorted([("post", k, v) for k, v in whole.feed.post_counters.items()]
                      + [("user", k, sorted(v.items()))
                         for k, v in whole.feed.user_counters.items()])

    def counters(shard) -> list:
        feed = shard.image.feed
        return ([("post", k, v) for k, v in feed.post_counters.items()]
                + [("user", k, sorted(v.items())) for k, v in feed.user_counters.items()])

    with beam.Pipeline("DirectRunner") as pipeline:
        shards = (
            pipeline
            | "Parts" >> beam.Create(_archive_parts(produced,
                                                   ("uploads", "follows", "engagements")))
            | "ByCounterShard" >> GroupByKeyShard(Job.COUNTERS, 6)
            | "Derive" >> DeriveCounters(RebuildOptions(rules=CONFIG, shards=6))
        )
        assert_that(shards | "Counters" >> beam.FlatMap(counters), equal_to(expected))


def test_flags_and_users_file(tmp_path) -> None:
    assert iso_time("2026-11-01T00:00:00Z") == T0
    with pytest.raises(argparse.ArgumentTypeError, match="no timezone"):
        iso_time("2026-11-01T00:00:00")
    users = tmp_path / "users.txt"
    users.write_text("u1\n\n# comment\nu2  # trailing\n")
    assert read_users_file(str(users)) == ["u1", "u2"]


def test_drift_names_what_differs() -> None:
    same = user_drift("u", expected_timeline={"p1": 1, "p2": 2}, expected_followed={"c"},
                      expected_counters={"followers": 1}, cap=1,
                      cql_timeline={"p1": 1, "p2": 2}, cached={"p2": 2}, followed={"c"},
                      cql_counters={"followers": 1}, cached_counters={"followers": 1})
    assert not same.drifted
    off = user_drift("u", expected_timeline={"p1": 1, "p2": 2}, expected_followed=set(),
                     expected_counters={"followers": 1}, cap=1,
                     cql_timeline={"p1": 1, "p3": 3}, cached={"p1": 1}, followed=set(),
                     cql_counters={"followers": 2}, cached_counters={"followers": 1})
    assert off.problems == [
        "cql timeline: 1 missing (e.g. p2), 1 extra (e.g. p3)",
        "redis timeline: 1 missing (e.g. p2), 1 extra (e.g. p1)",
        "cql user counters {'followers': 2} != {'followers': 1}",
    ]


def test_drift_treats_redis_as_a_cache_and_trusts_only_marked_celebrity_sets() -> None:
    def drift(cached: dict[str, int], followed: set[str],
              counters: dict[str, int]) -> list[str]:
        return user_drift("u", expected_timeline={"p1": 1, "p2": 2}, expected_followed={"c", "d"},
                          expected_counters={"followers": 1}, cap=5,
                          cql_timeline={"p1": 1, "p2": 2}, cached=cached, followed=followed,
                          cql_counters={"followers": 1}, cached_counters=counters).problems

    # Evicted, or Redis restarted empty: nothing cached, nothing wrong.
    assert drift({}, set(), {}) == []
    # An unmarked set may be a part (re-created by one add after an eviction) ...
    assert drift({"p1": 1, "p2": 2}, {"c"}, {"followers": 1}) == []
    # ... but never holds a celebrity the user does not follow.
    assert drift({}, {"c", "x"}, {}) == ["redis followed celebrities: ['x'] not followed"]
    # A set a reader marked complete must be whole.
    assert drift({}, {".", "c"}, {}) == [
        "redis followed celebrities: ['c'] != ['c', 'd'] (marked complete)"]
    assert drift({}, {".", "c", "d"}, {}) == []
    # A cached timeline or counters hash must be right.
    assert drift({"p1": 1}, set(), {"followers": 3}) == [
        "redis timeline: 1 missing (e.g. p2)",
        "redis user counters {'followers': 3} != {'followers': 1}"]
