"""A post's media metadata (issue 14): the post_created v1/v2 contracts, the rules keeping
it, its Redis and CQL encodings and what the API builds the event from."""

from __future__ import annotations

import json
import pickle
import re
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

from feedline.rules.effects import MediaRef, PostUpsert, Rendition, TimelineAdd
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job, KeyKind, RuleKey, apply_event, new_state, rule_keys
from feedline.stores.cql import added_field, load_migrations
from feedline.stores.media_store import MediaRecord
from feedline.stores.media_store import Rendition as StoredRendition
from feedline.stores.post_store import media_of
from schemas.cql_statements import media_values
from schemas.event_contracts import InvalidEvent, encode_event, new_event, parse_event
from schemas.redis_hashes import decode_post, encode_post
from serving.prepare import shown_media

CQL_DIR = Path(__file__).resolve().parents[2] / "schemas" / "cql"
PLAIN = {"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://b/media/m1"}
DESCRIBED = {
    "media_id": "m2", "content_type": "image/jpeg", "uri": "gs://b/renditions/m2/7/w1080.jpg",
    "width": 4000, "height": 3000,
    "renditions": [
        {"uri": "gs://b/renditions/m2/7/w1080.jpg", "width": 1080, "height": 810,
         "content_type": "image/jpeg"},
        {"uri": "gs://b/renditions/m2/7/w320.jpg", "width": 320, "height": 240,
         "content_type": "image/jpeg"}],
    "placeholder": "#a0b1c2",
}
DESCRIBED_REF = MediaRef(
    "m2", "image/jpeg", "gs://b/renditions/m2/7/w1080.jpg", 4000, 3000, None,
    (Rendition("gs://b/renditions/m2/7/w1080.jpg", 1080, 810, "image/jpeg"),
     Rendition("gs://b/renditions/m2/7/w320.jpg", 320, 240, "image/jpeg")), "#a0b1c2")


def post_created(version: int, media: list[dict[str, Any]], post_id: str = "p1") -> bytes:
    return json.dumps({
        "event_id": f"evt-{post_id}-{version}", "event_type": "post_created",
        "event_time": "2026-12-01T02:00:00.000Z", "schema_version": version,
        "author_id": "bob", "post_id": post_id, "caption": "first light", "media": media,
    }).encode()


def refs(payload: bytes) -> tuple[MediaRef, ...]:
    event = parse_event("uploads", payload)
    return tuple(MediaRef.from_json(m.to_dict()) for m in event.media)


# --- the contract -------------------------------------------------------------------------


def test_a_version_1_event_stays_valid_and_has_no_metadata() -> None:
    assert refs(post_created(1, [PLAIN])) == (MediaRef("m1", "image/jpeg", "gs://b/media/m1"),)


def test_a_version_2_event_carries_each_entrys_metadata() -> None:
    assert refs(post_created(2, [DESCRIBED, PLAIN])) == (
        DESCRIBED_REF, MediaRef("m1", "image/jpeg", "gs://b/media/m1"))


def test_a_video_entry_carries_its_duration() -> None:
    video = dict(PLAIN, content_type="video/mp4", width=1920, height=1080, duration_ms=15_000)
    [ref] = refs(post_created(2, [video]))
    assert (ref.width, ref.height, ref.duration_ms, ref.renditions) == (1920, 1080, 15_000, ())


@pytest.mark.parametrize(("version", "entry", "where"), [
    (1, dict(PLAIN, width=10), "width"),  # version 1 knows no metadata
    (2, dict(PLAIN, width=0), "width"),
    (2, dict(PLAIN, height="1080"), "height"),
    (2, dict(PLAIN, placeholder=""), "placeholder"),
    (2, dict(PLAIN, renditions=[{"uri": "gs://b/r", "width": 3, "height": 2}]), "renditions"),
    (2, dict(PLAIN, renditions=[dict(DESCRIBED["renditions"][0], exif="GPS")]), "renditions"),
    (2, dict(PLAIN, renditions=[dict(DESCRIBED["renditions"][0], content_type="text/html")]),
     "renditions"),
    (2, dict(PLAIN, dpi=72), "dpi"),
])
def test_bad_metadata_is_refused(version: int, entry: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event("uploads", post_created(version, [entry]))
    assert caught.value.reason in ("invalid_field", "missing_field")
    assert "media" in caught.value.detail and where in str(caught.value), caught.value


def test_a_version_2_event_encodes_and_parses_back_equal() -> None:
    event = new_event("post_created", author_id="bob", post_id="p1", caption="",
                      media=[DESCRIBED, PLAIN])
    assert event.schema_version == 2
    again = parse_event("uploads", encode_event(event))
    assert again == event
    assert json.loads(encode_event(again))["media"] == [DESCRIBED, PLAIN]


# --- the rules ----------------------------------------------------------------------------


def test_the_fan_out_rules_keep_the_metadata() -> None:
    config = RulesConfig(celebrity_threshold=10, follow_merge_limit=5, timeline_cap=50)
    follow = parse_event("follows", json.dumps({
        "event_id": "evt-follow-1", "event_type": "follow",
        "event_time": "2026-12-01T01:00:00.000Z", "schema_version": 1,
        "follower_id": "alice", "followee_id": "bob"}).encode())
    post = parse_event("uploads", post_created(2, [DESCRIBED]))
    [key] = rule_keys(post, Job.FANOUT)
    assert key == RuleKey(KeyKind.AUTHOR, "bob")
    state = new_state(key)
    apply_event(state, follow, config)
    effects = apply_event(state, post, config)
    [upsert] = [e for e in effects if isinstance(e, PostUpsert)]
    assert upsert.media == (DESCRIBED_REF,)
    assert any(isinstance(e, TimelineAdd) and e.user_id == "alice" for e in effects)
    # The author's keyed state (pickled by the streaming job) keeps it too.
    restored = pickle.loads(pickle.dumps(state))
    assert restored == state


#: A PostUpsert pickled before MediaRef had metadata fields (keyed state, pending effects).
OLD_PICKLE = (
    b"\x80\x05\x95\x84\x00\x00\x00\x00\x00\x00\x00\x8c\x16feedline.rules.effects\x94\x8c\n"
    b"PostUpsert\x94\x93\x94)\x81\x94]\x94(\x8c\x02p1\x94\x8c\x02a1\x94\x8a\x06\x00h\xe5\xcf"
    b"\x8b\x01\x8c\x02hi\x94h\x00\x8c\x08MediaRef\x94\x93\x94)\x81\x94]\x94(\x8c\x02m1\x94"
    b"\x8c\nimage/jpeg\x94\x8c\tgs://b/m1\x94eb\x85\x94\x8c\x02e1\x94eb."
)


def test_state_pickled_before_the_metadata_fields_still_loads() -> None:
    upsert = pickle.loads(OLD_PICKLE)
    assert upsert == PostUpsert("p1", "a1", 1_700_000_000_000, "hi",
                                (MediaRef("m1", "image/jpeg", "gs://b/m1"),), "e1")
    assert upsert.media[0].renditions == () and upsert.media[0].placeholder is None


# --- the stores ---------------------------------------------------------------------------


def test_the_post_hash_round_trips_the_metadata() -> None:
    plain = MediaRef("m1", "image/jpeg", "gs://b/media/m1")
    upsert = PostUpsert("p1", "bob", 1_700_000_000_000, "hi", (DESCRIBED_REF, plain), "e1")
    fields = encode_post(upsert)
    media = json.loads(fields["media"])
    assert media == [DESCRIBED, PLAIN]  # an entry without metadata is encoded as before
    decoded = decode_post(fields)
    assert tuple(MediaRef.from_json(m) for m in decoded.media) == (DESCRIBED_REF, plain)


def udt_fields(name: str) -> list[str]:
    """A UDT's fields in order, from the migrations: CREATE TYPE, then each ALTER TYPE ADD."""
    found: list[str] = []
    for migration in load_migrations():
        for statement in migration.statements():
            created = re.match(rf"CREATE TYPE IF NOT EXISTS {name} \((.*)\)$", statement, re.S)
            if created:
                found += [part.split()[0] for part in created[1].split(",")]
            added = added_field(statement)
            if added and added[0] == name:
                found.append(added[1])
    return found


def test_the_cql_values_follow_the_udt_field_order() -> None:
    assert udt_fields("media_ref") == ["media_id", "content_type", "uri", "width", "height",
                                       "duration_ms", "renditions", "placeholder"]
    assert udt_fields("media_rendition") == ["uri", "width", "height", "content_type"]
    video = MediaRef("m3", "video/mp4", "gs://b/media/m3", 1920, 1080, 15_000)
    [described, plain, movie] = media_values(
        [DESCRIBED_REF, MediaRef("m1", "image/jpeg", "gs://b/media/m1"), video])
    udt = namedtuple("media_ref", udt_fields("media_ref"))  # what the driver reads back
    rendition = namedtuple("media_rendition", udt_fields("media_rendition"))
    row = udt(*described[:6], [rendition(*r) for r in described[6]], described[7])
    assert (row.width, row.height, row.placeholder) == (4000, 3000, "#a0b1c2")
    assert media_of(row) == DESCRIBED_REF
    assert plain == ("m1", "image/jpeg", "gs://b/media/m1", None, None, None, None, None)
    assert media_of(udt(*movie)) == video
    # A row read through the type as it was before 0005 (three fields): nothing known.
    old = namedtuple("media_ref", ["media_id", "content_type", "uri"])("m1", "image/png", "u")
    assert media_of(old) == MediaRef("m1", "image/png", "u")


def test_only_alter_type_add_statements_count_as_added_fields() -> None:
    assert added_field("ALTER TYPE media_ref ADD width int") == ("media_ref", "width")
    assert added_field("alter type Media_Ref add Placeholder text") == ("media_ref", "placeholder")
    assert added_field("ALTER TABLE posts ADD width int") is None
    assert added_field("CREATE TYPE IF NOT EXISTS media_ref (media_id text)") is None


# --- the API ------------------------------------------------------------------------------


def test_the_api_puts_the_ready_records_metadata_into_the_event() -> None:
    record = MediaRecord(
        "m2", "bob", "image/jpeg", 1234, "gs://b/media/m2", status="ready", generation=7,
        width=4000, height=3000,
        renditions=(StoredRendition("gs://b/renditions/m2/7/w1080.jpg", 1080, 810, "image/jpeg"),
                    StoredRendition("gs://b/renditions/m2/7/w320.jpg", 320, 240, "image/jpeg")),
        placeholder="#a0b1c2", completed=True)
    assert shown_media(record) == DESCRIBED
    event = new_event("post_created", author_id="bob", post_id="p1", caption="",
                      media=[shown_media(record)])
    assert refs(encode_event(event)) == (DESCRIBED_REF,)
