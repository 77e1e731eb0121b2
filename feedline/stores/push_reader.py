"""The read side of realtime push: one client's position in the push streams.

A ``PushSubscription`` follows the user's own stream and the streams of the celebrities the
user follows (``schemas.redis_push``), with one cursor per stream, and reads them all with
one ``XREAD BLOCK``: new entries arrive as soon as a writer appends them (no polling of
the stores), and a read that finds nothing for ``block_ms`` returns none, so the caller
can send a heartbeat. Each read hands out entries oldest first, and never one newer than
an entry it leaves unread (a stream cut short by ``COUNT`` bounds the others), which is
what makes a ``Last-Event-ID`` resume exact (``schemas.redis_push.resume_after``).

Blocking reads hold their connection while they wait: the client used here is its own,
with a socket timeout above ``block_ms``, never the cache client with its short timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from schemas.redis_keys import RedisKeys
from schemas.redis_push import (
    DATA_FIELD,
    EVENT_FIELD,
    EVENTS,
    EntryId,
    event_id,
    parse_event_id,
    resume_after,
)

#: Entries one read takes from each stream at most.
READ_COUNT = 200
_START = EntryId(0, 0)


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One event to send: its SSE id, name and JSON data."""

    id: str
    event: str
    data: str
    author_id: str | None = None
    """The celebrity whose stream it came from (None: the user's own stream)."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One stream entry as read: its id (parsed and as sent), source and fields."""

    entry_id: EntryId
    raw_id: str
    source: str | None
    fields: dict[str, str]


def order_entries(reply: Sequence[tuple[str | None, Sequence[tuple[str, dict[str, str]]]]],
                  count: int) -> tuple[list[StreamEntry], dict[str | None, EntryId]]:
    """The entries of one ``XREAD`` to hand out now, oldest first, and the new cursors.

    ``reply``: per source, its entries (oldest first). A source that returned ``count``
    entries may hold more: nothing newer than its last one is handed out, so no entry is
    ever handed out after a newer one (pure).
    """
    bound: EntryId | None = None
    entries: list[StreamEntry] = []
    for source, items in reply:
        for raw_id, fields in items:
            entries.append(StreamEntry(EntryId.parse(raw_id), raw_id, source, fields))
        if len(items) >= count and items:
            last = EntryId.parse(items[-1][0])
            if bound is None or last.key() < bound.key():
                bound = last
    if bound is not None:
        limit = bound.key()
        entries = [e for e in entries if e.entry_id.key() <= limit]
    entries.sort(key=lambda e: (e.entry_id.key(), e.source or ""))
    cursors: dict[str | None, EntryId] = {}
    for e in entries:
        cursors[e.source] = e.entry_id
    return entries, cursors


def lost_after(info: dict[str, Any], cursor: EntryId) -> bool:
    """Whether a stream (its ``XINFO STREAM``) may have trimmed entries after ``cursor``.

    Trimming removes the oldest entries (``max-deleted-entry-id`` counts only XDEL): when
    some were trimmed (more added than kept) and the oldest kept is after ``cursor``, the
    ones between may be gone. Said, too, when exactly the entries up to ``cursor`` went: a
    reload too many, never an event missed silently (pure).
    """
    first = info.get("recorded-first-entry-id") or "0-0"
    added, kept = int(info.get("entries-added") or 0), int(info.get("length") or 0)
    return added > kept and EntryId.parse(str(first)).key() > cursor.key()


class PushSubscription:
    """What one connected client reads: its stream and its celebrities' streams."""

    def __init__(self, client: Redis, keys: RedisKeys, user_id: str, *, block_ms: int,
                 count: int = READ_COUNT) -> None:
        self.redis = client
        self.keys = keys
        self.user_id = user_id
        self.block_ms = block_ms
        self.count = count
        self.cursors: dict[str | None, EntryId] = {}
        """Last entry read, per source: None is the user's stream, else a celebrity."""

    def _key(self, source: str | None) -> str:
        return self.keys.push(self.user_id) if source is None else self.keys.author_push(source)

    @property
    def celebrities(self) -> list[str]:
        """The celebrities whose streams are followed."""
        return sorted(s for s in self.cursors if s is not None)

    async def _newest(self, sources: Sequence[str | None]) -> dict[str | None, EntryId]:
        """Each source's newest entry id now (0-0 for an empty stream)."""
        pipe = self.redis.pipeline(transaction=False)
        for source in sources:
            pipe.xrevrange(self._key(source), count=1)
        replies = await pipe.execute()
        return {source: EntryId.parse(reply[0][0]) if reply else _START
                for source, reply in zip(sources, replies, strict=True)}

    async def start(self, celebrities: Iterable[str], last_event_id: str | None) -> bool:
        """Start now, or after ``last_event_id``; True when entries after it were trimmed.

        ``ValueError`` when ``last_event_id`` is not one of this stream's ids.
        """
        sources: list[str | None] = [None, *sorted(set(celebrities))]
        if last_event_id is None:
            self.cursors = await self._newest(sources)
            return False
        last = parse_event_id(last_event_id)
        self.cursors = {source: resume_after(last, source) for source in sources}
        pipe = self.redis.pipeline(transaction=False)
        for source in sources:
            pipe.xinfo_stream(self._key(source))
        trimmed = False
        for source, info in zip(sources, await pipe.execute(raise_on_error=False),
                                strict=True):
            if isinstance(info, redis.exceptions.ResponseError):
                continue  # no such stream: nothing was trimmed from it
            if isinstance(info, Exception):
                raise info
            trimmed = trimmed or lost_after(info, self.cursors[source])
        return trimmed

    async def follow(self, celebrities: Iterable[str]) -> None:
        """Follow exactly these celebrities' streams from now on (new ones from now)."""
        wanted = set(celebrities)
        for source in [s for s in self.cursors if s is not None and s not in wanted]:
            del self.cursors[source]
        added = sorted(wanted - {s for s in self.cursors if s is not None})
        if added:
            self.cursors.update(await self._newest(added))

    async def read(self) -> list[PushMessage]:
        """The next entries, oldest first; none when ``block_ms`` passed without any."""
        sources = list(self.cursors)
        streams: dict[Any, Any] = {self._key(s): str(self.cursors[s]) for s in sources}
        reply = await self.redis.xread(streams, count=self.count, block=self.block_ms)
        if not reply:
            return []
        by_key = {self._key(s): s for s in sources}
        entries, cursors = order_entries([(by_key[key], items) for key, items in reply],
                                         self.count)
        self.cursors.update(cursors)
        return messages(entries)


def messages(entries: Iterable[StreamEntry]) -> list[PushMessage]:
    """The events to send for ``entries``, in their order (pure).

    An entry that is not an event this API knows is skipped (and, its cursor passed, never
    resent).
    """
    out = []
    for e in entries:
        name = e.fields.get(EVENT_FIELD)
        if name not in EVENTS or DATA_FIELD not in e.fields:
            continue
        out.append(PushMessage(event_id(e.raw_id, e.source), str(name),
                               e.fields[DATA_FIELD], e.source))
    return out
