"""The order of writes on one row, taken from the events: write times and row owners. Pure.

Every row, cell and cached member the effects write belongs to exactly one rules key (a
timeline row and a post to the author's fan-out key, a follow edge to the followee's, a
counter to its post or user key; ``feedline.rebuild.image``). Each rules key keeps an
``EventClock``: a logical clock in microseconds driven by the events the key applies,
``max(previous + 1, event_time_ms * 1000)`` for its first effect and one more for each
effect after it. So, per row, write times grow in the order the rules emitted the effects,
they stay close to event time, and they come from the key's own checkpointed state — never
from a writer's clock. Any number of writers, a replay of written effects or a restore
therefore cannot put an older value over a newer one: the stores keep the value with the
highest write time (CQL ``USING TIMESTAMP``, the Redis version guard in
``feedline.stores.lua``).

Writers are keyed by the *owner* of what an effect writes (``write_owner``): the reader
for timeline rows and followed celebrities, the author for posts, outboxes, the celebrity
flag and follow edges, the post or user for counters. One owner's rows are always written
by one writer, in the order its effects arrive, so a cached set can be rebuilt from its CQL
listing by the writer that writes both. Owners are hashed into ``WRITER_BUCKETS`` stable
buckets (``owner_bucket``), the keys of the writer operator: a writer batches across the
owners of a bucket, and a bucket's unwritten batch lives in that bucket's keyed state.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from feedline.rules.effects import (
    CelebritySet,
    EdgeDelete,
    EdgeUpsert,
    Effect,
    FollowedCelebrityAdd,
    FollowedCelebrityRemove,
    OutboxAdd,
    OutboxClear,
    OutboxRemove,
    PostCountersSet,
    PostRetract,
    PostUpsert,
    TimelineAdd,
    TimelineRemove,
    UserCounterSet,
)

#: Buckets the owners of writes are hashed into: the keys of the writer operator. As many as
#: Flink's default maximum parallelism (128), so every writer subtask gets buckets.
WRITER_BUCKETS = 128

#: How far a rules key's write clock moves ahead when its state is restored (µs): more than
#: the write times it can have given out after the checkpoint it was restored from.
RESTORE_MARGIN_US = 1_000_000

#: (write time in microseconds, effect): one effect as the writers receive it.
StampedEffect = tuple[int, Effect]


@dataclass
class EventClock:
    """A rules key's write clock (microseconds), advanced by the events the key applies."""

    last_us: int = 0
    offset_us: int = 0
    """Added to event time: ``RESTORE_MARGIN_US`` per restart of the job (``resume``)."""

    def stamp(self, event_time_ms: int, count: int) -> int:
        """The write time of the first of an event's ``count`` effects (the rest follow by 1).

        ``max(last + 1, event_time_ms * 1000 + offset)``: after every write time given
        before, and never behind the event's own time.
        """
        first = max(self.last_us + 1, int(event_time_ms) * 1000 + self.offset_us)
        if count > 0:
            self.last_us = first + count - 1
        return first

    def resume(self, attempt: int, margin_us: int = RESTORE_MARGIN_US) -> None:
        """Before an operator in restart ``attempt`` of the job uses this clock.

        After a failure the job restarts from its last checkpoint with ``attempt`` one
        higher; writes after that checkpoint may be in the stores already, at write times
        this restored clock (or a clock the checkpoint did not hold yet) gave out. The
        events replayed since may arrive in another order (two topics interleave
        differently) and give other effects: they must land after those writes, not
        before. So the clock and every later write time move ahead to ``attempt *
        margin_us`` past event time — beyond what one attempt could have given out after
        its checkpoint (fewer than ``margin_us`` write times per key).
        """
        behind = attempt * margin_us - self.offset_us
        if behind > 0:
            self.offset_us += behind
            self.last_us += behind


def stamped(first_us: int, effects: Sequence[Effect]) -> list[StampedEffect]:
    """The effects with consecutive write times from ``first_us``."""
    return [(first_us + i, e) for i, e in enumerate(effects)]


def write_owner(effect: Effect) -> str:
    """Whose rows an effect writes (the same owner for every effect on a given row)."""
    match effect:
        case TimelineAdd() | TimelineRemove() | FollowedCelebrityAdd() | FollowedCelebrityRemove():
            return effect.user_id
        case PostUpsert() | PostRetract() | OutboxAdd() | OutboxRemove() | OutboxClear() \
                | CelebritySet():
            return effect.author_id
        case EdgeUpsert() | EdgeDelete():
            return effect.followee_id
        case PostCountersSet():
            return f"post:{effect.post_id}"
        case UserCounterSet():
            return f"user:{effect.user_id}"
    raise TypeError(f"unknown effect {effect!r}")


def owner_bucket(owner: str) -> str:
    """The writer key of an owner: one of ``WRITER_BUCKETS``, the same in every process."""
    return str(zlib.crc32(owner.encode()) % WRITER_BUCKETS)


def split_by_bucket(effects: Iterable[StampedEffect]) -> Iterator[tuple[str, list[StampedEffect]]]:
    """(writer key, its effects in their order) for each bucket the effects write to."""
    buckets: dict[str, list[StampedEffect]] = {}
    for item in effects:
        buckets.setdefault(owner_bucket(write_owner(item[1])), []).append(item)
    yield from buckets.items()
