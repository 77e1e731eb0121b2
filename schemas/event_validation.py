"""Checking decoded events against their JSON Schema: a compiled quick check, then the full one.

``compile_schema`` turns one event schema into a ``SchemaCheck`` holding two validators of the
same schema: the full ``jsonschema`` one (draft 2020-12) and a quick check compiled once into
plain Python closures. ``SchemaCheck.problem`` runs the quick check and trusts a pass; on a
fail it runs the full validator, which decides and words the error. So the quick check must
never accept what the full validator rejects, and it does not: on values made only of the
types JSON decoding produces (dict, list, str, int, float, bool, None) the two agree exactly,
and any other Python type (a ``str`` subclass, a tuple, ...) fails the quick check and is left
to the full validator (``tests/unit/test_event_validation_speed_parity.py`` checks both).

Both read a ``pattern``'s trailing ``$`` as end of string, as in ECMA-262 (Python's would also
accept a final newline). ``format`` is an annotation in both. The quick check covers the
keywords event schemas use (``type const enum pattern minLength maxLength minItems maxItems
items required properties additionalProperties minimum maximum exclusiveMinimum
exclusiveMaximum``, annotations and ``x-`` keys); a schema using any other keyword gets no
quick check and always goes through the full validator.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

#: A compiled quick check: truthy means valid for sure, falsy means ask the full validator.
Check = Callable[[Any], Any]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
_ANNOTATIONS = frozenset(
    {"$id", "$comment", "title", "description", "examples", "default", "deprecated", "format"}
    | {"readOnly", "writeOnly"}
)
_COMPILED = frozenset(
    {"type", "const", "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems"}
    | {"items", "required", "properties", "additionalProperties", "minimum", "maximum"}
    | {"exclusiveMinimum", "exclusiveMaximum"}
)
#: The exact Python types JSON decoding gives each JSON Schema type (``integer``: int, and the
#: floats with an integral value, which jsonschema's draft 2020-12 counts as integers).
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int, float),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


# --- messages -----------------------------------------------------------------------------


def short(value: Any, limit: int = 60) -> str:
    """A value as JSON for error messages, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_JSON_KINDS = dict(bool="boolean", int="integer", float="number", str="string", list="array")
_JSON_KINDS.update(dict="object", NoneType="null")


def json_kind(value: Any) -> str:
    """The JSON name of a value's type (the Python name for non-JSON values)."""
    return _JSON_KINDS.get(type(value).__name__, type(value).__name__)


def json_path(parts: Iterable[Any]) -> str:
    """A JSONPath like ``$.media[1].uri`` from path parts."""
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


_EXPLAIN: dict[str, Callable[[Any, Any], str]] = {
    "type": lambda want, got: f"must be of type {want}, not {json_kind(got)}",
    "const": lambda want, got: f"must be {short(want)}, not {short(got)}",
    "enum": lambda want, got: f"{short(got)} is not one of {', '.join(map(short, want))}",
    "pattern": lambda want, got: f"{short(got)} does not match {want}",
    "minLength": lambda want, got: f"must have at least {want} characters, has {len(got)}",
    "maxLength": lambda want, got: f"must have at most {want} characters, has {len(got)}",
    "minItems": lambda want, got: f"must have at least {want} items, has {len(got)}",
    "maxItems": lambda want, got: f"must have at most {want} items, has {len(got)}",
}


def explain(errors: list[ValidationError]) -> tuple[str, str]:
    """Schema errors as one ``(reason, detail)``: missing fields first, then the shallowest."""
    errors.sort(key=lambda e: (e.validator != "required", len(e.absolute_path), e.json_path))
    error, where = errors[0], json_path(errors[0].absolute_path)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if error.validator == "required":
        missing = next(name for name in error.validator_value if name not in error.instance)
        return "missing_field", f"{where}.{missing} is required{more}"
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = next(name for name in error.instance if name not in known)
        return "invalid_field", f"{where}.{extra} is not an allowed field{more}"
    explainer = _EXPLAIN.get(str(error.validator))
    message = explainer(error.validator_value, error.instance) if explainer else error.message[:200]
    return "invalid_field", f"{where}: {message}{more}"


# --- the full validator -------------------------------------------------------------------


@cache
def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a schema pattern so that a trailing ``$`` means end of string, as in ECMA-262."""
    stem = pattern[:-1]
    if pattern.endswith("$") and (len(stem) - len(stem.rstrip("\\"))) % 2 == 0:
        pattern = stem + r"\Z"
    return re.compile(pattern)


def _pattern_keyword(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{short(instance)} does not match {pattern}")


#: Draft 2020-12 with the ECMA-262 reading of ``pattern``; formats are not checked.
FullValidator = validators.extend(Draft202012Validator, {"pattern": _pattern_keyword})


# --- the quick check ----------------------------------------------------------------------


class _Unsupported(Exception):
    """The schema uses something the quick check does not compile."""


def _accept(value: Any) -> bool:
    return True


def _reject(value: Any) -> bool:
    return False


def _all(tests: list[Check]) -> Check:
    if not tests:
        return _accept
    if len(tests) == 1:
        return tests[0]
    first, rest = tests[0], _all(tests[1:])
    return lambda value: first(value) and rest(value)


_SCALAR_TYPES = (str, int, float, bool, type(None))
#: Which values of a const or enum an instance of each exact type can equal, as jsonschema's
#: ``equal`` sees it: 1 == 1.0 but True != 1 and "1" != 1.
_COMPARABLE: dict[type, tuple[type, ...]] = {
    str: (str,),
    int: (int, float),
    float: (int, float),
    bool: (bool,),
    type(None): (type(None),),
}


def _allowed_values(schema: dict[str, Any]) -> dict[type, frozenset[Any]] | None:
    """Per exact type, the values ``const`` and ``enum`` both allow (None if neither is set)."""
    lists = [[schema["const"]]] if "const" in schema else []
    if "enum" in schema:
        lists.append(list(schema["enum"]))
    if not lists:
        return None
    if not all(type(value) in _SCALAR_TYPES for values in lists for value in values):
        raise _Unsupported("a const or enum value that is an array or an object")
    allowed: dict[type, frozenset[Any]] = {}
    for kind, comparable in _COMPARABLE.items():
        sets = [frozenset(v for v in values if type(v) in comparable) for values in lists]
        allowed[kind] = frozenset.intersection(*sets)
    return allowed


def _length_test(schema: dict[str, Any], minimum: str, maximum: str) -> list[Check]:
    low, high = schema.get(minimum), schema.get(maximum)
    if high is None:
        return [] if low is None else [lambda value: not len(value) < low]
    if low is None:
        return [lambda value: not len(value) > high]
    return [lambda value: not len(value) < low and not len(value) > high]


def _string_tests(schema: dict[str, Any]) -> list[Check]:
    tests = _length_test(schema, "minLength", "maxLength")
    if "pattern" in schema:
        try:
            tests.append(ecma_pattern(schema["pattern"]).search)  # a match is truthy
        except (re.error, TypeError) as exc:
            raise _Unsupported(f"pattern: {exc}") from None
    return tests


def _number_tests(schema: dict[str, Any]) -> list[Check]:
    tests: list[Check] = []
    if "minimum" in schema:
        minimum = schema["minimum"]
        tests.append(lambda value: not value < minimum)
    if "maximum" in schema:
        maximum = schema["maximum"]
        tests.append(lambda value: not value > maximum)
    if "exclusiveMinimum" in schema:
        above = schema["exclusiveMinimum"]
        tests.append(lambda value: not value <= above)
    if "exclusiveMaximum" in schema:
        below = schema["exclusiveMaximum"]
        tests.append(lambda value: not value >= below)
    return tests


def _array_tests(schema: dict[str, Any]) -> list[Check]:
    tests = _length_test(schema, "minItems", "maxItems")
    if "items" in schema:
        item = _compile(schema["items"])
        if item is not _accept:
            tests.append(lambda value: all(map(item, value)))
    return tests


def _object_tests(schema: dict[str, Any]) -> list[Check]:
    required = frozenset(schema.get("required", ()))
    properties = {name: _compile(sub) for name, sub in schema.get("properties", {}).items()}
    extra = _compile(schema.get("additionalProperties", True))
    if not required and extra is _accept and all(v is _accept for v in properties.values()):
        return []
    others = None if extra is _accept else extra

    def test(value: Any) -> bool:
        if type(value) is not dict or not value.keys() >= required:
            return False
        for name, item in value.items():
            check = properties.get(name, others)
            if check is not None and not check(item):
                return False
        return True

    return [test]


def _compile(schema: Any, *, root: bool = False) -> Check:
    """Compile one (sub)schema; raise ``_Unsupported`` for anything outside the subset."""
    if schema is True or schema is False:
        return _accept if schema else _reject
    if type(schema) is not dict:
        raise _Unsupported(f"schema {short(schema)}")
    for keyword, value in schema.items():
        known = keyword in _COMPILED or keyword in _ANNOTATIONS or str(keyword).startswith("x-")
        if not known and not (root and keyword == "$schema" and value == DRAFT_2020_12):
            raise _Unsupported(f"keyword {keyword!r}")
    declared = schema.get("type", list(_PY_TYPES))
    names = [declared] if type(declared) is str else declared
    if type(names) is not list or not names or not all(n in _PY_TYPES for n in map(str, names)):
        raise _Unsupported(f"type {short(declared)}")
    kind_tests: dict[type, list[Check]] = {
        str: _string_tests(schema),
        int: _number_tests(schema),
        float: _number_tests(schema),
        list: _array_tests(schema),
        dict: _object_tests(schema),
        bool: [],
        type(None): [],
    }
    if "number" not in names:  # integers only: a float must have an integral value
        kind_tests[float].insert(0, float.is_integer)
    allowed = _allowed_values(schema)
    if allowed is not None:  # const or enum: test the value first
        for kind, tests in kind_tests.items():
            values = allowed.get(kind)
            tests.insert(0, values.__contains__ if values else _reject)
    by_type = {kind: _all(kind_tests[kind]) for name in names for kind in _PY_TYPES[name]}
    if list(by_type) == [dict] and len(kind_tests[dict]) == 1 and allowed is None:
        return kind_tests[dict][0]  # the object test checks the type itself
    if len(by_type) == 1:
        ((only, test),) = by_type.items()
        if test is _accept:
            return lambda value: type(value) is only
        return lambda value: type(value) is only and test(value)
    return lambda value: by_type.get(type(value), _reject)(value)


def compile_quick_check(schema: dict[str, Any]) -> Check | None:
    """The quick check of ``schema``, or None when it uses keywords outside the subset."""
    try:
        return _compile(schema, root=True)
    except _Unsupported:
        return None


@dataclasses.dataclass(frozen=True)
class SchemaCheck:
    """The full validator of one schema and its quick check (None if it has none)."""

    full: Any
    quick: Check | None

    def problem(self, instance: Any) -> tuple[str, str] | None:
        """None if ``instance`` is valid, else ``(reason, detail)`` for an ``InvalidEvent``."""
        quick = self.quick
        try:
            valid = quick is not None and bool(quick(instance))
        except Exception:  # e.g. a dict key with a failing __eq__: the full validator decides
            valid = False
        if valid:
            return None
        errors = list(self.full.iter_errors(instance))
        return explain(errors) if errors else None


def compile_schema(schema: dict[str, Any]) -> SchemaCheck:
    """Check ``schema`` against the draft 2020-12 metaschema and compile both validators."""
    FullValidator.check_schema(schema)
    return SchemaCheck(FullValidator(schema), compile_quick_check(schema))
