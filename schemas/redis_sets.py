"""When a cached set holds its whole listing: one rule per set, declared once.

Redis keeps only part of the feed state, so a reader must know whether a set it finds is
the whole listing or a part of it (the rest then lives only in the CQL store). Each set has
one completeness rule, consulted by the streaming writer (``feedline.stores.feed_writer``:
what it rebuilds or refills), the reader (``feedline.stores.feed_cache``: the page script's
checks and the repairs) and the rebuild writer (``feedline.rebuild.writer``):

- timeline ``{p}:tl:{user}``, ``CAPPED``: whole when it holds fewer than ``timeline_cap``
  entries; the writer refills a full timeline that loses an entry.
- outbox ``{p}:ob:{author}``, ``COUNTED``: whole when it holds at least the author's
  ``posts`` counter; deletions shrink it without a refill (readers then use the CQL store).
- followed celebrities ``{p}:fc:{user}``, ``MARKED``: whole when it holds
  ``COMPLETE_MEMBER``, which only a reader's repair adds; the writer only adds and removes
  members, and the rebuild writes it unmarked.

A missing sorted set means "not cached": writers add to a timeline or an outbox only where
it exists and rebuild it whole from its CQL listing otherwise; outboxes are kept for
celebrities only.

Two more structures follow the same idea without a rule object: a user counters hash is
whole or absent (the writer sets a field only in a cached hash and otherwise fills it
with every field the CQL row holds, so a missing ``posts`` field means none), and the
celebrities set, which the writer only adds to and removes from, is completed from the
CQL store by the reader's outbox repair (``lua/repair_outbox.lua``) after Redis lost it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys


class Completeness(StrEnum):
    """How a reader tells a whole set from a part of one (see the module's table)."""

    CAPPED = "capped"
    COUNTED = "counted"
    MARKED = "marked"


@dataclass(frozen=True, slots=True)
class SetRule:
    """The completeness rule of one kind of cached set."""

    kind: str
    completeness: Completeness
    key: Callable[[RedisKeys, str], str]
    """The set's key for an owner (a user or an author)."""
    listing: str | None = None
    """The CQL statement (``schemas.cql_statements``) listing it newest first, to rebuild it."""
    capped: bool = False
    """Trimmed to the newest ``timeline_cap`` entries."""
    celebrities_only: bool = False
    """Cached only while the owner is in the celebrities set."""
    counter_field: str | None = None
    """``COUNTED``: the owner's user-counters field it is compared with."""
    marker: str | None = None
    """``MARKED``: the member meaning "complete" (never a valid id)."""


TIMELINE = SetRule("timeline", Completeness.CAPPED, RedisKeys.timeline,
                   listing="timeline_first", capped=True)
OUTBOX = SetRule("outbox", Completeness.COUNTED, RedisKeys.outbox, listing="user_posts_first",
                 capped=True, celebrities_only=True, counter_field="posts")
FOLLOWED_CELEBRITIES = SetRule("followed_celebrities", Completeness.MARKED,
                               RedisKeys.followed_celebrities, marker=COMPLETE_MEMBER)

#: Every rule by ``kind``.
SET_RULES = {rule.kind: rule for rule in (TIMELINE, OUTBOX, FOLLOWED_CELEBRITIES)}
