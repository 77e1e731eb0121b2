"""Backward-compatibility checks between consecutive versions of an event schema.

Backward compatible means a consumer validating with the new version still accepts every event
that was valid under the old one: rebuilds replay the archive with today's code. So a new
version may add optional properties and relax constraints (widen a type or an enum, loosen a
bound, drop a format). It may not remove a property (required ones never; optional ones not
while the object is closed by ``additionalProperties: false``), retype a property, narrow an
enum, change a const, format or pattern, tighten a bound, make an optional property required or
add a required one. Nested objects and array items are compared the same way; any other keyword
(``x-topic``, ``x-key``, ``x-distinct``, combinators, ...) must stay unchanged. The top-level
``schema_version`` const is the one const expected to change: it must grow.

Run ``python -m schemas.compat`` to check ``schemas/events/`` (exit status 1 on problems), or
``python -m schemas.compat OLD.json NEW.json`` to compare two files.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from schemas.event_contracts import EVENT_TYPES, KEY_FIELD, SCHEMA_DIR, all_schemas

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_FIELDS = ("event_id", "event_type", "event_time", "schema_version")

_ANNOTATIONS = frozenset(
    {"title", "description", "$comment", "examples", "default", "deprecated", "$id"}
    | {"readOnly", "writeOnly"}
)
_LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_CHECKED = frozenset(
    {"type", "enum", "const", "format", "pattern", "uniqueItems", "items"}
    | {"properties", "required", "additionalProperties", *_LOWER_BOUNDS, *_UPPER_BOUNDS}
)
_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)


def _types(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    types = {declared} if isinstance(declared, str) else set(declared)
    return types | {"integer"} if "number" in types else types


def _compare_values(old: dict[str, Any], new: dict[str, Any], where: str) -> list[str]:
    """Problems in the keywords that constrain the value itself (not its children)."""
    problems = []
    old_types, new_types = _types(old), _types(new)
    if new_types is not None and (old_types is None or not old_types <= new_types):
        problems.append(
            f"{where}: type changed from {_show(old.get('type', 'any'))} to {_show(new['type'])}"
        )
    if "enum" in new:
        dropped = [v for v in old.get("enum", ()) if v not in new["enum"]]
        if "enum" not in old or dropped:
            lost = ", ".join(map(_show, dropped)) if dropped else "values it allowed before"
            problems.append(f"{where}: enum narrowed; it no longer allows {lost}")
    for keyword in ("const", "format", "pattern"):
        before = old.get(keyword, _ABSENT)
        if keyword in new and before != new[keyword]:
            change = f"from {_show(before)} to {_show(new[keyword])}"
            problems.append(f"{where}: {keyword} changed {change}")
    for keyword in (*_LOWER_BOUNDS, *_UPPER_BOUNDS):
        if keyword not in new:
            continue
        before = old.get(keyword, _ABSENT)
        if before is _ABSENT:
            tighter = True
        else:
            tighter = new[keyword] > before if keyword in _LOWER_BOUNDS else new[keyword] < before
        if tighter:
            problems.append(f"{where}: {keyword} tightened from {_show(before)} to {new[keyword]}")
    if new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
        problems.append(f"{where}: uniqueItems added")
    return problems


def _compare_properties(old: dict[str, Any], new: dict[str, Any], where: str) -> list[str]:
    """Problems in an object's properties, recursively."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    for name, old_prop in old_props.items():
        if name in new_props:
            problems += _compare(old_prop, new_props[name], f"{where}.{name}")
        elif name in old_required:
            problems.append(f"{where}.{name}: required property removed")
        elif new.get("additionalProperties") is False:
            problems.append(
                f"{where}.{name}: optional property removed while additionalProperties is false "
                "(old events that carry it would be rejected)"
            )
    for name in sorted(new_required - old_required):
        change = "optional property made required" if name in old_props else "new required property"
        problems.append(f"{where}.{name}: {change}")
    return problems


def _compare(old: Any, new: Any, where: str) -> list[str]:
    """Every reason why ``new`` rejects something ``old`` accepted, at path ``where``."""
    if isinstance(old, bool) or isinstance(new, bool):
        if old != new and new is not True and old is not False:
            return [f"{where}: schema changed from {_show(old)} to {_show(new)}"]
        return []
    problems = _compare_values(old, new, where) + _compare_properties(old, new, where)
    old_extra, new_extra = (
        old.get("additionalProperties", True),
        new.get("additionalProperties", True),
    )
    for problem in _compare(old_extra, new_extra, where):
        problems.append(problem.replace("schema changed", "additionalProperties changed", 1))
    if "items" in old or "items" in new:
        problems += _compare(old.get("items", True), new.get("items", True), f"{where}[*]")
    for keyword in sorted((old.keys() | new.keys()) - _CHECKED - _ANNOTATIONS):
        before, after = old.get(keyword, _ABSENT), new.get(keyword, _ABSENT)
        if before != after:
            problems.append(
                f"{where}: {keyword} changed from {_show(before)} to {_show(after)} "
                "(only the listed keywords may change; this one must stay as it was)"
            )
    return problems


def _split_version(schema: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Return the schema without its top-level ``schema_version`` const, and that const."""
    properties = schema.get("properties", {})
    version_schema = properties.get("schema_version")
    if not isinstance(version_schema, dict) or "const" not in version_schema:
        return schema, None
    version = version_schema["const"]
    stripped = {key: value for key, value in version_schema.items() if key != "const"}
    return {**schema, "properties": {**properties, "schema_version": stripped}}, version


def check_backward_compatible(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """List why schema ``new`` cannot follow ``old`` (empty list: compatible).

    The rules are in the module docstring; each problem names the field by its JSON path.
    """
    old_bare, old_version = _split_version(old)
    new_bare, new_version = _split_version(new)
    if isinstance(old_version, int) and isinstance(new_version, int):
        problems = _compare(old_bare, new_bare, "$")
        if new_version <= old_version:
            problems.append(
                f"$.schema_version: const must grow, was {old_version}, is {new_version}"
            )
        return problems
    return _compare(old, new, "$")


def _undescribed(schema: dict[str, Any], where: str) -> list[str]:
    """Paths of properties (at any depth) that have no description."""
    missing = []
    for name, prop in schema.get("properties", {}).items():
        if isinstance(prop, dict):
            if not prop.get("description"):
                missing.append(f"{where}.{name}")
            missing += _undescribed(prop, f"{where}.{name}")
            if isinstance(prop.get("items"), dict):
                missing += _undescribed(prop["items"], f"{where}.{name}[*]")
    return missing


def lint_schema(event_type: str, version: int, schema: dict[str, Any]) -> list[str]:
    """List what is wrong with one event schema file's content (empty list: fine)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [f"not a valid draft 2020-12 schema: {exc.message}"]
    problems = []
    role = schema.get("x-topic")
    properties, required = schema.get("properties", {}), schema.get("required", [])
    expected: list[tuple[str, Any, Any]] = [
        ("$schema", schema.get("$schema"), DRAFT_2020_12),
        ("$id", str(schema.get("$id", "")).rsplit("/", 1)[-1], f"{event_type}.v{version}.json"),
        ("type", schema.get("type"), "object"),
        ("additionalProperties", schema.get("additionalProperties"), False),
        ("x-topic", event_type in EVENT_TYPES.get(str(role), ()), True),
        ("x-key", schema.get("x-key"), KEY_FIELD.get(str(role))),
        ("event_type const", properties.get("event_type", {}).get("const"), event_type),
        ("schema_version const", properties.get("schema_version", {}).get("const"), version),
    ]
    for what, actual, wanted in expected:
        if actual != wanted:
            problems.append(f"{what} is wrong: expected {_show(wanted)}, found {_show(actual)}")
    for field in (*ENVELOPE_FIELDS, schema.get("x-key")):
        if field not in required:
            problems.append(f"{field} must be required")
    for field in schema.get("x-distinct", ()):
        if field not in properties:
            problems.append(f"x-distinct names {field!r}, which is not a property")
    problems += [f"{where} has no description" for where in _undescribed(schema, "$")]
    if not schema.get("title") or not schema.get("description"):
        problems.append("title and description are required")
    return problems


def check_repository(directory: Path | None = None) -> list[str]:
    """Lint every schema file and check every consecutive version pair (empty list: all fine)."""
    folder = directory or SCHEMA_DIR
    files = all_schemas(folder)
    named = {path.name for _, _, path in files}
    problems = [
        f"{path.name}: not named <event_type>.v<N>.json, so it is ignored"
        for path in sorted(folder.glob("*.json"))
        if path.name not in named
    ]
    by_type: dict[str, dict[int, dict[str, Any]]] = {}
    for event_type, version, path in files:
        try:
            schema = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: unreadable: {exc}")
            continue
        if not isinstance(schema, dict):
            problems.append(f"{path.name}: not a JSON object")
            continue
        problems += [
            f"{path.name}: {problem}" for problem in lint_schema(event_type, version, schema)
        ]
        by_type.setdefault(event_type, {})[version] = schema
    declared = {event_type for types in EVENT_TYPES.values() for event_type in types}
    for event_type in sorted(declared - by_type.keys()):
        problems.append(f"{event_type}: declared in EVENT_TYPES but has no schema file")
    for event_type, versions in sorted(by_type.items()):
        numbers = sorted(versions)
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(f"{event_type}: versions {numbers} do not run 1..N without gaps")
        for old, new in itertools.pairwise(numbers):
            pair = f"{event_type} v{old} -> v{new}"
            changes = check_backward_compatible(versions[old], versions[new])
            problems += [f"{pair}: {problem}" for problem in changes]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Check the schema folder, or two schema files; print problems, return 1 if there are any."""
    parser = argparse.ArgumentParser(
        prog="python -m schemas.compat",
        description="Check that event schema versions stay backward compatible.",
    )
    parser.add_argument("--dir", type=Path, help=f"schema folder (default: {SCHEMA_DIR})")
    parser.add_argument("files", nargs="*", type=Path, help="OLD.json NEW.json to compare")
    args = parser.parse_args(argv)
    if args.files:
        if len(args.files) != 2:
            parser.error("give exactly two files: OLD.json NEW.json")
        old, new = (json.loads(path.read_text("utf-8")) for path in args.files)
        problems = check_backward_compatible(old, new)
    else:
        problems = check_repository(args.dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} compatibility problem(s)", file=sys.stderr)
        return 1
    print("ok: event schemas are backward compatible")
    return 0


if __name__ == "__main__":
    sys.exit(main())
