"""Archive records as pandas frames for the expectation suites.

One row per record after dropping byte-identical repeats (a re-archived batch), the
schema's properties as columns plus the derived columns the suites read (see
``pipelines.quality.suites``). Values that are JSON objects or arrays in a scalar field are
kept as their JSON text so set and uniqueness checks can hash them; their ``__type.*`` column
still says what they were. Rows carry their partition's window so a whole time window of a
topic can be validated in one run per suite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from feedline.archive.archiver import RAW_ENVELOPE_KEY
from feedline.archive.layout import Partition
from pipelines.quality.suites import (
    EVENT_TIME_MS,
    KIND,
    MISSING,
    PARENT,
    ROW,
    SCHEMA,
    UNKNOWN,
    WINDOW_END,
    WINDOW_START,
    distinct_column,
    length_column,
    object_arrays,
    properties_of,
    type_column,
)
from schemas.event_contracts import EVENT_TYPES, all_schemas, load_schema

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number",
                                bool: "boolean", list: "array", dict: "object",
                                type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON Schema type name of a decoded JSON value."""
    return _JSON_TYPES.get(type(value), "unknown")


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the Unix epoch (floored)."""
    return (moment - _EPOCH) // _MS


def event_time_ms(value: Any) -> int | None:
    """``event_time`` as epoch milliseconds, or None unless it is an offset-carrying ISO time."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return epoch_ms(moment) if moment.utcoffset() is not None else None


@dataclass(slots=True)
class Source:
    """Where one validated row came from."""

    partition: Partition
    object_name: str
    line: bytes


@dataclass
class RecordFrames:
    """A topic's records as the frames its suites validate."""

    role: str
    sources: list[Source]
    """Indexed by ``__row``."""
    frame: pd.DataFrame
    children: dict[str, pd.DataFrame]
    """Array field -> one row per item, ``__parent`` pointing at the record's ``__row``."""
    exact_duplicates: dict[Partition, int] = field(default_factory=dict)


class _Columns:
    """Property values, their JSON types and unknown-field lists, filled record by record."""

    def __init__(self, props: set[str], arrays: set[str]) -> None:
        self.values: dict[str, list[Any]] = {p: [] for p in props}
        self.types: dict[str, list[str]] = {p: [] for p in props}
        self.lengths: dict[str, list[int | None]] = {p: [] for p in arrays}
        self.unknown: list[str] = []

    def add(self, record: dict[str, Any], allowed: set[str] | None) -> None:
        """Append one record (``allowed``: its schema's properties, None when unknown)."""
        for values in self.values.values():
            values.append(None)
        for kinds in self.types.values():
            kinds.append(MISSING)
        for lengths in self.lengths.values():
            lengths.append(None)
        extra: list[str] = []
        for key, value in record.items():
            column = self.values.get(key)
            if column is None or (allowed is not None and key not in allowed):
                extra.append(key)
                if column is None:
                    continue
            kind = _JSON_TYPES.get(type(value), "unknown")
            self.types[key][-1] = kind
            if kind in ("array", "object"):
                if key in self.lengths and kind == "array":
                    self.lengths[key][-1] = len(value)
                    column[-1] = value
                else:
                    column[-1] = json.dumps(value, sort_keys=True)
            else:
                column[-1] = value
        self.unknown.append(",".join(sorted(extra)))

    def as_dict(self) -> dict[str, list[Any]]:
        """Column name -> values."""
        out: dict[str, list[Any]] = dict(self.values)
        out.update({type_column(p): t for p, t in self.types.items()})
        out.update({length_column(p): v for p, v in self.lengths.items()})
        out[UNKNOWN] = self.unknown
        return out


def _schemas_of(role: str) -> dict[str, dict[str, Any]]:
    return {f"{t}.v{v}": load_schema(t, v) for t, v, _ in all_schemas()
            if t in EVENT_TYPES[role]}


def build_frames(role: str, rows: Iterable[tuple[Partition, str, bytes]]) -> RecordFrames:
    """Frames of ``(partition, object name, line)`` rows of one topic role."""
    schemas = _schemas_of(role)
    allowed = properties_of(role)
    props = {"event_type", "schema_version", "event_id", "event_time"}
    for names in allowed.values():
        props |= names
    arrays: dict[str, dict[str, dict[str, Any]]] = {}  # array field -> schema key -> item schema
    for key, schema in schemas.items():
        for name, items in object_arrays(schema).items():
            arrays.setdefault(name, {})[key] = items

    seen: dict[Partition, set[bytes]] = {}
    duplicates: dict[Partition, int] = {}
    sources: list[Source] = []
    kinds: list[str] = []
    schema_keys: list[str] = []
    builder = _Columns(props, set(arrays))
    for partition, object_name, line in rows:
        lines = seen.setdefault(partition, set())
        if line in lines:
            duplicates[partition] = duplicates.get(partition, 0) + 1
            continue
        lines.add(line)
        sources.append(Source(partition, object_name, line))
        try:
            record = json.loads(line)
            kind = "object" if isinstance(record, dict) else "not_an_object"
        except (ValueError, RecursionError):
            record, kind = None, "unparseable"
        if kind == "object" and RAW_ENVELOPE_KEY in record:
            kind = "unparseable"  # the archiver wrapped bytes that were not one JSON object
        if kind != "object":
            record = {}
        key = f"{record.get('event_type')}.v{record.get('schema_version')!r}" if record else ""
        builder.add(record, allowed.get(key))
        kinds.append(kind)
        schema_keys.append(key)
    del seen
    columns = builder.as_dict()
    del builder
    columns[ROW] = list(range(len(kinds)))
    columns[KIND] = kinds
    columns[SCHEMA] = schema_keys
    columns[EVENT_TIME_MS] = [event_time_ms(v) for v in columns["event_time"]]
    columns[WINDOW_START] = [epoch_ms(s.partition.start) for s in sources]
    columns[WINDOW_END] = [epoch_ms(s.partition.end) for s in sources]
    frame = pd.DataFrame(columns)
    frame[EVENT_TIME_MS] = frame[EVENT_TIME_MS].astype("float64")  # NaN when missing
    for schema in schemas.values():
        distinct = list(schema.get("x-distinct", ()))
        if len(distinct) > 1:
            frame[distinct_column(distinct)] = _all_differ(frame, distinct)
    children = {name: _child_frame(frame, name, items) for name, items in arrays.items()}
    return RecordFrames(role, sources, frame, children, duplicates)


def _all_differ(frame: pd.DataFrame, names: list[str]) -> pd.Series:
    """Row-wise: no two of the columns ``names`` hold the same non-null value."""
    differ = pd.Series(True, index=frame.index)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            same = frame[first].notna() & (frame[first] == frame[second])
            differ &= ~same
    return differ


def _child_frame(frame: pd.DataFrame, name: str,
                 items: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per item of array field ``name``; ``items``: its item schema per schema key.

    An item's unknown fields are those its own record's schema version does not allow (a
    version 1 media item carrying a version 2 field is flagged); its array fields get their
    ``__len`` column.
    """
    props = {key: set(schema.get("properties", {})) for key, schema in items.items()}
    every = set().union(*props.values())
    arrays = {field for schema in items.values()
              for field, spec in schema.get("properties", {}).items()
              if isinstance(spec, dict) and spec.get("type") == "array"}
    parents: list[int] = []
    records: list[dict[str, Any]] = []
    allowed: list[set[str]] = []
    kinds: list[str] = []
    for row, value, key in zip(frame[ROW], frame[name], frame[SCHEMA], strict=True):
        if not isinstance(value, list):
            continue
        for item in value:
            parents.append(row)
            is_object = isinstance(item, dict)
            records.append(item if is_object else {})
            allowed.append(props.get(key, every))
            kinds.append("object" if is_object else json_type(item))
    builder = _Columns(every, arrays)
    for record, fields in zip(records, allowed, strict=True):
        builder.add(record, fields)
    columns = builder.as_dict()
    columns[PARENT] = parents
    columns[ROW] = list(range(len(records)))
    columns[KIND] = kinds
    return pd.DataFrame(columns)
