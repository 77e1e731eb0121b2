"""Event contracts: parse, validate, build and encode the events on feedline's topics.

The JSON Schema files ``schemas/events/<event_type>.v<N>.json`` (draft 2020-12) are the single
source of truth: they are read on first use, one validator per (event type, version) is compiled
once, and one frozen dataclass per event type is generated from their properties (the union over
all versions). Custom top-level keys: ``x-topic`` (topic role), ``x-key`` (partition key field),
optional ``x-distinct`` (fields whose values must all differ). A ``pattern``'s trailing ``$``
means end of string as in ECMA-262 (Python's would accept a final newline); ``format`` is an
annotation, so ``event_time`` is enforced by its pattern plus a strict calendar parse.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from jsonschema import Draft202012Validator, ValidationError, validators

#: Largest accepted encoded event; bigger payloads go to the dead-letter topic as "oversized".
MAX_EVENT_BYTES = 64 * 1024
#: Folder of the schema files.
SCHEMA_DIR = Path(__file__).resolve().parent / "events"
#: The three event topics by role (the topic names themselves come from the settings).
TOPIC_ROLES = ("uploads", "follows", "engagements")
#: The field whose value is each topic's partition key.
KEY_FIELD: dict[str, str] = {
    "uploads": "author_id",
    "follows": "followee_id",
    "engagements": "post_id",
}
#: The event types each topic carries (``schemas.compat.check_repository`` checks the files agree).
EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "uploads": ("post_created", "post_deleted"),
    "follows": ("follow", "unfollow"),
    "engagements": ("like", "unlike", "comment", "comment_deleted"),
}
#: Every ``InvalidEvent.reason`` code, in the order ``parse_event`` checks them.
INVALID_EVENT_REASONS = tuple(
    "oversized unparseable not_an_object unknown_event_type wrong_topic unknown_schema_version"
    " missing_field invalid_field".split()
)

_ROLE_OF = {event_type: role for role, types in EVENT_TYPES.items() for event_type in types}
_FILE_NAME = re.compile(r"^([a-z][a-z0-9_]*)\.v([1-9][0-9]*)\.json$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GENERATED: dict[str, type[Record]] = {}
_GENERATING = threading.Lock()


class InvalidEvent(ValueError):
    """Broken event contract: ``reason`` is a stable code, ``detail`` names the field."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in INVALID_EVENT_REASONS:
            raise ValueError(f"unknown InvalidEvent reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.detail))


# --- the schema catalog -------------------------------------------------------------------


def all_schemas(directory: Path | None = None) -> list[tuple[str, int, Path]]:
    """Every schema file as ``(event_type, version, path)``, sorted; misnamed files are skipped."""
    found = []
    for path in (directory or SCHEMA_DIR).glob("*.json"):
        match = _FILE_NAME.match(path.name)
        if match:
            found.append((match[1], int(match[2]), path))
    return sorted(found)


@cache
def _catalog() -> dict[str, dict[int, dict[str, Any]]]:
    catalog: dict[str, dict[int, dict[str, Any]]] = {}
    for event_type, version, path in all_schemas():
        catalog.setdefault(event_type, {})[version] = json.loads(path.read_text("utf-8"))
    return catalog


def _versions(event_type: str) -> dict[int, dict[str, Any]]:
    versions = _catalog().get(event_type) if event_type in _ROLE_OF else None
    if not versions:
        raise InvalidEvent(
            "unknown_event_type", f"$.event_type: {_short(event_type)} is not a known event type"
        )
    return versions


def role_of(event_type: str) -> str:
    """Return the topic role carrying ``event_type``; raise ``InvalidEvent`` if it is unknown."""
    _versions(event_type)
    return _ROLE_OF[event_type]


def latest_version(event_type: str) -> int:
    """Return the newest schema version of ``event_type``."""
    return max(_versions(event_type))


def load_schema(event_type: str, version: int) -> dict[str, Any]:
    """Return a copy of the JSON Schema of ``event_type`` at ``version``."""
    schema = _versions(event_type).get(version)
    if schema is None:
        raise InvalidEvent(
            "unknown_schema_version", f"$.schema_version: {event_type} has no version {version!r}"
        )
    return copy.deepcopy(schema)


@cache
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a schema pattern so that a trailing ``$`` means end of string, as in ECMA-262."""
    stem = pattern[:-1]
    if pattern.endswith("$") and (len(stem) - len(stem.rstrip("\\"))) % 2 == 0:
        pattern = stem + r"\Z"
    return re.compile(pattern)


def _pattern_keyword(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{_short(instance)} does not match {pattern}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern_keyword})


@cache
def _validator(event_type: str, version: int) -> Any:
    schema = _versions(event_type)[version]
    _Validator.check_schema(schema)
    return _Validator(schema)


# --- the generated event classes ----------------------------------------------------------


class Record:
    """Base of the generated frozen dataclasses: events and their nested objects (media items)."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _converters: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: absent optional fields left out, records and tuples expanded."""
        plain = {}
        for name in self._fields:
            value = getattr(self, name)
            if value is not None:
                plain[name] = _plain(value)
        return plain

    if TYPE_CHECKING:  # fields are generated from the schemas, so static checkers can't see them

        def __getattr__(self, name: str) -> Any: ...


class Event(Record):
    """One event; the class of each event type is generated by ``event_class``."""

    event_id: str
    event_type: str
    event_time: str
    schema_version: int

    @property
    def role(self) -> str:
        """The topic role that carries this event."""
        return _ROLE_OF[self.event_type]

    @property
    def key(self) -> str:
        """The partition key: the value of the topic's ``KEY_FIELD``."""
        return cast(str, getattr(self, KEY_FIELD[self.role]))

    @property
    def event_time_dt(self) -> datetime:
        """``event_time`` as a timezone-aware datetime (microsecond precision)."""
        return datetime.fromisoformat(self.event_time)

    @property
    def event_time_ms(self) -> int:
        """``event_time`` in whole milliseconds since the Unix epoch (floored)."""
        return (self.event_time_dt - _EPOCH) // timedelta(milliseconds=1)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return value


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _build(cls: type[Record], data: Mapping[str, Any]) -> Any:
    convert = cls._converters
    return cls(**{name: convert[name](v) if name in convert else v for name, v in data.items()})


def _converter(class_name: str, shapes: list[dict[str, Any]]) -> Callable[[Any], Any] | None:
    """How to turn a validated JSON value of this shape (newest version first) into a field."""
    shape = shapes[0]
    if shape.get("type") == "object" and "properties" in shape:
        record = _record_class(class_name, shapes, Record)
        return lambda value: _build(record, value)
    if shape.get("type") == "array":
        items = [s["items"] for s in shapes if isinstance(s.get("items"), dict)]
        inner = _converter(class_name + "Item", items) if items else None
        if inner is None:
            return tuple
        return lambda value: tuple(inner(item) for item in value)
    return None


_PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


def _record_class(name: str, shapes: list[dict[str, Any]], base: type[Record]) -> type[Record]:
    properties: dict[str, list[dict[str, Any]]] = {}
    for shape in shapes:
        for field_name, field_shape in shape.get("properties", {}).items():
            properties.setdefault(field_name, []).append(field_shape)
    required = set.intersection(*(set(shape.get("required", ())) for shape in shapes))
    fields: list[tuple[str, Any, Any]] = []
    converters = {}
    for field_name, field_shapes in properties.items():
        convert = _converter(name + _camel(field_name), field_shapes)
        if convert is not None:
            converters[field_name] = convert
        kind = _PY_TYPES.get(str(field_shapes[0].get("type")), "tuple" if convert else "Any")
        if field_name in required:
            fields.append((field_name, kind, dataclasses.field()))
        else:
            fields.append((field_name, f"{kind} | None", dataclasses.field(default=None)))
    made = dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True, kw_only=True)
    cls = cast(type[Record], made)
    cls.__module__ = __name__
    cls._fields = tuple(properties)
    cls._converters = converters
    _GENERATED[name] = cls
    return cls


def event_class(event_type: str) -> type[Event]:
    """Return the generated frozen dataclass of ``event_type``, e.g. ``PostCreated``."""
    versions, name = _versions(event_type), _camel(event_type)
    if name not in _GENERATED:
        with _GENERATING:  # exactly one class per type, even when threads race to build it
            if name not in _GENERATED:
                shapes = [versions[version] for version in sorted(versions, reverse=True)]
                _record_class(name, shapes, Event)
    return cast(type[Event], _GENERATED[name])


if not TYPE_CHECKING:

    def __getattr__(name: str) -> type:
        """Expose generated classes by name, so pickle and ``from … import Like`` find them."""
        if name[:1].isupper():
            for event_type in _ROLE_OF:
                if event_type in _catalog():
                    event_class(event_type)
            if name in _GENERATED:
                return _GENERATED[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- parsing, building and encoding -------------------------------------------------------


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_JSON_KINDS = dict(bool="boolean", int="integer", float="number", str="string", list="array")
_JSON_KINDS.update(dict="object", NoneType="null")


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value).__name__, type(value).__name__)


def _path(parts: Iterable[Any]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [name for name, _ in pairs]
        duplicate = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _lone_surrogate_path(value: Any, parts: tuple[str | int, ...] = ()) -> str | None:
    """Find the first string holding an unpaired surrogate (not storable as UTF-8)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _path(parts)
        return None
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for part, item in items:
            found = _lone_surrogate_path(item, (*parts, part))
            if found:
                return found
    return None


_EXPLAIN: dict[str, Callable[[Any, Any], str]] = {
    "type": lambda want, got: f"must be of type {want}, not {_json_kind(got)}",
    "const": lambda want, got: f"must be {_short(want)}, not {_short(got)}",
    "enum": lambda want, got: f"{_short(got)} is not one of {', '.join(map(_short, want))}",
    "pattern": lambda want, got: f"{_short(got)} does not match {want}",
    "minLength": lambda want, got: f"must have at least {want} characters, has {len(got)}",
    "maxLength": lambda want, got: f"must have at most {want} characters, has {len(got)}",
    "minItems": lambda want, got: f"must have at least {want} items, has {len(got)}",
    "maxItems": lambda want, got: f"must have at most {want} items, has {len(got)}",
}


def _invalid(errors: list[ValidationError]) -> InvalidEvent:
    """Turn schema errors into one InvalidEvent: missing fields first, then the shallowest."""
    errors.sort(key=lambda e: (e.validator != "required", len(e.absolute_path), e.json_path))
    error, where = errors[0], _path(errors[0].absolute_path)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        return InvalidEvent("missing_field", f"{where}.{missing} is required{more}")
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = next(name for name in error.instance if name not in known)
        return InvalidEvent("invalid_field", f"{where}.{extra} is not an allowed field{more}")
    explain = _EXPLAIN.get(str(error.validator))
    message = explain(error.validator_value, error.instance) if explain else error.message[:200]
    return InvalidEvent("invalid_field", f"{where}: {message}{more}")


def _from_data(role: str, data: Any, *, check_text: bool) -> Event:
    """Check a decoded event against its contract and build its class instance."""
    if not isinstance(data, dict):
        raise InvalidEvent(
            "not_an_object", f"the event is a JSON {_json_kind(data)}, not an object"
        )
    for envelope_field in ("event_type", "schema_version"):
        if envelope_field not in data:
            raise InvalidEvent("missing_field", f"$.{envelope_field} is required")
    event_type, version = data["event_type"], data["schema_version"]
    if not isinstance(event_type, str):
        raise InvalidEvent(
            "invalid_field", f"$.event_type must be a string, not {_short(event_type)}"
        )
    versions = _versions(event_type)
    if _ROLE_OF[event_type] != role:
        raise InvalidEvent(
            "wrong_topic",
            f"$.event_type: {event_type} events belong on the {_ROLE_OF[event_type]} topic, "
            f"not {role}",
        )
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidEvent(
            "invalid_field", f"$.schema_version must be an integer, not {_short(version)}"
        )
    if version not in versions:
        raise InvalidEvent(
            "unknown_schema_version",
            f"$.schema_version: {event_type} has no version {version} (known: {sorted(versions)})",
        )
    errors = list(_validator(event_type, version).iter_errors(data))
    if errors:
        raise _invalid(errors)
    try:
        datetime.fromisoformat(data["event_time"])
    except ValueError as exc:
        where = f"$.event_time: {_short(data['event_time'])}"
        raise InvalidEvent("invalid_field", f"{where}: {exc}") from None
    distinct = [name for name in versions[version].get("x-distinct", ()) if name in data]
    for index, name in enumerate(distinct):
        for earlier in distinct[:index]:
            if data[earlier] == data[name]:
                raise InvalidEvent("invalid_field", f"$.{name} must differ from $.{earlier}")
    bad_text = _lone_surrogate_path(data) if check_text else None
    if bad_text:
        raise InvalidEvent("invalid_field", f"{bad_text} holds an unpaired UTF-16 surrogate")
    return cast(Event, _build(event_class(event_type), data))


def parse_event(role: str, payload: bytes | str) -> Event:
    """Decode and validate one message from the ``role`` topic; raises ``InvalidEvent``.

    Checks, in order: size, UTF-8 JSON (no duplicate keys, NaN or unpaired surrogates), a JSON
    object, a known event type carried by ``role``, a known schema version, the JSON Schema, the
    calendar date of ``event_time`` and the schema's ``x-distinct`` fields. An unknown ``role`` is
    a programming error and raises a plain ``ValueError``.
    """
    if role not in KEY_FIELD:
        raise ValueError(f"unknown topic role {role!r}; expected one of {TOPIC_ROLES}")
    if isinstance(payload, str):
        if len(payload) > MAX_EVENT_BYTES:  # each character is at least one byte
            raise InvalidEvent("oversized", f"more than {MAX_EVENT_BYTES} bytes")
        try:
            payload = payload.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEvent("unparseable", f"not encodable as UTF-8: {exc}") from None
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidEvent("oversized", f"{len(payload)} bytes, the limit is {MAX_EVENT_BYTES}")
    try:
        data = json.loads(payload, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSON and UTF-8 decode errors are ValueErrors
        raise InvalidEvent("unparseable", f"not valid UTF-8 JSON: {exc}") from None
    # JSON escapes can smuggle in unpaired surrogates, which no UTF-8 store accepts.
    return _from_data(role, data, check_text=b"\\ud" in payload or b"\\uD" in payload)


def encode_event(event: Event) -> bytes:
    """Encode as compact UTF-8 JSON with sorted keys; ``parse_event`` reads it back equal."""
    plain = event.to_dict()
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def format_event_time(moment: datetime) -> str:
    """Render an aware datetime as ``event_time``: UTC, millisecond precision, ``Z`` suffix."""
    if moment.utcoffset() is None:
        raise InvalidEvent("invalid_field", "$.event_time must be a timezone-aware datetime")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def new_event(
    event_type: str,
    *,
    event_id: str | None = None,
    event_time: datetime | None = None,
    **fields: Any,
) -> Event:
    """Build and validate a new event of the latest schema version; raises ``InvalidEvent``.

    ``event_id`` defaults to a random uuid4 hex, ``event_time`` to now (UTC, milliseconds).
    Fields given as ``None`` are left out; nested values may be dicts or generated records; a
    ``schema_version`` field overrides the latest version (to produce an older one).
    """
    role = role_of(event_type)
    data: dict[str, Any] = {
        "event_id": uuid.uuid4().hex if event_id is None else event_id,
        "event_type": event_type,
        "event_time": format_event_time(datetime.now(UTC) if event_time is None else event_time),
        "schema_version": latest_version(event_type),
    }
    data.update((name, _plain(value)) for name, value in fields.items() if value is not None)
    return _from_data(role, data, check_text=True)
