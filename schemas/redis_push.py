"""The realtime push broker: Redis Streams, declared once (keys: ``schemas.redis_keys``).

Writers append what a connected client must hear; the API's ``GET /v1/stream`` reads it
with ``XREAD BLOCK`` and sends it as Server-Sent Events. Two kinds of stream:

| key | type | holds |
|---|---|---|
| ``{p}:ps:{{user}}`` | STREAM | a user's ``feed``, ``delete`` (timeline), ``notification`` |
| ``{p}:pa:{author}`` | STREAM | one celebrity's events: ``feed`` and ``delete`` (their outbox) |

A reader follows their own stream and the streams of the celebrities they follow: a
celebrity's post is merged into feeds at read time, never written to followers, so its
event is written once, to the author's stream, not once per follower.

- **Entries.** Two fields: ``e`` (the event name, ``EVENTS``) and ``d`` (its JSON data,
  ``feed_data`` / ``delete_data`` / ``notification_data``). The entry id is the SSE ``id``
  (``event_id`` / ``parse_event_id``): a user-stream entry as is (``1733000000000-0``), a
  celebrity's with ``@author`` appended.
- **Window.** Each stream keeps about its newest ``PUSH_WINDOW`` entries (``XADD MAXLEN ~``:
  at least that many, trimmed in whole macro nodes, cheap). A client that reconnects with
  ``Last-Event-ID`` gets every later entry still kept; when entries after its id may have
  been trimmed (``XINFO STREAM``: more entries added than kept, and the oldest kept is
  after the id) it first gets ``event: reset``: refetch the feed and notifications. A
  stream evicted by the cache's LRU and written again cannot tell: its events are lost
  without a reset (the window is a convenience; the stores are the truth).
- **Same slot.** A user's stream carries the user's hash tag, like the notification keys
  (``schemas.redis_notifications``): a notifications script may append to it in the same
  call that changes a group. Reading a user's stream together with celebrities' streams
  in one ``XREAD`` needs them in one slot: on a Redis Cluster the API reads them slot by
  slot (``feedline.stores.cluster_push``) and hands out what one ``XREAD`` would.
- **Delivery** is at least once: a writer retried after a failure appends again, and a
  resumed stream may repeat the events of the millisecond of ``Last-Event-ID`` that came
  from other streams. Clients apply events by id (``post_id``, ``group_key``): a repeat
  changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

#: Entries each stream keeps at least (the resume window).
PUSH_WINDOW = 1000
#: Event names a stream carries.
FEED, DELETE, NOTIFICATION = "feed", "delete", "notification"
EVENTS = (FEED, DELETE, NOTIFICATION)
#: Sent (never stored) when a resumed stream lost entries to the window: refetch.
RESET = "reset"
#: Entry fields: the event name and its JSON data.
EVENT_FIELD, DATA_FIELD = "e", "d"
#: Separates a celebrity stream's entry id from the author in an SSE id.
AUTHOR_MARK = "@"

_MAX_SEQ = 2**64 - 1
_AUTHOR = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a user id (serving.auth.ID_PATTERN)


def entry(event: str, data: dict[str, Any]) -> dict[str, bytes | str]:
    """The fields of one stream entry."""
    return {EVENT_FIELD: event, DATA_FIELD: orjson.dumps(data)}


def feed_data(post_id: str, author_id: str, created_ms: int) -> dict[str, Any]:
    """A post entered the feed: ``created_ms`` places it (the feed's order)."""
    return {"post_id": post_id, "author_id": author_id, "created_ms": created_ms}


def delete_data(post_id: str) -> dict[str, Any]:
    """A post left the feed."""
    return {"post_id": post_id}


def notification_data(group_key: str, type_: str, post_id: str | None, count: int,
                      actors: tuple[str, ...] | list[str], latest_ms: int) -> dict[str, Any]:
    """A notification group as it is now; ``count`` 0: the group is gone (retracted)."""
    return {"group_key": group_key, "type": type_, "post_id": post_id, "count": count,
            "actors": list(actors), "latest_ms": latest_ms}


@dataclass(frozen=True, slots=True)
class EntryId:
    """A stream entry id, ``ms-seq``, ordered like Redis orders them."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EntryId:
        """``1733000000000-3`` (``ValueError`` when it is not one)."""
        ms, sep, seq = text.partition("-")
        if not sep or not ms.isdigit() or not seq.isdigit() or len(ms) > 20 or len(seq) > 20:
            raise ValueError(f"not a stream entry id: {text!r}")
        parsed = cls(int(ms), int(seq))
        if parsed.seq > _MAX_SEQ or parsed.ms > _MAX_SEQ:
            raise ValueError(f"not a stream entry id: {text!r}")
        return parsed

    def before_ms(self) -> EntryId:
        """The last id before this id's millisecond: reading after it includes all of it."""
        return EntryId(self.ms - 1, _MAX_SEQ) if self.ms > 0 else EntryId(0, 0)

    def key(self) -> tuple[int, int]:
        """Sort key."""
        return (self.ms, self.seq)


def event_id(entry_id: str, author_id: str | None) -> str:
    """The SSE ``id`` of an entry of the user's stream (None) or of a celebrity's."""
    return entry_id if author_id is None else f"{entry_id}{AUTHOR_MARK}{author_id}"


def parse_event_id(text: str) -> tuple[EntryId, str | None]:
    """``(entry id, author or None)`` of an SSE id; ``ValueError`` when malformed."""
    raw, mark, author = text.partition(AUTHOR_MARK)
    if mark and not _AUTHOR.fullmatch(author):
        raise ValueError(f"not an event id of this stream: {text!r}")
    return EntryId.parse(raw), (author if mark else None)


def resume_after(last: tuple[EntryId, str | None], source: str | None) -> EntryId:
    """Where to resume ``source`` (None: the user's stream; else a celebrity) after ``last``.

    Entry ids of one stream grow, so the stream ``last`` came from resumes right after it.
    Another stream may hold entries of the same millisecond that were not sent yet (ids of
    different streams are not ordered within a millisecond): it resumes at that
    millisecond, so those may come again, never go missing. An entry of an earlier
    millisecond was sent before ``last``: one ``XREAD`` returns every stream's entries up
    to the moment it runs, and the API sends them oldest first.
    """
    entry_id, author = last
    return entry_id if author == source else entry_id.before_ms()
