"""Which operator uids a Flink savepoint or checkpoint holds state for.

Flink names an operator's state by its operator id: for an operator given a uid with
``.uid(...)``, the 128-bit MurmurHash3 (x64, seed 0) of the uid's UTF-8 bytes, written as
16 bytes in the ``_metadata`` file; since metadata version 5 the uid itself is written just
before (a Java ``writeUTF``: two length bytes, then the text). So a uid is in a savepoint
exactly when its text is followed by its own hash; operators without a uid (the Table API's
Kafka sources, PyFlink's key_by maps) have ids that follow the graph's shape instead.

After the id come the parallelism, the max parallelism, the coordinator state (one zero
byte when there is none), the number of subtasks, and per subtask its index and its state:
for a subtask without any, exactly 18 zero bytes (no managed or raw operator state: two
zero ints; no managed or raw keyed state: two zero bytes; no channel state: two empty
collections). An operator whose every subtask reads so holds no state, and Flink skips it
when the new program lacks it; anything else (a state, a finished subtask, a layout not
recognised) counts as state, so the check errs on the side of "incompatible".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

_MASK = (1 << 64) - 1
_C1, _C2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
MAGIC = bytes.fromhex("4960672d")
"""The first four bytes of a Flink checkpoint's ``_metadata``."""


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK
    return k ^ (k >> 33)


def murmur3_128(data: bytes, seed: int = 0) -> bytes:
    """MurmurHash3 x64 128-bit, as 16 bytes (h1 then h2, little-endian), like Guava's."""
    h1 = h2 = seed & _MASK
    whole = len(data) // 16 * 16
    for start in range(0, whole, 16):
        k1 = int.from_bytes(data[start:start + 8], "little")
        k2 = int.from_bytes(data[start + 8:start + 16], "little")
        h1 ^= _rotl((k1 * _C1) & _MASK, 31) * _C2 & _MASK
        h1 = (_rotl(h1, 27) + h2) & _MASK
        h1 = (h1 * 5 + 0x52DCE729) & _MASK
        h2 ^= _rotl((k2 * _C2) & _MASK, 33) * _C1 & _MASK
        h2 = (_rotl(h2, 31) + h1) & _MASK
        h2 = (h2 * 5 + 0x38495AB5) & _MASK
    tail = data[whole:]
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        h2 ^= _rotl((k2 * _C2) & _MASK, 33) * _C1 & _MASK
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        h1 ^= _rotl((k1 * _C1) & _MASK, 31) * _C2 & _MASK
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & _MASK
    h2 = (h2 + h1) & _MASK
    return h1.to_bytes(8, "little") + h2.to_bytes(8, "little")


def operator_id(uid: str) -> str:
    """Flink's operator id (hex) of an operator given this uid."""
    return murmur3_128(uid.encode()).hex()


_EMPTY_SUBTASK = bytes(18)


@dataclass(frozen=True)
class SavepointOperators:
    """The operators a savepoint's metadata names."""

    location: str
    uids: tuple[str, ...]
    """Operators with a uid, in the order they appear."""
    stateless: tuple[str, ...] = ()
    """Those of ``uids`` that hold no state (Flink restores without them)."""
    max_parallelism: int | None = None
    """The smallest max parallelism among them (a new parallelism may not exceed it)."""


def metadata_path(location: str) -> Path:
    """The ``_metadata`` file of a savepoint or checkpoint location (``file://`` or a path)."""
    parts = urlsplit(location)
    if parts.scheme not in ("", "file"):
        raise ValueError(f"cannot read savepoint {location}: only file:// locations are read")
    folder = Path(url2pathname(parts.path) if parts.scheme else location)
    return folder if folder.name == "_metadata" else folder / "_metadata"


def _int(raw: bytes, at: int) -> int:
    return int.from_bytes(raw[at:at + 4], "big", signed=True)


def _holds_state(raw: bytes, after_id: int) -> bool:
    """Whether the operator whose id ends at ``after_id`` has any state (see the module)."""
    at = after_id + 8  # parallelism, max parallelism
    if at + 5 > len(raw) or raw[at] != 0:
        return True  # a coordinator state (or a file cut short)
    subtasks = _int(raw, at + 1)
    at += 5
    if subtasks < 0:
        return True  # fully finished: not interpreted
    for _ in range(subtasks):
        if _int(raw, at) < 0 or raw[at + 4:at + 22] != _EMPTY_SUBTASK:
            return True
        at += 22
    return False


def scan_metadata(raw: bytes) -> tuple[list[str], list[str], int | None]:
    """(uids, the stateless ones, the smallest max parallelism) of a ``_metadata`` file."""
    if not raw.startswith(MAGIC):
        raise ValueError("not a Flink checkpoint metadata file")
    found: list[str] = []
    stateless: list[str] = []
    max_parallelism: int | None = None
    end = len(raw)
    for start in range(8, end - 19):
        length = int.from_bytes(raw[start:start + 2], "big")
        text_end = start + 2 + length
        if not 0 < length <= 80 or text_end + 16 > end:
            continue
        text = raw[start + 2:text_end]
        if not all(0x21 <= byte <= 0x7E for byte in text):
            continue
        uid = text.decode()
        if raw[text_end:text_end + 16] != murmur3_128(text) or uid in found:
            continue
        found.append(uid)
        after_id = text_end + 16
        if not _holds_state(raw, after_id):
            stateless.append(uid)
        declared = _int(raw, after_id + 4)
        if declared > 0:
            max_parallelism = min(declared, max_parallelism or declared)
    return found, stateless, max_parallelism


def uids_in_metadata(raw: bytes) -> list[str]:
    """The uids whose text is followed by their own operator id in ``raw``."""
    return scan_metadata(raw)[0]


def read_operators(location: str) -> SavepointOperators:
    """The uids of a savepoint or checkpoint (``OSError``/``ValueError`` when unreadable)."""
    uids, stateless, max_parallelism = scan_metadata(metadata_path(location).read_bytes())
    return SavepointOperators(location, tuple(uids), tuple(stateless), max_parallelism)
