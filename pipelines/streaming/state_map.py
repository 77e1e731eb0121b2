"""A dictionary view of one key's Flink ``MapState``, for rules written against dicts.

The notification rules keep one register per actor (``PostRegisters``,
``FollowerRegisters``) in a dict; a streaming job must hold those maps in keyed map
state, one state entry per actor, so that an event reads and writes only the few entries
it touches instead of re-pickling the whole map. ``StateMap`` is that dict for the rules:

* an entry is read from the state the first time an event asks for it and kept for the
  rest of the event (the rules mutate register objects in place);
* ``flush`` writes back, at the end of the event, the entries set or changed (a changed
  entry is one whose pickled form differs from what was read) and removes deleted ones;
* iteration (``for key in view``, ``view.items()``) lists the state's entries once, then
  yields them, entries this event touched as they are now (listed first because PyFlink's
  cached map-state iterator fails when a ``get`` reorders its LRU cache mid-walk, which
  a rule reading entries while walking would do); the rules walk a whole map only on a
  post's first create and on its delete, and never change an entry while walking.

Pure: the state is anything with ``get``, ``put``, ``remove``, ``keys`` and ``items``
(PyFlink's ``MapState``; a dict-backed fake in the unit tests).
"""

from __future__ import annotations

import pickle
from collections.abc import ItemsView, Iterable, Iterator, MutableMapping
from typing import Any, Protocol

_ABSENT = object()
"""What ``StateMap`` remembers for a key that has no entry (never stored, or deleted)."""


class MapStateLike(Protocol):
    """The part of PyFlink's ``MapState`` a ``StateMap`` uses."""

    def get(self, key: Any) -> Any: ...  # noqa: D102
    def put(self, key: Any, value: Any) -> None: ...  # noqa: D102
    def remove(self, key: Any) -> None: ...  # noqa: D102
    def keys(self) -> Iterable[Any]: ...  # noqa: D102
    def items(self) -> Iterable[tuple[Any, Any]]: ...  # noqa: D102


def _pickled(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class StateMap(MutableMapping[str, Any]):
    """A per-event dict over one key's map state (see the module docstring)."""

    def __init__(self, state: MapStateLike) -> None:
        self._state = state
        self._current: dict[str, Any] = {}
        """Entries this event touched: the object, or ``_ABSENT``."""
        self._read: dict[str, bytes | None] = {}
        """The pickled entry as the state held it (None: no entry)."""

    def _load(self, key: str) -> Any:
        if key not in self._current:
            value = self._state.get(key)
            self._read[key] = None if value is None else _pickled(value)
            self._current[key] = _ABSENT if value is None else value
        return self._current[key]

    def __getitem__(self, key: str) -> Any:
        value = self._load(key)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._load(key)
        self._current[key] = value

    def __delitem__(self, key: str) -> None:
        if self._load(key) is _ABSENT:
            raise KeyError(key)
        self._current[key] = _ABSENT

    def __iter__(self) -> Iterator[str]:
        # The state's keys are listed first: PyFlink's cached map-state iterator walks an
        # LRU dict that a ``get`` (a rule reading an entry while walking) reorders.
        for key in list(self._state.keys()):
            if self._current.get(key) is not _ABSENT:
                yield key
        for key, value in self._current.items():  # new this event: not in the state yet
            if value is not _ABSENT and self._read[key] is None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items(self) -> ItemsView[str, Any]:
        """Entries, walking the state once (not a ``__getitem__`` per key)."""
        return _Items(self)

    def _walk(self) -> Iterator[tuple[str, Any]]:
        for key, value in list(self._state.items()):  # listed first, as in ``__iter__``
            current = self._current.get(key, value)
            if current is not _ABSENT:
                yield key, current
        for key, value in self._current.items():
            if value is not _ABSENT and self._read[key] is None:
                yield key, value

    def flush(self) -> int:
        """Write back what this event set, changed or deleted; returns how many writes."""
        writes = 0
        for key, value in self._current.items():
            before = self._read[key]
            if value is _ABSENT:
                if before is not None:
                    self._state.remove(key)
                    writes += 1
            elif before is None or _pickled(value) != before:
                self._state.put(key, value)
                writes += 1
        self._current.clear()
        self._read.clear()
        return writes


class _Items(ItemsView[str, Any]):
    _mapping: StateMap

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self._mapping._walk()
