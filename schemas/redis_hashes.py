"""The fields of feedline's Redis hashes, declared once, with their encode and decode.

| hash (key: ``schemas.redis_keys``) | fields |
|---|---|
| post ``{p}:post:{post_id}`` | ``post_id author_id caption media created_ms`` |
| post counters ``{p}:pc:{post_id}`` | ``likes comments`` |
| user counters ``{p}:uc:{user_id}`` | ``followers following posts`` (each once written) |

Values are text: ``media`` is a JSON list of ``{media_id, content_type, uri}`` objects, each
with the metadata its event carried when known (``width``, ``height``, ``duration_ms``,
``renditions`` as ``[{uri, width, height, content_type}]``, ``placeholder``; see
``MediaRef.to_json``), ``created_ms`` epoch milliseconds, counters absolute counts.

Written by the streaming writer (``feedline.stores.feed_writer``) and the rebuild
(``feedline.rebuild.writer``); read by the API and ``feedctl feed``
(``feedline.stores.feed_cache``, whose page script reads ``author_id caption media``,
``likes comments`` and ``posts`` inside Redis) and the drift checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from feedline.rules.effects import PostUpsert

POST_FIELDS = ("post_id", "author_id", "caption", "media", "created_ms")
POST_COUNTER_FIELDS = ("likes", "comments")
USER_COUNTER_FIELDS = ("followers", "following", "posts")


@dataclass(frozen=True, slots=True)
class PostHash:
    """A decoded post hash; ``media`` as ``MediaRef.to_json`` objects."""

    post_id: str
    author_id: str
    caption: str
    media: list[dict[str, Any]]
    created_ms: int


def encode_post(post: PostUpsert) -> dict[str, str]:
    """The fields of a post hash (what feed hydration reads)."""
    media = [m.to_json() for m in post.media]
    return {
        "post_id": post.post_id,
        "author_id": post.author_id,
        "caption": post.caption,
        "media": json.dumps(media, separators=(",", ":")),
        "created_ms": str(post.created_ms),
    }


def decode_media(text: str) -> list[dict[str, Any]]:
    """The ``media`` field of a post hash (``MediaRef.from_json`` reads each item)."""
    items: list[dict[str, Any]] = orjson.loads(text)
    return items


def decode_post(fields: Mapping[str, str]) -> PostHash:
    """A post hash read with ``decode_responses=True`` (HGETALL of an existing key)."""
    return PostHash(fields["post_id"], fields["author_id"], fields["caption"],
                    decode_media(fields["media"]), int(fields["created_ms"]))


def encode_post_counters(likes: int, comments: int) -> dict[str, int]:
    """The fields of a post counters hash."""
    return {"likes": likes, "comments": comments}


def decode_post_counters(fields: Mapping[Any, Any]) -> tuple[int, int]:
    """(likes, comments) of a post counters hash (a missing field counts 0)."""
    values = _ints(fields)
    return values.get("likes", 0), values.get("comments", 0)


def encode_user_counters(values: Mapping[str, int]) -> dict[str, int]:
    """The fields of a user counters hash (any of followers, following, posts)."""
    unknown = set(values) - set(USER_COUNTER_FIELDS)
    if unknown:
        raise ValueError(f"not user counters: {sorted(unknown)}")
    return dict(values)


def decode_user_counters(fields: Mapping[Any, Any]) -> dict[str, int]:
    """The counters a user counters hash holds (the fields written so far)."""
    return _ints(fields)


def _ints(fields: Mapping[Any, Any]) -> dict[str, int]:
    """Field -> integer value, from a reply with or without ``decode_responses``."""
    return {_text(name): int(value) for name, value in fields.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
