"""The quick check compiled from each event schema agrees with the full jsonschema validator.

``schemas.event_validation`` trusts its compiled quick check when it says "valid" and asks the
full validator otherwise, so the quick check must never accept what the full one rejects. On
values made of JSON types (what ``json.loads`` produces) the two must agree exactly; other
Python types may fail the quick check, and then the full validator decides. End to end,
``parse_event`` and ``new_event`` must behave the same with and without the quick check.
No timing here: ``bench/event_parse.py`` measures the speed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas import event_contracts as ec
from schemas.event_contracts import InvalidEvent, new_event, parse_event, role_of
from schemas.event_validation import (
    FullValidator,
    SchemaCheck,
    compile_quick_check,
    compile_schema,
    ecma_pattern,
)

SCHEMAS = [(event_type, version) for event_type, version, _ in ec.all_schemas()]
MEDIA_ITEM = {"media_id": "m1", "content_type": "image/jpeg", "uri": "gs://feedline-media/m/m1"}
FIELDS: dict[str, dict[str, Any]] = {
    "post_created": {"author_id": "u1", "post_id": "p1", "caption": "hi 🌅", "media": []},
    "post_deleted": {"author_id": "u1", "post_id": "p1"},
    "follow": {"follower_id": "u2", "followee_id": "u1"},
    "unfollow": {"follower_id": "u2", "followee_id": "u1"},
    "like": {"user_id": "u2", "post_id": "p1", "post_author_id": "u1"},
    "unlike": {"user_id": "u2", "post_id": "p1"},
    "comment": {"user_id": "u2", "post_id": "p1", "comment_id": "c1", "text": "nice!"},
    "comment_deleted": {"user_id": "u2", "post_id": "p1", "comment_id": "c1"},
}
ENVELOPE = ("event_id", "event_type", "event_time", "schema_version")
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


def valid_payload(event_type: str, media: int = 2) -> dict[str, Any]:
    data = {
        "event_id": "evt-00000001",
        "event_type": event_type,
        "event_time": "2024-05-06T07:08:09.123Z",
        "schema_version": 1,
        **copy.deepcopy(FIELDS[event_type]),
    }
    if event_type == "post_created":
        data["media"] = [{**MEDIA_ITEM, "media_id": f"m{i}"} for i in range(media)]
    return data


def checks(event_type: str, version: int = 1) -> SchemaCheck:
    return ec._validator(event_type, version)


def quick_says(check: SchemaCheck, data: Any) -> bool:
    assert check.quick is not None
    return bool(check.quick(data))


@contextmanager
def full_validator_only() -> Iterator[None]:
    """Run parse_event / new_event as before the quick check: the full validator only."""
    real = ec._validator

    def slow(event_type: str, version: int) -> SchemaCheck:
        return dataclasses.replace(real(event_type, version), quick=None)

    with mock.patch.object(ec, "_validator", slow):
        yield


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", call())
    except InvalidEvent as error:
        return ("invalid", error.reason, error.detail)
    except Exception as error:  # anything else must at least be the same error
        return ("error", type(error).__name__, str(error))


def both_ways(call: Callable[[], Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    fast = outcome(call)
    with full_validator_only():
        slow = outcome(call)
    return fast, slow


def parse_both_ways(event_type: str, data: dict[str, Any]) -> tuple[Any, ...]:
    message = json.dumps(data).encode()
    fast, slow = both_ways(lambda: parse_event(role_of(event_type), message))
    assert fast == slow
    return fast


def new_both_ways(event_type: str, data: dict[str, Any]) -> tuple[Any, ...]:
    fields = {name: value for name, value in data.items() if name not in ENVELOPE[:3]}
    event_id = data.get("event_id")
    if event_id is None:  # new_event would pick a random one: make both runs pick the same
        event_id = "evt-00000002"

    def build() -> Any:
        return new_event(event_type, event_id=event_id, event_time=WHEN, **fields)

    fast, slow = both_ways(build)
    assert fast == slow
    return fast


# --- the repository's schemas -----------------------------------------------------------


@pytest.mark.parametrize(("event_type", "version"), SCHEMAS)
def test_every_schema_has_a_quick_check(event_type: str, version: int) -> None:
    assert checks(event_type, version).quick is not None  # else it only has the slow path


@pytest.mark.parametrize("event_type", sorted(FIELDS))
def test_quick_check_accepts_valid_events(event_type: str) -> None:
    check = checks(event_type)
    data = valid_payload(event_type)
    assert quick_says(check, data) and check.full.is_valid(data)
    assert check.problem(data) is None


def test_every_event_type_has_sample_fields() -> None:
    assert sorted(FIELDS) == sorted({event_type for event_type, _ in SCHEMAS})


def test_valid_events_never_run_the_full_validator() -> None:
    with mock.patch.object(FullValidator, "iter_errors", side_effect=AssertionError("slow")):
        for event_type in FIELDS:
            data = valid_payload(event_type)
            assert parse_event(role_of(event_type), json.dumps(data)).to_dict() == data
            fields = {k: v for k, v in data.items() if k not in ENVELOPE}
            assert new_event(event_type, event_time=WHEN, **fields).event_type == event_type


def test_invalid_events_get_the_full_validators_error() -> None:
    error = parse_both_ways("like", {**valid_payload("like"), "user_id": "u1\n"})
    detail = '$.user_id: "u1\\n" does not match ^[A-Za-z0-9_-]{1,64}$'
    assert error == ("invalid", "invalid_field", detail)
    data = valid_payload("post_created")
    data["media"][1].pop("uri")
    data["views"] = 3
    assert parse_both_ways("post_created", data) == (
        "invalid",
        "missing_field",
        "$.media[1].uri is required (and 1 more problems)",
    )


def edge(event_type: str, path: tuple[Any, ...], value: Any, valid: bool) -> Any:
    """One hand-picked case: set ``path`` (delete it if value is ...) and expect ``valid``."""
    return pytest.param(event_type, path, value, valid, id=f"{event_type}-{path}-{value!r:.30}")


EDGES = [
    edge("like", ("user_id",), "u1\n", False),  # $ is end of string, not before a final \n
    edge("like", ("user_id",), "\nu1", False),
    edge("like", ("user_id",), "x" * 64, True),
    edge("like", ("user_id",), "x" * 65, False),
    edge("like", ("user_id",), "", False),
    edge("like", ("user_id",), "é", False),
    edge("like", ("post_author_id",), ..., True),  # optional
    edge("like", ("post_id",), ..., False),  # required
    edge("like", ("views",), 3, False),  # additionalProperties: false
    edge("like", ("schema_version",), True, False),  # a bool is not an integer
    edge("like", ("schema_version",), 1.0, True),  # draft 2020-12: 1.0 is the integer 1
    edge("like", ("schema_version",), 2, False),
    edge("like", ("schema_version",), "1", False),
    edge("like", ("event_type",), "unlike", False),
    edge("like", ("event_id",), "short", False),
    edge("like", ("event_time",), "2024-05-06T07:08:09.123Z\n", False),
    edge("like", ("event_time",), "2024-02-30T07:08:09Z", True),  # the pattern allows it
    edge("like", ("event_time",), "2024-05-06T07:08:09+02:00", True),
    edge("like", ("event_time",), None, False),
    edge("comment", ("text",), "", False),
    edge("comment", ("text",), "🌅" * 2200, True),  # maxLength counts code points
    edge("comment", ("text",), "🌅" * 2201, False),
    edge("post_created", ("caption",), "", True),
    edge("post_created", ("caption",), "x" * 2201, False),
    edge("post_created", ("media",), [], False),
    edge("post_created", ("media",), [MEDIA_ITEM] * 10, True),
    edge("post_created", ("media",), [MEDIA_ITEM] * 11, False),
    edge("post_created", ("media",), MEDIA_ITEM, False),
    edge("post_created", ("media", 0), "m1", False),
    edge("post_created", ("media", 0, "extra"), 1, False),
    edge("post_created", ("media", 1, "uri"), ..., False),
    edge("post_created", ("media", 0, "content_type"), "image/gif", False),
    edge("post_created", ("media", 0, "content_type"), "video/quicktime", True),
    edge("post_created", ("media", 0, "content_type"), ["image/png"], False),
    edge("post_created", ("media", 0, "uri"), "gs://b/m\n", False),
    edge("post_created", ("media", 0, "uri"), "gs://b/a b", False),
    edge("post_created", ("media", 0, "uri"), "x" * 2040 + "://abc", True),
    edge("post_created", ("media", 0, "uri"), "x" * 2043 + "://abc", False),
    edge("follow", ("followee_id",), "u2", True),  # x-distinct is checked after the schema
]


def mutated(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    *parents, last = path
    target = data
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(("event_type", "path", "value", "valid"), EDGES)
def test_edge_cases_agree(event_type: str, path: tuple[Any, ...], value: Any, valid: bool) -> None:
    check = checks(event_type)
    data = mutated(valid_payload(event_type), path, value)
    assert check.full.is_valid(data) is valid
    assert quick_says(check, data) is valid
    assert (check.problem(data) is None) is valid
    parse_both_ways(event_type, data)
    new_both_ways(event_type, data)


class Text(str):
    """A str subclass: valid for jsonschema, but not a type JSON decoding produces."""


@pytest.mark.parametrize(
    "value",
    [Text("u1"), Text("u1\n"), ("m",), b"u1", 1 + 0j],
    ids=["str", "bad", "tuple", "b", "j"],
)
def test_other_python_types_go_to_the_full_validator(value: Any) -> None:
    check = checks("like")
    data = {**valid_payload("like"), "user_id": value}
    assert not quick_says(check, data)  # not a JSON type: the full validator decides
    assert (check.problem(data) is None) is check.full.is_valid(data)
    new_both_ways("like", data)


def test_a_failing_quick_check_falls_back_to_the_full_validator() -> None:
    class Key(str):
        def __hash__(self) -> int:
            return hash(str(self))

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no comparing")

    item = {"media_id": "m1", "content_type": "image/png", Key("uri"): "gs://x/y"}
    check = checks("post_created")
    data = {**valid_payload("post_created"), "media": [item]}
    with pytest.raises(RuntimeError):
        check.full.is_valid(data)
    with pytest.raises(RuntimeError):
        check.problem(data)  # the same error as before the quick check existed


# --- property test: near-valid payloads, random mutations --------------------------------

ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
ODD_IDS = ["", "u1", "u1\n", "x" * 64, "x" * 65, "a b", "é", "\ud800", "evt-00000001", "evt-1"]
ODD_TEXTS = ["x" * 2200, "x" * 2201, "🌅" * 2200, "🌅" * 2201, "like", "unlike", "post_created"]
ODD_MEDIA = ["image/png", "image/gif", "gs://b/m", "gs://b/m\n", "GS://b/m", "gs://", "gs://b m"]
ODD_TIMES = ["2024-05-06T07:08:09Z", "2024-02-30T07:08:09Z", "2024-05-06T07:08:09.123+02:00"]
ODD_TIMES += ["2024-05-06T24:08:09Z", "2024-05-06 07:08:09Z", "2024-05-06T07:08:09Z\n"]
ODD_VALUES = [0, 1, 2, -1, 1.0, 1.5, True, False, None, [], {}, [MEDIA_ITEM], [MEDIA_ITEM] * 10]
ODD_VALUES += [[MEDIA_ITEM] * 11, [{**MEDIA_ITEM, "extra": 1}], [{"media_id": "m"}]]
interesting = st.sampled_from([*ODD_IDS, *ODD_TEXTS, *ODD_MEDIA, *ODD_TIMES, *ODD_VALUES])
suffixes = st.sampled_from(["\n", " ", "-", "_", "$", "é", "\ud800", "x" * 60, "Z"])


def draw_mutation(draw: st.DrawFn, data: dict[str, Any]) -> None:
    """Apply one random mutation to a field of ``data`` (or of one of its media items)."""
    target: Any = data
    if isinstance(data.get("media"), list) and data["media"] and draw(st.booleans()):
        index = draw(st.integers(0, len(data["media"]) - 1))
        if not isinstance(data["media"][index], dict):
            return
        target = data["media"][index]
    names = [*sorted(map(str, target)), "views", "extra", ""]
    name = draw(st.sampled_from(names))
    operation = draw(st.sampled_from(["delete", "set", "set_any", "append", "cut", "double"]))
    current = target.get(name)
    if operation == "delete":
        target.pop(name, None)
    elif operation == "set":
        target[name] = copy.deepcopy(draw(interesting))
    elif operation == "set_any":
        target[name] = draw(json_values)
    elif isinstance(current, str) and operation == "append":
        target[name] = current + draw(suffixes)
    elif isinstance(current, str) and operation == "cut":
        target[name] = current[:-1]
    elif isinstance(current, str | list):
        target[name] = current * 2


@st.composite
def near_valid_events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    event_type = draw(st.sampled_from(sorted(FIELDS)))
    data = valid_payload(event_type, media=draw(st.integers(1, 10)))
    for name, value in FIELDS[event_type].items():
        if name.endswith("_id") and isinstance(value, str):
            data[name] = draw(ids)
    for _ in range(draw(st.integers(0, 3))):
        draw_mutation(draw, data)
    return event_type, data


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid_events())
def test_quick_check_accepts_exactly_what_the_full_validator_accepts(
    case: tuple[str, dict[str, Any]],
) -> None:
    event_type, data = case
    check = checks(event_type)
    valid = check.full.is_valid(data)
    event("valid" if valid else "invalid")
    assert quick_says(check, data) is valid
    assert (check.problem(data) is None) is valid


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid_events())
def test_parse_and_new_event_behave_as_with_the_full_validator_only(
    case: tuple[str, dict[str, Any]],
) -> None:
    event_type, data = case
    event(parse_both_ways(event_type, data)[0])
    new_both_ways(event_type, data)


# --- the compiler on its own: every supported keyword --------------------------------------

SYNTHETIC = [
    {"type": "integer"},
    {"type": "number", "minimum": 0, "exclusiveMaximum": 10},
    {"type": ["integer", "null"], "maximum": 3, "exclusiveMinimum": -2},
    {"type": ["string", "boolean"], "minLength": 1, "maxLength": 3},
    {"enum": [1, "1", True, None, 2.5]},
    {"const": 0},
    {"const": False},
    {"type": "number", "enum": [1, 2, 3], "const": 2},
    {"maxLength": 2, "maxItems": 1, "minimum": 1, "required": ["a"]},
    {"pattern": "^a+$"},
    {"pattern": "b\\$"},
    {"type": "array", "items": False},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1},
    {"type": "object", "properties": {"a": True, "b": False, "c": {"type": "string"}}},
    {"type": "object", "additionalProperties": {"type": "integer"}, "required": ["a"]},
    {"type": "object", "properties": {"a": {"type": "null"}}, "additionalProperties": False},
    {"type": ["object", "array"], "items": {"enum": [None, 0]}},
    {"title": "annotations only", "format": "date-time", "x-custom": 1, "$comment": "c"},
]
UNSUPPORTED = [
    {"allOf": [{"type": "string"}]},
    {"$ref": "#/$defs/a", "$defs": {"a": {}}},
    {"type": "object", "patternProperties": {"^a": {}}},
    {"type": "array", "uniqueItems": True},
    {"const": [1]},
    {"enum": [{"a": 1}]},
    {"$schema": "http://json-schema.org/draft-07/schema#"},
    {"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}},
    {"type": "array", "prefixItems": [{}]},
    {"multipleOf": 2},
]


def test_schemas_outside_the_subset_get_no_quick_check() -> None:
    for schema in UNSUPPORTED:
        FullValidator.check_schema(schema)
        assert compile_quick_check(schema) is None, schema
        assert compile_schema(schema).quick is None
    for schema in SYNTHETIC:
        FullValidator.check_schema(schema)
        assert compile_quick_check(schema) is not None, schema


def test_ecma_pattern_reads_a_final_dollar_as_end_of_string() -> None:
    assert ecma_pattern("^a$").search("a") and not ecma_pattern("^a$").search("a\n")
    assert ecma_pattern("a\\$").search("a$") and not ecma_pattern("a\\$").search("a")
    assert ecma_pattern("a\\\\$").search("a\\") and not ecma_pattern("a\\\\$").search("a\\\n")


synthetic_values = st.one_of(
    json_values,
    st.sampled_from([0, 1, 1.0, -2, -1.5, 2.5, 3, 10, 10.0, True, False, None, "", "a", "1"]),
    st.sampled_from(["aa", "aa\n", "b$", "abcd", [], [1], [1, 2], [None], {}, {"a": 1}]),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), json_values, max_size=4),
    st.lists(st.integers(-3, 3) | st.none(), max_size=3),
)


QUICK_AND_FULL = [(compile_quick_check(schema), FullValidator(schema)) for schema in SYNTHETIC]


@settings(deadline=None, max_examples=600)
@given(synthetic_values)
def test_compiled_keywords_agree_with_jsonschema(value: Any) -> None:
    for schema, (quick, full) in zip(SYNTHETIC, QUICK_AND_FULL, strict=True):
        assert quick is not None
        assert bool(quick(value)) is full.is_valid(value), schema
