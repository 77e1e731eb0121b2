from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedline.stores.feed_items import Position
from serving.cursor import InvalidCursor, cursor_key, decode_cursor, encode_cursor

KEY = cursor_key("test-secret-that-is-long-enough-32b")
ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


@given(st.integers(min_value=0, max_value=2**62), ids)
def test_round_trip(created_ms: int, post_id: str) -> None:
    position = Position(created_ms, post_id)
    cursor = encode_cursor(position, key=KEY, scope="feed:u1")
    assert decode_cursor(cursor, key=KEY, scope="feed:u1") == position
    assert all(c.isalnum() or c in "-_" for c in cursor)  # URL-safe, no padding


def test_cursor_is_opaque_and_bound_to_its_listing() -> None:
    cursor = encode_cursor(Position(1_700_000_000_000, "p1"), key=KEY, scope="feed:u1")
    assert "p1" not in cursor and "1700000000000" not in cursor
    with pytest.raises(InvalidCursor, match="this listing"):
        decode_cursor(cursor, key=KEY, scope="feed:u2")
    with pytest.raises(InvalidCursor, match="this listing"):
        decode_cursor(cursor, key=cursor_key("another-secret-another-secret-xx"), scope="feed:u1")


def test_tampered_cursor_is_refused() -> None:
    cursor = encode_cursor(Position(1_700_000_000_000, "p1"), key=KEY, scope="s")
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[5] ^= 1  # move the position by a bit
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidCursor):
        decode_cursor(forged, key=KEY, scope="s")


@pytest.mark.parametrize("garbage", ["", "abc", "!!!!", "a" * 300, "AAAA", "=" * 8])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(garbage, key=KEY, scope="s")
