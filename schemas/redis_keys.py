"""The Redis key layout, declared once. Every feedline key starts with the prefix.

| key | type | holds |
|---|---|---|
| ``{p}:tl:{user_id}`` | ZSET | home timeline: post ids scored by creation time (ms), capped |
| ``{p}:ob:{author_id}`` | ZSET | celebrity outbox: the author's recent post ids, same scores |
| ``{p}:post:{post_id}`` | HASH | post payload for hydration (author, caption, media, time) |
| ``{p}:pc:{post_id}`` | HASH | post counters: likes, comments (absolute values) |
| ``{p}:uc:{user_id}`` | HASH | user counters: followers, following, posts (absolute values) |
| ``{p}:fc:{user_id}`` | SET | celebrities the user follows (merged on read), ``.`` once complete |
| ``{p}:celebs`` | SET | authors currently above the celebrity threshold |
| ``{p}:rl:{user_id}:{window}`` | STRING | rate-limit counter of one window |
| ``{p}:idem:{user_id}:{key}`` | STRING | event id produced for an Idempotency-Key |
| ``{p}:v:{key}`` | HASH | write versions of the rows of ``{p}:{key}`` (write guard, not data) |

The hashes' fields, with their encode and decode, are in ``schemas.redis_hashes``.

Redis Cluster layout (``RedisKeys(cluster=True)``, ``redis.cluster`` in the settings): the
same keys with their owner in a hash tag, so that everything one owner's script touches
shares a slot. A user's own keys (``tl``, ``fc``, ``uc``, ``rl``, ``idem``, and as an author
``ob`` and ``pa``) are tagged ``{user_id}``: the reader's page script (timeline,
followed-celebrity set, rate-limit counters) and an author's outbox with the author's
``posts`` counter each run on one slot. A post's ``post`` and ``pc`` hashes are tagged
``{post_id}``: hydration touches one slot per post, posts spread over the shards (readers
pipeline them per node). The celebrities set is ``{p}:{celebs}``. A versions hash keeps
its key's tag (``{p}:v:tl:{u1}``), so a guarded write stays on one slot. Single-node
Redis keeps the untagged names above (the default).

Notifications (``schemas.redis_notifications``): one recipient's keys put the user id in a
hash tag (``{u1}``), so they share a Redis Cluster slot and one script reads them together.

| key | type | holds |
|---|---|---|
| ``{p}:nz:{{user_id}}`` | ZSET | notification groups: group keys scored by latest_at (ms), capped |
| ``{p}:ng:{{user_id}}`` | HASH | notification group payloads by group key |
| ``{p}:nr:{{user_id}}`` | STRING | notifications read through (ms); only moves forward |

Realtime push (``schemas.redis_push``): the streams ``GET /v1/stream`` reads.

| key | type | holds |
|---|---|---|
| ``{p}:ps:{{user_id}}`` | STREAM | the user's feed, delete and notification events, newest ~1000 |
| ``{p}:pa:{author_id}`` | STREAM | a celebrity's feed and delete events, newest ~1000 |
"""

from __future__ import annotations

from dataclasses import dataclass

#: Member of a followed-celebrities SET meaning "rebuilt from the CQL store: complete".
#: Not a valid user id, so it never collides with a celebrity.
COMPLETE_MEMBER = "."

#: Field of an outbox's versions hash, cluster layout only: when the writer last dropped the
#: outbox (µs, its clock), so that a reader's outbox repair read before it is refused
#: (``lua/outbox_fill.lua``). Not a valid post id, so never a row's version.
DROPPED_FIELD = "!dropped"


@dataclass(frozen=True)
class RedisKeys:
    """Builds every key for one prefix (tests use a unique prefix each)."""

    prefix: str = "fl"
    cluster: bool = False
    """Redis Cluster layout: owners in hash tags (see the module's docstring)."""

    def __post_init__(self) -> None:
        if self.cluster and ("{" in self.prefix or "}" in self.prefix):
            raise ValueError(f"a cluster key prefix holds no hash tag braces: {self.prefix!r}")

    def _owned(self, kind: str, owner: str) -> str:
        """``{p}:KIND:OWNER``; in the cluster layout ``{p}:KIND:{OWNER}`` (one slot per owner)."""
        if self.cluster:
            return f"{self.prefix}:{kind}:{{{owner}}}"
        return f"{self.prefix}:{kind}:{owner}"

    def timeline(self, user_id: str) -> str:
        """Home timeline ZSET of ``user_id``."""
        return self._owned("tl", user_id)

    def outbox(self, author_id: str) -> str:
        """Celebrity outbox ZSET of ``author_id``."""
        return self._owned("ob", author_id)

    def post(self, post_id: str) -> str:
        """Post payload HASH."""
        return self._owned("post", post_id)

    def post_counters(self, post_id: str) -> str:
        """Post counters HASH (likes, comments)."""
        return self._owned("pc", post_id)

    def user_counters(self, user_id: str) -> str:
        """User counters HASH (followers, following, posts)."""
        return self._owned("uc", user_id)

    def followed_celebrities(self, user_id: str) -> str:
        """SET of celebrities ``user_id`` follows.

        Readers trust the set only when it holds ``COMPLETE_MEMBER``: readers rebuild the
        set from the CQL store with the marker, while the writer only adds and removes
        celebrities, so a set evicted and then re-created by a single add stays untrusted
        (it would hide the other celebrities' posts).
        """
        return self._owned("fc", user_id)

    def celebrities(self) -> str:
        """SET of authors above the celebrity threshold."""
        return f"{self.prefix}:{{celebs}}" if self.cluster else f"{self.prefix}:celebs"

    def rate_limit(self, user_id: str, window: int) -> str:
        """Request counter of ``user_id`` in rate-limit window number ``window``."""
        return f"{self._owned('rl', user_id)}:{window}"

    def idempotency(self, user_id: str, key: str) -> str:
        """Event id recorded for a client's Idempotency-Key."""
        return f"{self._owned('idem', user_id)}:{key}"

    def versions(self, key: str) -> str:
        """HASH of the write versions of ``key``'s rows: member or field -> write time (µs).

        Kept by the streaming writer's guard (``lua/write_guarded.lua``): a write applies
        only when newer than the version of its row (the field ``""``: the whole key). Not
        data: readers never read it, and comparisons of the stores leave it out.
        """
        return f"{self.prefix}:v:{key[len(self.prefix) + 1:]}"

    def is_versions(self, key: str) -> bool:
        """Whether ``key`` is a versions hash (``versions``)."""
        return key.startswith(f"{self.prefix}:v:")

    def pattern(self) -> str:
        """SCAN pattern matching every key of this prefix."""
        return f"{self.prefix}:*"

    def kind_pattern(self, kind: str) -> str:
        """SCAN pattern of every key of one kind (``tl``, ``nz`` …), in either layout."""
        return f"{self.prefix}:{kind}:*"

    def owner(self, key: str) -> str:
        """The owner id of an owner's key (``timeline``, ``notifications`` …).

        What follows the kind, without hash tag braces: the same in either layout.
        """
        owner = key[len(self.prefix) + 1:].partition(":")[2]
        return owner[1:-1] if owner.startswith("{") and owner.endswith("}") else owner

    def notifications(self, user_id: str) -> str:
        """Notification groups ZSET of ``user_id``: group keys scored by latest_at (ms)."""
        return f"{self.prefix}:nz:{{{user_id}}}"

    def notification_groups(self, user_id: str) -> str:
        """Notification group payloads HASH of ``user_id``, by group key."""
        return f"{self.prefix}:ng:{{{user_id}}}"

    def notifications_read(self, user_id: str) -> str:
        """How far ``user_id`` has read their notifications (epoch ms)."""
        return f"{self.prefix}:nr:{{{user_id}}}"

    def push(self, user_id: str) -> str:
        """Realtime events of ``user_id`` (same hash tag as their notifications)."""
        return f"{self.prefix}:ps:{{{user_id}}}"

    def author_push(self, author_id: str) -> str:
        """Realtime events of a celebrity's outbox, read by every follower's stream."""
        return self._owned("pa", author_id)
