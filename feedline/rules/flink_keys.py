"""Which parallel instance of a keyed Flink operator a key goes to.

Used to name the writer buckets so that they spread evenly over the writer instances
(``write_order.BUCKET_NAMES``), and by tests to place data on a chosen instance.

Flink hashes a key's Java ``hashCode`` with ``MathUtils.murmurHash`` into one of
``max_parallelism`` key groups and gives each instance a contiguous range of groups
(``KeyGroupRangeAssignment``). PyFlink's ``key_by`` keys by ``Row.of(key)``, whose hash
for a one-field row (kind INSERT) is the field's hash plus 62 (checked against Flink
2.2.1's own classes for all 128 writer buckets). Keys here are strings (the buckets).
"""

from __future__ import annotations

#: Flink's default max parallelism for jobs whose parallelism is at most 128.
DEFAULT_MAX_PARALLELISM = 128
_MASK = 0xFFFFFFFF


def _int32(value: int) -> int:
    value &= _MASK
    return value - (1 << 32) if value >= 1 << 31 else value


def _rotl(value: int, bits: int) -> int:
    value &= _MASK
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def java_string_hash(text: str) -> int:
    """``String.hashCode`` (UTF-16 code units; the bucket names are ASCII)."""
    code = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        code = (31 * code + int(unit, 16)) & _MASK
    return _int32(code)


def murmur_hash(code: int) -> int:
    """``MathUtils.murmurHash(int)``: non-negative."""
    code = (code * 0xCC9E2D51) & _MASK
    code = _rotl(code, 15)
    code = (code * 0x1B873593) & _MASK
    code = _rotl(code, 13)
    code = (code * 5 + 0xE6546B64) & _MASK
    code ^= 4
    code ^= code >> 16
    code = (code * 0x85EBCA6B) & _MASK
    code ^= code >> 13
    code = (code * 0xC2B2AE35) & _MASK
    code ^= code >> 16
    signed = _int32(code)
    if signed >= 0:
        return signed
    return -signed if signed != -(1 << 31) else 0


def pyflink_key_hash(key: str) -> int:
    """``Row.of(key).hashCode()``: the hash of the key PyFlink's ``key_by`` keys by."""
    return _int32(java_string_hash(key) + 62)


def key_group(key: str, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """The key group of a PyFlink ``key_by`` key."""
    return murmur_hash(pyflink_key_hash(key)) % max_parallelism


def operator_index(key: str, parallelism: int,
                   max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """The instance (0-based) of a PyFlink keyed operator that receives ``key``."""
    return key_group(key, max_parallelism) * parallelism // max_parallelism
