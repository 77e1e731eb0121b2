"""The frozen dataclasses generated from the event schemas (see ``schemas.event_contracts``).

``record_class`` makes one class from the shapes of an object in every version of a schema
(newest first): one field per property of the union, required only if every version requires
it, and a converter per field turning validated JSON (dicts, lists) into nested records and
tuples. Generated classes are registered in ``GENERATED`` under their name and claim
``schemas.event_contracts`` as their module, whose module ``__getattr__`` finds them, so events
pickle by that name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

#: The module the generated classes are found in (by pickle, among others).
HOME_MODULE = "schemas.event_contracts"
#: Every generated class by name (events and their nested records).
GENERATED: dict[str, type[Record]] = {}


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
                plain[name] = value if type(value) in SCALAR_TYPES else to_plain(value)
        return plain

    if TYPE_CHECKING:  # fields are generated from the schemas, so static checkers can't see them

        def __getattr__(self, name: str) -> Any: ...


#: Types ``to_plain`` returns as they are (and need not be called for).
SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def to_plain(value: Any) -> Any:
    """A field value as JSON data: records as dicts, tuples as lists, recursively."""
    if type(value) in SCALAR_TYPES:
        return value
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [item if type(item) in SCALAR_TYPES else to_plain(item) for item in value]
    if isinstance(value, dict):
        return {
            name: item if type(item) in SCALAR_TYPES else to_plain(item)
            for name, item in value.items()
        }
    return value


def camel(name: str) -> str:
    """``post_created`` -> ``PostCreated``."""
    return "".join(part.capitalize() for part in name.split("_"))


def build(cls: type[Record], data: Mapping[str, Any]) -> Any:
    """An instance of ``cls`` from validated JSON data."""
    convert = cls._converters
    if convert:
        data = {name: convert[name](v) if name in convert else v for name, v in data.items()}
    return cls(**data)


def _converter(class_name: str, shapes: list[dict[str, Any]]) -> Callable[[Any], Any] | None:
    """How to turn a validated JSON value of this shape (newest version first) into a field."""
    shape = shapes[0]
    if shape.get("type") == "object" and "properties" in shape:
        record = record_class(class_name, shapes, Record)
        return lambda value: build(record, value)
    if shape.get("type") == "array":
        items = [s["items"] for s in shapes if isinstance(s.get("items"), dict)]
        inner = _converter(class_name + "Item", items) if items else None
        if inner is None:
            return tuple
        return lambda value: tuple(inner(item) for item in value)
    return None


_PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


def record_class(name: str, shapes: list[dict[str, Any]], base: type[Record]) -> type[Record]:
    """Generate (and register) the class ``name`` from an object's shapes, newest first."""
    properties: dict[str, list[dict[str, Any]]] = {}
    for shape in shapes:
        for field_name, field_shape in shape.get("properties", {}).items():
            properties.setdefault(field_name, []).append(field_shape)
    required = set.intersection(*(set(shape.get("required", ())) for shape in shapes))
    fields: list[tuple[str, Any, Any]] = []
    converters = {}
    for field_name, field_shapes in properties.items():
        convert = _converter(name + camel(field_name), field_shapes)
        if convert is not None:
            converters[field_name] = convert
        kind = _PY_TYPES.get(str(field_shapes[0].get("type")), "tuple" if convert else "Any")
        if field_name in required:
            fields.append((field_name, kind, dataclasses.field()))
        else:
            fields.append((field_name, f"{kind} | None", dataclasses.field(default=None)))
    made = dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True, kw_only=True)
    cls = cast(type[Record], made)
    cls.__module__ = HOME_MODULE
    cls._fields = tuple(properties)
    cls._converters = converters
    GENERATED[name] = cls
    return cls
