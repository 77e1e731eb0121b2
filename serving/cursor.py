"""Opaque keyset cursors over ``(created_ms, post_id)``.

A cursor is ``base64url(version | created_ms | post_id | tag)``: the tag is an HMAC of the
rest and of the listing it belongs to (the home feed, or one author's profile), so a
client cannot forge positions or carry a cursor from one listing to another. Cursors do
not expire: a position stays meaningful as long as the listing exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

from feedline.stores.feed_items import Position

MAX_CURSOR_CHARS = 256
_VERSION = 1
_TAG_BYTES = 10
_HEAD = struct.Struct(">BQ")


class InvalidCursor(ValueError):
    """The cursor was not issued by this API for this listing."""


def cursor_key(secret: str) -> bytes:
    """The HMAC key of cursors, derived from the API secret."""
    return hmac.new(secret.encode(), b"feedline cursor v1", hashlib.sha256).digest()


def _tag(key: bytes, scope: str, payload: bytes) -> bytes:
    return hmac.new(key, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:_TAG_BYTES]


def encode_cursor(position: Position, *, key: bytes, scope: str) -> str:
    """The cursor resuming right after ``position`` in listing ``scope``."""
    payload = _HEAD.pack(_VERSION, position.created_ms) + position.post_id.encode()
    raw = payload + _tag(key, scope, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, *, key: bytes, scope: str) -> Position:
    """The position a cursor resumes after; raises ``InvalidCursor``."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("the cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("the cursor is not one this API issued") from None
    if len(raw) <= _HEAD.size + _TAG_BYTES:
        raise InvalidCursor("the cursor is not one this API issued")
    payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(key, scope, payload)):
        raise InvalidCursor("the cursor is not one this API issued for this listing")
    version, created_ms = _HEAD.unpack_from(payload)
    if version != _VERSION:
        raise InvalidCursor(f"unsupported cursor version {version}")
    return Position(created_ms, payload[_HEAD.size:].decode())
