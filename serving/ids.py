"""Ids the API mints: random, URL-safe, and for posts and comments self-certifying.

A post id carries an HMAC tag binding it to its author, a comment id one binding it to
its author and post. So the API can tell that a caller wrote a post or a comment even
before the streaming jobs have stored it (a delete right after a create), and without a
comments table. The tag key derives from the API secret; rotating the secret only means
older ids must be checked against the stores (their authors there), never that a wrong
caller is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_RANDOM_HEX = 16
_TAG_HEX = 16


def id_key(secret: str) -> bytes:
    """The HMAC key of minted ids, derived from the API secret."""
    return hmac.new(secret.encode(), b"feedline ids v1", hashlib.sha256).digest()


def _tag(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()[:_TAG_HEX]


def new_media_id() -> str:
    """A random media id (ownership is recorded in the media table)."""
    return "m" + secrets.token_hex(_RANDOM_HEX // 2 + 4)


def new_post_id(key: bytes, author_id: str) -> str:
    """A fresh post id certifying ``author_id``."""
    nonce = secrets.token_hex(_RANDOM_HEX // 2)
    return "p" + nonce + _tag(key, "post", author_id, nonce)


def minted_post_of(key: bytes, post_id: str, author_id: str) -> bool:
    """True when ``post_id`` was minted by this API for ``author_id``."""
    if len(post_id) != 1 + _RANDOM_HEX + _TAG_HEX or not post_id.startswith("p"):
        return False
    nonce, tag = post_id[1:1 + _RANDOM_HEX], post_id[1 + _RANDOM_HEX:]
    return hmac.compare_digest(tag, _tag(key, "post", author_id, nonce))


def new_comment_id(key: bytes, user_id: str, post_id: str) -> str:
    """A fresh comment id certifying its author and post."""
    nonce = secrets.token_hex(_RANDOM_HEX // 2)
    return "c" + nonce + _tag(key, "comment", user_id, post_id, nonce)


def minted_comment_of(key: bytes, comment_id: str, user_id: str, post_id: str) -> bool:
    """True when ``comment_id`` was minted by this API for ``user_id`` on ``post_id``."""
    if len(comment_id) != 1 + _RANDOM_HEX + _TAG_HEX or not comment_id.startswith("c"):
        return False
    nonce, tag = comment_id[1:1 + _RANDOM_HEX], comment_id[1 + _RANDOM_HEX:]
    return hmac.compare_digest(tag, _tag(key, "comment", user_id, post_id, nonce))
