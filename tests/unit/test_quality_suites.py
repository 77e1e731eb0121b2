"""The expectation suites: derived from the JSON Schemas, and what they catch (in memory)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from feedline.archive.layout import Partition, partition_of
from feedline.workload import Workload, WorkloadSpec
from pipelines.quality.frame import build_frames
from pipelines.quality.suites import ecma_pattern, role_suites, type_column
from pipelines.quality.validate import SuiteRunner, validate_frames
from schemas.event_contracts import all_schemas, encode_event, load_schema

EVENTS = list(Workload(WorkloadSpec(users=60, posts=30, mean_followers=4,
                                    max_followers=15, seed=5)).events())


def _kwargs(spec) -> list[tuple[str, dict]]:
    return [(e.expectation_type, dict(e.configuration.kwargs)) for e in spec.expectations]


@pytest.mark.parametrize(("event_type", "version"),
                         [(t, v) for t, v, _ in all_schemas()])
def test_every_schema_property_is_type_checked(event_type: str, version: int) -> None:
    schema = load_schema(event_type, version)
    role = schema["x-topic"]
    suite = next(s for s in role_suites(role) if s.name == f"{event_type}.v{version}")
    checked = {kw["column"] for kind, kw in _kwargs(suite)
               if kind == "expect_column_values_to_be_in_set"}
    for name, prop in schema["properties"].items():
        assert type_column(name) in checked, name
        if "pattern" in prop:
            assert ("expect_column_values_to_match_regex",
                    {"column": name, "regex": ecma_pattern(prop["pattern"])}) in [
                (k, {"column": kw["column"], "regex": kw.get("regex")})
                for k, kw in _kwargs(suite)], name


def test_media_items_get_their_own_suite_with_the_content_type_enum() -> None:
    media = next(s for s in role_suites("uploads") if s.child == "media")
    enum = load_schema("post_created", 1)["properties"]["media"]["items"]["properties"][
        "content_type"]["enum"]
    assert ("expect_column_values_to_be_in_set",
            {"column": "content_type", "value_set": enum}) in [
        (k, {"column": kw["column"], "value_set": kw.get("value_set")})
        for k, kw in _kwargs(media)]


def test_ecma_end_anchor_does_not_accept_a_trailing_newline() -> None:
    import re

    assert re.search(ecma_pattern("^[a-z]+$"), "abc")
    assert not re.search(ecma_pattern("^[a-z]+$"), "abc\n")


def _rows(role: str, extra: list[bytes], partition: Partition | None = None):
    rows = []
    for item in EVENTS:
        if item.role == role:
            rows.append((partition_of(role, item.event.event_time_dt), "o",
                         encode_event(item.event)))
    target = partition or rows[0][0]
    rows.extend((target, "bad", line) for line in extra)
    return rows, target


def test_valid_workload_passes_every_suite() -> None:
    runner = SuiteRunner()
    for role in ("uploads", "follows", "engagements"):
        rows, _ = _rows(role, [])
        outcome = validate_frames(runner, build_frames(role, rows), label=role)
        assert outcome.bad_rows == {} and outcome.table_failures == [], role


def test_each_kind_of_bad_follow_is_flagged_with_its_reason() -> None:
    good = json.loads(next(encode_event(i.event) for i in EVENTS if i.role == "follows"))
    bad = {
        "self-follow": dict(good, event_id="selffollow1", followee_id=good["follower_id"]),
        "unknown field": dict(good, event_id="unknownfld1", extra=1),
        "wrong type": dict(good, event_id="wrongtype01", follower_id=7),
        "missing field": {k: v for k, v in good.items() if k != "followee_id"}
        | {"event_id": "missingfld1"},
        "unknown version": dict(good, event_id="version9999", schema_version=9),
        "wrong topic": dict(good, event_id="wrongtopic1", event_type="like"),
        "bad time": dict(good, event_id="badtime0001", event_time="2026-11-01 00:00"),
    }
    rows, _ = _rows("follows", [json.dumps(b).encode() for b in bad.values()],
                    Partition("follows", date(2026, 11, 1), 0))
    frames = build_frames("follows", rows)
    outcome = validate_frames(SuiteRunner(), frames, label="follows")
    flagged = {frames.sources[r].line: reasons for r, reasons in outcome.bad_rows.items()}
    expected = {
        "self-follow": "__distinct.follower_id,followee_id",
        "unknown field": "(__unknown)",
        "wrong type": "(__type.follower_id)",
        "missing field": "(__type.followee_id)",
        "unknown version": "(__schema)",
        "wrong topic": "(event_type)",
        "bad time": "(__event_time_ms)",
    }
    assert len(flagged) == len(bad)
    for name, record in bad.items():
        reasons = " ".join(flagged[json.dumps(record).encode()])
        assert expected[name] in reasons, (name, reasons)


def test_media_metadata_is_checked_per_schema_version() -> None:
    plain = {"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/media/m1"}
    rendition = {"uri": "gs://b/renditions/m1/7/w320.jpg", "width": 320, "height": 240,
                 "content_type": "image/jpeg"}
    described = dict(plain, width=640, height=480, renditions=[rendition], placeholder="#000000")
    good = json.loads(next(encode_event(i.event) for i in EVENTS
                           if i.event.event_type == "post_created"))
    records = {
        "v2 with metadata": dict(good, event_id="v2described1", schema_version=2,
                                 media=[described, plain]),
        "v1 without": dict(good, event_id="v1plainmedia1", schema_version=1, media=[plain]),
        "v1 with metadata": dict(good, event_id="v1described1", schema_version=1,
                                 media=[described]),
        "v2 renditions not a list": dict(good, event_id="v2badrendit1", schema_version=2,
                                         media=[dict(plain, renditions="w320.jpg")]),
        "v2 width as text": dict(good, event_id="v2badwidth01", schema_version=2,
                                 media=[dict(plain, width="640")]),
    }
    rows, _ = _rows("uploads", [json.dumps(r).encode() for r in records.values()],
                    Partition("uploads", date(2026, 11, 1), 0))
    rows = [row for row in rows if row[1] == "bad"]  # only these records, in one partition
    frames = build_frames("uploads", rows)
    outcome = validate_frames(SuiteRunner(), frames, label="uploads")
    flagged = {json.loads(frames.sources[r].line)["event_id"]: " ".join(reasons)
               for r, reasons in outcome.bad_rows.items()}
    assert set(flagged) == {"v1described1", "v2badrendit1", "v2badwidth01"}, flagged
    assert "post_created.v1.media[]" in flagged["v1described1"]
    assert "(__unknown)" in flagged["v1described1"]
    assert "(__type.renditions)" in flagged["v2badrendit1"]
    assert "(__type.width)" in flagged["v2badwidth01"]
