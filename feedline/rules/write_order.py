"""The order of writes on one row, taken from the rules: write times and row owners. Pure.

Every row, cell and cached member the effects write belongs to exactly one rules key (a
timeline row and a post to the author's fan-out key, a follow edge to the followee's, a
counter to its post or user key; ``feedline.rebuild.image``). Each rules key keeps an
``EventClock`` in its checkpointed state: a hybrid logical clock in microseconds,
``max(previous + 1, now + offset)`` for an event's first effect and one more for each
effect after it, ``now`` being the wall clock of the operator applying the event. So, per
row, write times grow in the order the rules applied the events and emitted the effects —
never from a writer's clock — and the stores keep the value with the highest write time
(CQL ``USING TIMESTAMP``, the Redis version guard in ``feedline.stores.lua``): any number of
writers, or a replay of written effects, cannot put an older value over a newer one.

A restore: the job restarts from its last checkpoint and replays the events since, maybe
in another order (two topics interleave differently), while the failed attempt's writes
after that checkpoint are already in the stores. Every write of the new attempt must land
after those. The wall clock has moved on since the failure, so it does on one machine; a
key restored on another TaskManager whose clock is behind moves ahead by
``RESTORE_MARGIN_US`` per restart attempt (``resume``), which covers the clock skew between
TaskManagers. Event time is *not* the clock: events after a checkpoint can be minutes apart
in event time, so no fixed margin covers what a failed attempt gave out, and a consumer
catching up after a rebuild (which writes at its own wall-clock time) would have its writes
lose to the rebuild's.

Writers are keyed by the *owner* of what an effect writes (``write_owner``): the reader
for timeline rows and followed celebrities, the author for posts, outboxes, the celebrity
flag and follow edges, the post or user for counters. One owner's rows are always written
by one writer, in the order its effects arrive, so a cached set can be rebuilt from its CQL
listing by the writer that writes both. Owners are hashed into ``WRITER_BUCKETS`` stable
buckets (``owner_bucket``), the keys of the writer operator: a writer batches across the
owners of a bucket, and a bucket's unwritten batch lives in that bucket's keyed state.
Moving an owner to another bucket (a new bucket count, restored from a savepoint of the
old one) keeps every value right: the write times, not the order of the writers, decide
which write wins, and what a writer caches by a condition follows the condition whichever
write comes first (an outbox follows its author's celebrity flag: ``FeedWriter``). One
window remains while the old bucket's restored effects are still being written: two
writers own the owner, and a cached set rebuilt from a CQL read taken just before the other
writer's write can miss that write until the set's next change (``feedctl verify`` shows
it, ``feedctl rebuild`` repairs it).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

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
from feedline.rules.flink_keys import DEFAULT_MAX_PARALLELISM, key_group

#: Buckets the owners of writes are hashed into: the keys of the writer operator, so at most
#: this many writer instances get work. Each bucket costs its own keyed-state writes and
#: timer per batch: 16 buckets carried ~1.25x the deliveries per second of 128 at
#: parallelism 1 (docs/BENCHMARKS.md, issue 11). A divisor of the maximum parallelism (128).
WRITER_BUCKETS = 16

#: Bucket names up to this one ("0" .. "127") were used before (128 buckets): a savepoint
#: of that time holds unwritten effects under them, so the ticks still visit them all.
LEGACY_BUCKETS = 128


def _spread_names(count: int, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> tuple[str, ...]:
    """``count`` decimal bucket names, one in each of ``count`` equal ranges of key groups.

    Flink gives each of N writer instances a contiguous range of key groups; with one name
    per ``max_parallelism / count`` groups, every N dividing ``count`` gets the same number
    of buckets (hashed names fall unevenly: 128 names gave 75 and 53 at N = 2). The lowest
    such names are taken, so they are among the legacy names.
    """
    if max_parallelism % count:
        raise ValueError(f"{count} buckets do not divide {max_parallelism} key groups evenly")
    width = max_parallelism // count
    names: dict[int, str] = {}
    candidate = 0
    while len(names) < count:
        names.setdefault(key_group(str(candidate), max_parallelism) // width, str(candidate))
        candidate += 1
    return tuple(names[i] for i in range(count))


#: The writer bucket names (``owner_bucket``), in key-group order.
BUCKET_NAMES = _spread_names(WRITER_BUCKETS)

#: How far a rules key's write clock moves ahead per restart attempt (µs): more than the wall
#: clocks of two TaskManagers can differ (NTP keeps them within milliseconds).
RESTORE_MARGIN_US = 1_000_000

#: (write time in microseconds, effect): one effect as the writers receive it.
StampedEffect = tuple[int, Effect]


@dataclass
class EventClock:
    """A rules key's write clock (microseconds): a hybrid logical clock (module docstring)."""

    last_us: int = 0
    offset_us: int = 0
    """Added to the wall clock: ``RESTORE_MARGIN_US`` per restart of the job (``resume``)."""

    def stamp(self, now_us: int, count: int) -> int:
        """The write time of the first of an event's ``count`` effects (the rest follow by 1).

        ``max(last + 1, now_us + offset)``: after every write time given before, and
        never behind the wall clock ``now_us`` of the operator applying the event.
        """
        first = max(self.last_us + 1, int(now_us) + self.offset_us)
        if count > 0:
            self.last_us = first + count - 1
        return first

    def resume(self, attempt: int, margin_us: int = RESTORE_MARGIN_US) -> None:
        """Before an operator in restart ``attempt`` of the job uses this clock.

        After a failure the job restarts from its last checkpoint with ``attempt`` one
        higher; writes after that checkpoint may be in the stores already, at write times
        this restored clock (or a clock the checkpoint did not hold yet) gave out from an
        earlier wall clock. The events replayed since must land after those writes. The
        wall clock has moved on; in case this key now runs on a TaskManager whose clock is
        behind, the clock moves ahead to ``attempt * margin_us`` past the wall clock.
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
    """The writer key of an owner: one of ``BUCKET_NAMES``, the same in every process."""
    return BUCKET_NAMES[zlib.crc32(owner.encode()) % WRITER_BUCKETS]


#: A (write time, effect, ...) tuple: a `StampedEffect`, perhaps with more of its own.
StampedItem = TypeVar("StampedItem", bound=tuple[Any, ...])


def split_by_bucket(items: Iterable[StampedItem]) -> Iterator[tuple[str, list[StampedItem]]]:
    """(writer key, its items in their order) for each bucket the items' effects write to."""
    buckets: dict[str, list[StampedItem]] = {}
    for item in items:
        buckets.setdefault(owner_bucket(write_owner(item[1])), []).append(item)
    yield from buckets.items()
