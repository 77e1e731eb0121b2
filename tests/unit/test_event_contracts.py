"""Unit tests of schemas/event_contracts.py: the event contract every job and the API share."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import event_contracts as ec
from schemas.event_contracts import (
    EVENT_TYPES,
    INVALID_EVENT_REASONS,
    KEY_FIELD,
    MAX_EVENT_BYTES,
    TOPIC_ROLES,
    InvalidEvent,
    encode_event,
    new_event,
    parse_event,
    role_of,
)

MEDIA = [
    {"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://feedline-media/media/m1"},
    {"media_id": "m2", "content_type": "video/mp4", "uri": "gs://feedline-media/media/m2"},
]
# Valid type-specific fields of every event type; the test below fails if a type is missing.
FIELDS: dict[str, dict[str, Any]] = {
    "post_created": {"author_id": "u1", "post_id": "p1", "caption": "sunset 🌅", "media": MEDIA},
    "post_deleted": {"author_id": "u1", "post_id": "p1"},
    "follow": {"follower_id": "u2", "followee_id": "u1"},
    "unfollow": {"follower_id": "u2", "followee_id": "u1"},
    "like": {"user_id": "u2", "post_id": "p1", "post_author_id": "u1"},
    "unlike": {"user_id": "u2", "post_id": "p1"},
    "comment": {"user_id": "u2", "post_id": "p1", "comment_id": "c1", "text": "nice!"},
    "comment_deleted": {"user_id": "u2", "post_id": "p1", "comment_id": "c1"},
}
ALL_TYPES = [event_type for types in EVENT_TYPES.values() for event_type in types]
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def payload(event_type: str, /, **changes: Any) -> dict[str, Any]:
    """A valid raw event as a dict; ``changes`` override fields, a value of ... removes one."""
    event = {
        "event_id": "evt-00000001",
        "event_type": event_type,
        "event_time": "2024-05-06T07:08:09.123Z",
        "schema_version": 1,
        **FIELDS[event_type],
    }
    event.update(changes)
    return {name: value for name, value in event.items() if value is not ...}


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def rejection(role: str, message: bytes | str) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(role, message)
    return caught.value


# --- topology and catalog --------------------------------------------------------------


def test_every_event_type_has_sample_fields_and_a_schema() -> None:
    assert sorted(FIELDS) == sorted(ALL_TYPES)
    assert sorted({event_type for event_type, _, _ in ec.all_schemas()}) == sorted(ALL_TYPES)
    assert TOPIC_ROLES == tuple(EVENT_TYPES) == tuple(KEY_FIELD)


#: Event types past their first schema version.
LATEST = {"post_created": 2}


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_schema_files_declare_the_topic_and_key(event_type: str) -> None:
    schema = ec.load_schema(event_type, 1)
    assert schema["x-topic"] == role_of(event_type)
    assert schema["x-key"] == KEY_FIELD[role_of(event_type)]
    assert ec.latest_version(event_type) == LATEST.get(event_type, 1)
    latest = ec.load_schema(event_type, ec.latest_version(event_type))
    assert (latest["x-topic"], latest["x-key"]) == (schema["x-topic"], schema["x-key"])


def test_load_schema_returns_a_copy() -> None:
    ec.load_schema("like", 1)["properties"].clear()
    assert "user_id" in ec.load_schema("like", 1)["properties"]


def test_unknown_type_and_version_lookups_raise() -> None:
    with pytest.raises(InvalidEvent, match="unknown_event_type"):
        role_of("post_edited")
    with pytest.raises(InvalidEvent, match="unknown_schema_version"):
        ec.load_schema("like", 9)


# --- building, encoding, round trips ---------------------------------------------------


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_event_type_round_trips(event_type: str) -> None:
    event = new_event(event_type, event_time=WHEN, **FIELDS[event_type])
    encoded = encode_event(event)
    assert parse_event(role_of(event_type), encoded) == event
    assert json.loads(encoded) == event.to_dict()
    assert encoded == json.dumps(
        event.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert type(event).__name__ == "".join(p.capitalize() for p in event_type.split("_"))
    assert event.event_type == event_type
    assert event.key == FIELDS[event_type][KEY_FIELD[role_of(event_type)]]
    assert event.event_time == "2024-05-06T07:08:09.123Z"


def test_new_event_fills_id_time_and_version() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    event = new_event("like", user_id="u2", post_id="p1")
    assert len(event.event_id) == 32 and int(event.event_id, 16) >= 0
    assert event.event_id != new_event("like", user_id="u2", post_id="p1").event_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event.event_time)
    assert before <= event.event_time_dt <= datetime.now(UTC)
    assert event.schema_version == ec.latest_version("like")


def test_event_time_accessors() -> None:
    event = parse_event(
        "follows", raw(payload("follow", event_time="2024-05-06T09:08:09.123456+02:00"))
    )
    assert event.event_time_dt == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert event.event_time_dt.utcoffset() == timedelta(hours=2)
    assert event.event_time_ms == 1714979289123
    converted = new_event(
        "follow", event_time=WHEN.astimezone(timezone(timedelta(hours=-5))), **FIELDS["follow"]
    )
    assert converted.event_time == "2024-05-06T07:08:09.123Z"


def test_optional_fields_default_to_none_and_are_left_out() -> None:
    event = new_event("unlike", user_id="u2", post_id="p1", post_author_id=None)
    assert event.post_author_id is None
    assert "post_author_id" not in event.to_dict()
    assert new_event("like", **FIELDS["like"]).post_author_id == "u1"
    with pytest.raises(AttributeError):
        _ = event.caption


def test_events_are_frozen_hashable_and_picklable() -> None:
    event = new_event("post_created", **FIELDS["post_created"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.post_id = "p2"  # type: ignore[attr-defined]
    assert event.media[1].content_type == "video/mp4"
    assert isinstance(event.media, tuple)
    assert {event: 1}[pickle.loads(pickle.dumps(event))] == 1
    assert type(event) is ec.event_class("post_created") is ec.PostCreated  # type: ignore[attr-defined]
    error = InvalidEvent("missing_field", "$.post_id is required")
    assert str(pickle.loads(pickle.dumps(error))) == "missing_field: $.post_id is required"


def test_new_event_accepts_records_as_nested_values() -> None:
    original = new_event("post_created", **FIELDS["post_created"])
    copied = new_event(
        "post_created",
        event_id=original.event_id,
        event_time=original.event_time_dt,
        author_id="u1",
        post_id="p1",
        caption="sunset 🌅",
        media=original.media,
    )
    assert copied == original


def test_new_event_rejects_naive_time_and_bad_fields() -> None:
    with pytest.raises(InvalidEvent) as naive:
        new_event("like", event_time=datetime(2024, 1, 1), user_id="u", post_id="p")  # noqa: DTZ001
    assert naive.value.reason == "invalid_field" and "event_time" in naive.value.detail
    with pytest.raises(InvalidEvent) as missing:
        new_event("comment", user_id="u", post_id="p", comment_id="c")
    assert missing.value.reason == "missing_field" and "$.text" in missing.value.detail
    with pytest.raises(InvalidEvent) as unknown:
        new_event("repost", user_id="u")
    assert unknown.value.reason == "unknown_event_type"


def test_parse_accepts_str_payloads() -> None:
    assert parse_event("uploads", json.dumps(payload("post_deleted"))).post_id == "p1"


def test_unknown_role_is_a_programming_error() -> None:
    with pytest.raises(ValueError) as caught:
        parse_event("likes", raw(payload("like")))
    assert not isinstance(caught.value, InvalidEvent)


def test_invalid_event_rejects_unknown_reasons() -> None:
    with pytest.raises(ValueError):
        InvalidEvent("bad", "x")
    error = InvalidEvent("wrong_topic", "$.event_type: detail")
    assert (error.reason, error.detail, str(error)) == (
        "wrong_topic",
        "$.event_type: detail",
        "wrong_topic: $.event_type: detail",
    )


# --- every rejection reason, from a concrete bad payload -------------------------------

OVERSIZED = raw(payload("post_created", caption="x" * MAX_EVENT_BYTES))
LONE_SURROGATE = raw(payload("post_created", caption="SURROGATE")).replace(b"SURROGATE", b"\\ud800")
ONE_MEDIA_WITHOUT_URI = [MEDIA[0], {"media_id": "m", "content_type": "image/png"}]


def bad(field: str, role: str, message: bytes | str, reason: str) -> Any:
    """One rejection case: ``field`` is what the InvalidEvent detail must mention."""
    return pytest.param(field, role, message, reason, id=f"{reason}-{field}")


BAD_EVENTS = [
    bad("bytes", "uploads", OVERSIZED, "oversized"),
    bad("bytes", "uploads", OVERSIZED.decode(), "oversized"),
    bad("JSON", "engagements", b"{not json", "unparseable"),
    bad("UTF-8", "engagements", b'{"event_type": "like\xff"}', "unparseable"),
    bad(
        "duplicate key 'post_id'", "engagements", b'{"post_id": "a", "post_id": "b"}', "unparseable"
    ),
    bad("NaN", "engagements", b'{"schema_version": NaN}', "unparseable"),
    bad("array", "engagements", b"[1, 2]", "not_an_object"),
    bad(
        "$.event_type",
        "engagements",
        raw(payload("like", event_type="repost")),
        "unknown_event_type",
    ),
    bad("$.event_type", "uploads", raw(payload("like")), "wrong_topic"),
    bad(
        "$.schema_version",
        "engagements",
        raw(payload("like", schema_version=7)),
        "unknown_schema_version",
    ),
    bad("$.event_type", "engagements", raw(payload("like", event_type=...)), "missing_field"),
    bad(
        "$.schema_version", "engagements", raw(payload("like", schema_version=...)), "missing_field"
    ),
    bad("$.post_id", "engagements", raw(payload("like", post_id=...)), "missing_field"),
    bad("$.event_id", "engagements", raw(payload("like", event_id=...)), "missing_field"),
    bad(
        "$.media[1].uri",
        "uploads",
        raw(payload("post_created", media=ONE_MEDIA_WITHOUT_URI)),
        "missing_field",
    ),
    bad("$.event_type", "engagements", raw(payload("like", event_type=5)), "invalid_field"),
    bad(
        "$.schema_version", "engagements", raw(payload("like", schema_version="1")), "invalid_field"
    ),
    bad(
        "$.schema_version",
        "engagements",
        raw(payload("like", schema_version=True)),
        "invalid_field",
    ),
    bad("$.user_id", "engagements", raw(payload("like", user_id="no spaces")), "invalid_field"),
    bad("$.user_id", "engagements", raw(payload("like", user_id="u1\n")), "invalid_field"),
    bad("$.user_id", "engagements", raw(payload("like", user_id="")), "invalid_field"),
    bad(
        "$.post_author_id",
        "engagements",
        raw(payload("like", post_author_id="x" * 65)),
        "invalid_field",
    ),
    bad("$.event_id", "engagements", raw(payload("like", event_id="short")), "invalid_field"),
    bad(
        "$.event_time",
        "engagements",
        raw(payload("like", event_time="2024-05-06T07:08:09")),
        "invalid_field",
    ),
    bad(
        "$.event_time",
        "engagements",
        raw(payload("like", event_time="2024-02-30T07:08:09Z")),
        "invalid_field",
    ),
    bad(
        "$.event_time",
        "engagements",
        raw(payload("like", event_time=1714979289123)),
        "invalid_field",
    ),
    bad("$.caption", "uploads", raw(payload("post_created", caption="x" * 2201)), "invalid_field"),
    bad("$.caption", "uploads", LONE_SURROGATE, "invalid_field"),
    bad("$.media", "uploads", raw(payload("post_created", media=[])), "invalid_field"),
    bad(
        "$.media",
        "uploads",
        raw(payload("post_created", media=MEDIA * 5 + MEDIA[:1])),
        "invalid_field",
    ),
    bad(
        "$.media[0].content_type",
        "uploads",
        raw(payload("post_created", media=[{**MEDIA[0], "content_type": "image/gif"}])),
        "invalid_field",
    ),
    bad(
        "$.media[0].extra",
        "uploads",
        raw(payload("post_created", media=[{**MEDIA[0], "extra": 1}])),
        "invalid_field",
    ),
    bad("$.text", "engagements", raw(payload("comment", text="")), "invalid_field"),
    bad("$.views", "engagements", raw(payload("like", views=3)), "invalid_field"),
    bad("$.followee_id", "follows", raw(payload("follow", followee_id="u2")), "invalid_field"),
    bad("$.followee_id", "follows", raw(payload("unfollow", follower_id="u1")), "invalid_field"),
]


@pytest.mark.parametrize(("field", "role", "message", "reason"), BAD_EVENTS)
def test_bad_payloads_are_rejected_with_reason_and_field(
    field: str, role: str, message: bytes | str, reason: str
) -> None:
    error = rejection(role, message)
    assert error.reason == reason, str(error)
    assert field in error.detail, str(error)
    assert str(error) == f"{reason}: {error.detail}"


def test_missing_fields_are_reported_before_invalid_ones() -> None:
    message = raw(payload("post_created", media=ONE_MEDIA_WITHOUT_URI, views=3))
    error = rejection("uploads", message)
    assert error.reason == "missing_field"
    assert error.detail == "$.media[1].uri is required (and 1 more problems)"


def test_every_reason_is_exercised() -> None:
    assert {case.values[-1] for case in BAD_EVENTS} == set(INVALID_EVENT_REASONS)


def test_largest_allowed_event_is_accepted() -> None:
    event = payload("comment", text="x")
    room = MAX_EVENT_BYTES - len(raw(event))
    message = raw(event)[:-1] + b" " * room + b"}"
    assert len(message) == MAX_EVENT_BYTES
    assert parse_event("engagements", message).text == "x"
    assert rejection("engagements", message[:-1] + b" }").reason == "oversized"


# --- property tests --------------------------------------------------------------------

ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
texts = st.text(max_size=2200)
media_items = st.fixed_dictionaries(
    {
        "media_id": ids,
        "content_type": st.sampled_from(
            ["image/jpeg", "image/png", "image/webp", "image/heic", "video/mp4", "video/quicktime"]
        ),
        "uri": ids.map(lambda media_id: f"gs://feedline-media/media/{media_id}"),
    }
)
zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=zones,
)
FIELD_STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "post_created": st.fixed_dictionaries(
        {
            "author_id": ids,
            "post_id": ids,
            "caption": texts,
            "media": st.lists(media_items, min_size=1, max_size=10),
        }
    ),
    "post_deleted": st.fixed_dictionaries({"author_id": ids, "post_id": ids}),
    "follow": st.fixed_dictionaries({"follower_id": ids, "followee_id": ids}),
    "unfollow": st.fixed_dictionaries({"follower_id": ids, "followee_id": ids}),
    "like": st.fixed_dictionaries(
        {"user_id": ids, "post_id": ids}, optional={"post_author_id": ids}
    ),
    "unlike": st.fixed_dictionaries(
        {"user_id": ids, "post_id": ids}, optional={"post_author_id": ids}
    ),
    "comment": st.fixed_dictionaries(
        {
            "user_id": ids,
            "post_id": ids,
            "comment_id": ids,
            "text": st.text(min_size=1, max_size=2200),
        },
        optional={"post_author_id": ids},
    ),
    "comment_deleted": st.fixed_dictionaries(
        {"user_id": ids, "post_id": ids, "comment_id": ids}, optional={"post_author_id": ids}
    ),
}
generated_events = (
    st.sampled_from(ALL_TYPES)
    .flatmap(
        lambda event_type: st.tuples(st.just(event_type), FIELD_STRATEGIES[event_type], moments)
    )
    .filter(lambda case: case[1].get("follower_id", 0) != case[1].get("followee_id", 1))
)


def test_every_event_type_has_a_strategy() -> None:
    assert sorted(FIELD_STRATEGIES) == sorted(ALL_TYPES)


@settings(deadline=None, max_examples=300)
@given(generated_events)
def test_generated_events_parse_back_equal(case: tuple[str, dict[str, Any], datetime]) -> None:
    event_type, fields, moment = case
    event = new_event(event_type, event_time=moment, **fields)
    role = role_of(event_type)
    assert parse_event(role, encode_event(event)) == event
    as_ascii = json.dumps(event.to_dict(), ensure_ascii=True)  # any valid spelling parses equal
    assert parse_event(role, as_ascii) == event
    assert event.to_dict() == {**payload_envelope(event), **fields}
    assert event.event_time_ms == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


def payload_envelope(event: ec.Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "event_time": event.event_time,
        "schema_version": event.schema_version,
    }


# --- the module split: names stay where callers (and pickles) look for them ----------------


def test_public_names_stay_importable_from_event_contracts() -> None:
    from schemas import event_models, event_validation

    assert ec.Record is event_models.Record and issubclass(ec.Event, ec.Record)
    assert ec.load_schema is not None and ec.event_class is not None
    like = ec.event_class("like")
    media = type(new_event("post_created", **FIELDS["post_created"]).media[0])
    assert like.__module__ == media.__module__ == "schemas.event_contracts"
    assert getattr(ec, media.__name__) is media
    assert pickle.loads(pickle.dumps(new_event("post_created", **FIELDS["post_created"]).media))
    assert isinstance(ec._validator("like", 1), event_validation.SchemaCheck)


def test_parse_event_reads_json_in_any_unicode_encoding_like_json_loads() -> None:
    message = json.dumps(payload("like"))
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-32-le"):
        assert parse_event("engagements", message.encode(encoding)).user_id == "u2"
    assert parse_event("engagements", bytearray(message.encode())).user_id == "u2"
    assert parse_event("engagements", "\ufeff" + message).user_id == "u2"  # sent as UTF-8-sig
    assert rejection("engagements", message.encode("utf-16")[:-1]).reason == "unparseable"
