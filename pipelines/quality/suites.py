"""Expectation suites derived from the event JSON Schemas (no field list is written by hand).

Each topic role gets an *envelope* suite run over a whole partition (every record is a JSON
object of a known event type and schema version, ``event_id`` is unique, ``event_time``
parses and lies inside the partition's hour). Each ``(event_type, version)`` gets a suite run
over its own rows: required fields present, JSON types, ``const``/``enum`` values, patterns,
lengths, array sizes, no unknown fields and ``x-distinct`` fields; an array of objects (the
media of a post) gets a child suite over its items.

The frame builder (``pipelines.quality.frame``) adds the derived columns the suites read:
``__kind``, ``__schema``, ``__event_time_ms``, ``__type.<field>``, ``__len.<field>``,
``__unknown`` and each row's partition window (``__window_start_ms``, ``__window_end_ms``),
so one run per suite validates a whole time window of a topic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe

from schemas.event_contracts import EVENT_TYPES, all_schemas, load_schema

#: Column holding each row's stable id (its position in the partition after exact de-dup).
ROW = "__row"
#: Column holding the parent row of a child (array item) row.
PARENT = "__parent"
KIND = "__kind"
SCHEMA = "__schema"
EVENT_TIME_MS = "__event_time_ms"
UNKNOWN = "__unknown"
#: Each row's partition window, epoch milliseconds (start inclusive, end exclusive).
WINDOW_START = "__window_start_ms"
WINDOW_END = "__window_end_ms"
#: Fields whose values pick a record's schema suite (their ``const`` holds by selection; the
#: envelope suite checks the pair against the known schemas).
SELECTORS = ("event_type", "schema_version")
#: The derived type name of an absent field.
MISSING = "missing"


def type_column(name: str) -> str:
    """The derived column holding the JSON type name of ``name``'s values."""
    return f"__type.{name}"


def length_column(name: str) -> str:
    """The derived column holding the item count of array field ``name``."""
    return f"__len.{name}"


def distinct_column(names: list[str]) -> str:
    """The derived column telling whether the ``x-distinct`` fields ``names`` all differ."""
    return f"__distinct.{','.join(names)}"


def schema_key(event_type: str, version: int) -> str:
    """The ``__schema`` value (and suite name part) of one schema version."""
    return f"{event_type}.v{version}"


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as a Python regex: a final ``$`` means end of text."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + r"\Z"
    return pattern


@dataclass(frozen=True)
class SuiteSpec:
    """A suite and the rows it runs on."""

    name: str
    expectations: tuple[Any, ...]
    schema: str | None
    """``__schema`` value of its rows; None means every row (the envelope suite)."""
    child: str | None = None
    """For an array-item suite: the array field whose items are its rows."""

    def build(self) -> gx.ExpectationSuite:
        """A fresh GE suite holding copies of the expectations."""
        suite = gx.ExpectationSuite(name=self.name)
        for expectation in self.expectations:
            suite.add_expectation(copy.deepcopy(expectation))
        return suite


def _json_type(spec: dict[str, Any]) -> str | None:
    kind = spec.get("type")
    return kind if isinstance(kind, str) else None


def field_expectations(schema: dict[str, Any], *, item: bool = False) -> list[Any]:
    """Expectations for the properties of one object schema (an event or an array item)."""
    out: list[Any] = []
    required = set(schema.get("required", ()))
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    for name, spec in properties.items():
        if name == "event_time" and not item:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=EVENT_TIME_MS))
        if name in required:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
        kind = _json_type(spec)
        if kind is not None:
            allowed = [kind] if name in required else [kind, MISSING]
            out.append(gxe.ExpectColumnValuesToBeInSet(column=type_column(name),
                                                       value_set=allowed))
        if "const" in spec and (item or name not in SELECTORS):
            out.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=[spec["const"]]))
        if "enum" in spec:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(spec["enum"])))
        if "pattern" in spec:
            out.append(gxe.ExpectColumnValuesToMatchRegex(column=name,
                                                          regex=ecma_pattern(spec["pattern"])))
        if "minLength" in spec or "maxLength" in spec:
            out.append(gxe.ExpectColumnValueLengthsToBeBetween(
                column=name, min_value=spec.get("minLength"), max_value=spec.get("maxLength")))
        if kind == "array" and ("minItems" in spec or "maxItems" in spec):
            out.append(gxe.ExpectColumnValuesToBeBetween(
                column=length_column(name), min_value=spec.get("minItems"),
                max_value=spec.get("maxItems")))
    if schema.get("additionalProperties") is False:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=UNKNOWN, value_set=[""]))
    distinct = list(schema.get("x-distinct", ()))
    if len(distinct) > 1:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=distinct_column(distinct),
                                                   value_set=[True]))
    return out


def object_arrays(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Array properties whose items are objects: field name -> item schema."""
    found = {}
    for name, spec in schema.get("properties", {}).items():
        items = spec.get("items")
        is_object = isinstance(items, dict) and _json_type(items) == "object"
        if _json_type(spec) == "array" and is_object:
            found[name] = items
    return found


def envelope_suite(role: str) -> SuiteSpec:
    """The suite every record of a ``role`` topic partition must pass."""
    types = EVENT_TYPES[role]
    schemas = [schema_key(t, v) for t, v, _ in all_schemas() if t in types]
    expectations = (
        gxe.ExpectColumnValuesToBeInSet(column=KIND, value_set=["object"]),
        gxe.ExpectColumnValuesToNotBeNull(column="event_type"),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(types)),
        gxe.ExpectColumnValuesToBeInSet(column=SCHEMA, value_set=schemas),
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToNotBeNull(column=EVENT_TIME_MS),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=EVENT_TIME_MS, column_B=WINDOW_START, or_equal=True,
            ignore_row_if="either_value_is_missing"),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=WINDOW_END, column_B=EVENT_TIME_MS, or_equal=False,
            ignore_row_if="either_value_is_missing"),
    )
    return SuiteSpec(f"{role}.envelope", expectations, None)


def role_suites(role: str) -> list[SuiteSpec]:
    """The envelope suite, then one suite per schema version and per array of objects."""
    specs = [envelope_suite(role)]
    for event_type, version, _ in all_schemas():
        if event_type not in EVENT_TYPES[role]:
            continue
        schema = load_schema(event_type, version)
        key = schema_key(event_type, version)
        specs.append(SuiteSpec(key, tuple(field_expectations(schema)), key))
        for name, items in object_arrays(schema).items():
            item_expectations = [
                gxe.ExpectColumnValuesToBeInSet(column=KIND, value_set=["object"]),
                *field_expectations(items, item=True),
            ]
            specs.append(SuiteSpec(f"{key}.{name}[]", tuple(item_expectations), key, name))
    return specs


def properties_of(role: str) -> dict[str, set[str]]:
    """``__schema`` value -> the property names that schema allows."""
    return {
        schema_key(t, v): set(load_schema(t, v).get("properties", {}))
        for t, v, _ in all_schemas() if t in EVENT_TYPES[role]
    }
