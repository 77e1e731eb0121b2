"""Realtime push on a Redis Cluster: one subscription's streams, read slot by slot.

``PushSubscription.read`` reads the user's stream and the followed celebrities' streams in
one ``XREAD BLOCK``. In the cluster layout (``RedisKeys(cluster=True)``) those streams have
one slot per owner, and Redis Cluster refuses a command over keys of several slots
(CROSSSLOT), even when one node holds them all. ``ClusterPushSubscription`` hands out the
same events, in the same order, with the same SSE ids:

1. The streams are grouped by slot (``slot_groups``). One group (no celebrity followed, or
   all in the user's slot): the single ``XREAD BLOCK`` of ``PushSubscription``.
2. Otherwise one ``XREAD BLOCK`` per group, concurrently, each on its own connection, as a
   wake-up only: the first to return an entry ends the wait, the others are cancelled
   (redis-py drops a connection cancelled in a read). None within ``block_ms``: no events.
3. Then one snapshot per group, concurrently: ``XREAD`` without ``BLOCK`` and the node's
   ``TIME``, in one script (``SNAPSHOT``; its keys share a slot).
4. ``merge_snapshots`` orders the entries as ``order_entries`` does for one ``XREAD``
   (oldest first; nothing newer than the last entry of a stream cut short by ``COUNT``)
   and also holds back every entry newer than the earliest snapshot's time. One ``XREAD``
   on one Redis reads every stream at the same moment, so an entry appended later gets a
   later id; the snapshots run at different moments on different clocks, and an entry a
   lagging node appends after its snapshot has an id at or after that node's time, never
   before it. So no event is handed out before an older one it leaves unread, and the
   ``Last-Event-ID`` resume of ``schemas.redis_push.resume_after`` stays exact across
   nodes, even with their clocks apart. An entry held back is read again: it goes out once
   every node's clock has passed it (a wait of the clocks' offset, in short sleeps).

Resume (``start``), ``follow`` and the newest ids go through the base class's
non-transactional pipelines, which redis-py's cluster client splits per node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.crc import key_slot

from feedline.stores.push_reader import (
    READ_COUNT,
    PushMessage,
    PushSubscription,
    StreamEntry,
    messages,
    order_entries,
)
from schemas.redis_keys import RedisKeys
from schemas.redis_push import EntryId

#: Reads the streams of one slot without blocking, with the node's time (s, µs) first.
#: ``KEYS``: the streams; ``ARGV``: the count, then each stream's cursor.
SNAPSHOT = """
local now = redis.call('TIME')
local read = {'XREAD', 'COUNT', ARGV[1], 'STREAMS'}
for i = 1, #KEYS do read[#read + 1] = KEYS[i] end
for i = 2, #ARGV do read[#read + 1] = ARGV[i] end
return {now[1], now[2], redis.call(unpack(read))}
"""

#: Longest sleep before an entry held back for a lagging clock is read again, ms.
HOLD_SLEEP_MS = 50

Source = str | None
Items = list[tuple[str, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One slot's streams as read at ``now_ms`` (its node's clock)."""

    now_ms: int
    reply: list[tuple[Source, Items]]
    """Per stream that has entries after its cursor: its source and entries, oldest first."""


def slot_groups(streams: Iterable[tuple[Source, str]]) -> list[list[tuple[Source, str]]]:
    """``(source, key)`` pairs grouped by the key's cluster slot, in first-seen order (pure)."""
    groups: dict[int, list[tuple[Source, str]]] = {}
    for source, key in streams:
        groups.setdefault(key_slot(key.encode()), []).append((source, key))
    return list(groups.values())


def merge_snapshots(snapshots: Sequence[Snapshot], count: int
                    ) -> tuple[list[StreamEntry], dict[Source, EntryId], int | None]:
    """The entries to hand out now, oldest first, their cursors, and how long to wait.

    ``order_entries`` over all the snapshots' streams, less the entries after the earliest
    snapshot's millisecond (a node read then may still append entries of that time). The
    last value: when nothing can go out but entries were held back, the ms until the first
    of them can; else None (pure).
    """
    reply = [pair for snapshot in snapshots for pair in snapshot.reply]
    entries, cursors = order_entries(reply, count)
    if not snapshots:
        return entries, cursors, None
    bound = min(snapshot.now_ms for snapshot in snapshots)
    kept = [e for e in entries if e.entry_id.ms <= bound]
    if len(kept) == len(entries):
        return entries, cursors, None
    held = entries[len(kept)]  # entries are in id order: the held ones come last
    cursors = {e.source: e.entry_id for e in kept}
    return kept, cursors, None if kept else held.entry_id.ms - bound


def parse_snapshot(raw: Sequence[Any], sources: dict[str, Source]) -> Snapshot:
    """``SNAPSHOT``'s reply (decoded strings) as a ``Snapshot``; ``sources`` by key."""
    now_ms = int(raw[0]) * 1000 + int(raw[1]) // 1000
    reply: list[tuple[Source, Items]] = []
    for key, items in (raw[2] if len(raw) > 2 and raw[2] else []):
        reply.append((sources[key], [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
                                     for entry_id, flat in items]))
    return Snapshot(now_ms, reply)


class ClusterPushSubscription(PushSubscription):
    """``PushSubscription`` on a Redis Cluster (see the module's docstring)."""

    async def read(self) -> list[PushMessage]:
        """The next entries, oldest first; none when ``block_ms`` passed without any."""
        groups = slot_groups((source, self._key(source)) for source in self.cursors)
        if len(groups) <= 1:
            return await super().read()
        if not await self._wait(groups):
            return []
        deadline = time.monotonic() + self.block_ms / 1000
        while True:
            snapshots = await asyncio.gather(*(self._snapshot(group) for group in groups))
            entries, cursors, hold_ms = merge_snapshots(snapshots, self.count)
            if hold_ms is None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(hold_ms, HOLD_SLEEP_MS) / 1000)
        self.cursors.update(cursors)
        return messages(entries)

    async def _wait(self, groups: Sequence[Sequence[tuple[Source, str]]]) -> bool:
        """Whether a stream has an entry after its cursor within ``block_ms``."""
        tasks = [asyncio.ensure_future(self.redis.xread(
            {key: str(self.cursors[source]) for source, key in group},
            count=1, block=self.block_ms)) for group in groups]
        try:
            pending: set[asyncio.Future[Any]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending,
                                                   return_when=asyncio.FIRST_COMPLETED)
                if any(task.result() for task in done):
                    return True
            return False
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _snapshot(self, group: Sequence[tuple[Source, str]]) -> Snapshot:
        keys = [key for _, key in group]
        raw = await self.redis.execute_command(
            "EVAL", SNAPSHOT, len(keys), *keys, self.count,
            *(str(self.cursors[source]) for source, _ in group))
        return parse_snapshot(raw, {key: source for source, key in group})


def push_subscription(client: Redis, keys: RedisKeys, user_id: str, *, block_ms: int,
                      count: int = READ_COUNT) -> PushSubscription:
    """The subscription for the key layout: ``ClusterPushSubscription`` for the cluster one."""
    kind = ClusterPushSubscription if keys.cluster else PushSubscription
    return kind(client, keys, user_id, block_ms=block_ms, count=count)
