"""The test helper placing keys on Flink instances agrees with Flink's own assignment."""

from __future__ import annotations

import pytest

from feedline.rules.flink_keys import (
    java_string_hash,
    murmur_hash,
    operator_index,
    pyflink_key_hash,
)


def test_java_string_hash() -> None:
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("") == 0
    assert java_string_hash("polygenelubricants") == -(2**31)  # a known MIN_VALUE hash


# Computed with Flink 2.2.1's classes (jshell on flink-dist), PyFlink's key being
# Row.of(key): assignToKeyGroup(row, 128), assignKeyToParallelOperator(row, 128, 2).
@pytest.mark.parametrize(("key", "group", "index"), [
    ("120", 49, 0), ("67", 29, 0), ("34", 92, 1), ("9", 1, 0), ("0", 32, 0),
    ("1", 30, 0), ("2", 71, 1), ("3", 26, 0)])
def test_keys_go_where_flink_puts_them(key: str, group: int, index: int) -> None:
    assert murmur_hash(pyflink_key_hash(key)) % 128 == group
    assert operator_index(key, 2) == index
    assert operator_index(key, 1) == 0
