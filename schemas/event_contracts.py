"""Event contracts: parse, validate, build and encode the events on feedline's topics.

The JSON Schema files ``schemas/events/<event_type>.v<N>.json`` (draft 2020-12) are the single
source of truth: they are read on first use, one validator per (event type, version) is compiled
once, and one frozen dataclass per event type is generated from their properties (the union over
all versions). Custom top-level keys: ``x-topic`` (topic role), ``x-key`` (partition key field),
optional ``x-distinct`` (fields whose values must all differ). A ``pattern``'s trailing ``$``
means end of string as in ECMA-262 (Python's would accept a final newline); ``format`` is an
annotation, so ``event_time`` is enforced by its pattern plus a strict calendar parse.

The validators live in ``schemas.event_validation`` (a quick check compiled from each schema
passes valid events; the full ``jsonschema`` validator judges and words the rest), the class
generation in ``schemas.event_models``; the names callers use are all importable from here.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from schemas.event_models import GENERATED as _GENERATED
from schemas.event_models import SCALAR_TYPES, Record, camel, record_class
from schemas.event_models import build as _build
from schemas.event_models import to_plain as _plain
from schemas.event_validation import SchemaCheck, compile_schema
from schemas.event_validation import json_kind as _json_kind
from schemas.event_validation import json_path as _path
from schemas.event_validation import short as _short

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
_GENERATING = threading.Lock()
_CLASS_OF: dict[str, type[Event]] = {}  # event_class by event type, once generated


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
def _validator(event_type: str, version: int) -> SchemaCheck:
    """The compiled checks (quick and full) of one schema version, built once."""
    return compile_schema(_versions(event_type)[version])


# --- the generated event classes ----------------------------------------------------------


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
        return epoch_ms(self.event_time)


def epoch_ms(event_time: str) -> int:
    """An offset-carrying ISO 8601 time in whole milliseconds since the Unix epoch (floored).

    ``ValueError`` when it is not one (no offset, or no such time).
    """
    moment = datetime.fromisoformat(event_time)
    if moment.utcoffset() is None:
        raise ValueError(f"{event_time!r} carries no UTC offset")
    return moment_ms(moment)


def moment_ms(moment: datetime) -> int:
    """An aware ``datetime`` in whole milliseconds since the Unix epoch (floored)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def event_class(event_type: str) -> type[Event]:
    """Return the generated frozen dataclass of ``event_type``, e.g. ``PostCreated``."""
    cls = _CLASS_OF.get(event_type)
    if cls is None:
        versions, name = _versions(event_type), camel(event_type)
        if name not in _GENERATED:
            with _GENERATING:  # exactly one class per type, even when threads race to build it
                if name not in _GENERATED:
                    shapes = [versions[version] for version in sorted(versions, reverse=True)]
                    record_class(name, shapes, Event)
        cls = _CLASS_OF[event_type] = cast(type[Event], _GENERATED[name])
    return cls


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


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [name for name, _ in pairs]
        duplicate = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# The decoder json.loads(payload, object_pairs_hook=..., parse_constant=...) builds per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant)


_NO_TEXT = frozenset({int, float, bool, type(None)})


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
            kind = type(item)
            if kind in _NO_TEXT or (kind is str and item.isascii()):
                continue  # surely storable: skip the call
            found = _lone_surrogate_path(item, (*parts, part))
            if found:
                return found
    return None


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
    problem = _validator(event_type, version).problem(data)
    if problem:
        raise InvalidEvent(*problem)
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
        if type(payload) is bytes:  # what json.loads does with bytes, minus a decoder per call
            data = _DECODER.decode(payload.decode(json.detect_encoding(payload), "surrogatepass"))
        else:
            data = json.loads(
                payload, object_pairs_hook=_unique_keys, parse_constant=_reject_constant
            )
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
    versions = _versions(event_type)
    data: dict[str, Any] = {
        "event_id": uuid.uuid4().hex if event_id is None else event_id,
        "event_type": event_type,
        "event_time": format_event_time(datetime.now(UTC) if event_time is None else event_time),
        "schema_version": max(versions),
    }
    for name, value in fields.items():
        if value is not None:
            data[name] = value if type(value) in SCALAR_TYPES else _plain(value)
    return _from_data(_ROLE_OF[event_type], data, check_text=True)
