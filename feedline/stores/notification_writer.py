"""Apply notification effects to the CQL store (system of record) and Redis (serving).

One ``write`` call takes the effects of many events, for any recipients, and:

1. runs the CQL statements of ``notification_groups`` — every live group has one row at
   its ``latest_at``: an upsert adds the row (and removes the one at its previous
   ``latest_at`` when the group moved), a delete removes it. Each statement carries an
   explicit write time that grows in effect order, so last-writer-wins keeps the
   effects' order whatever the grouping; the statements of one recipient (one partition)
   go in unlogged batches, executed concurrently;
2. then updates Redis (``schemas.redis_notifications``), one script call per effect in
   one pipeline (``notification_apply.lua``; on a Redis Cluster through
   ``feedline.stores.cluster_writes``, each call on its recipient's slot): the
   recipient's ZSET holds the newest ``cap`` groups and the HASH their payloads. A
   missing ZSET means "not cached": an upsert rebuilds it from the CQL listing
   (``notification_groups_first``) instead, and a full ZSET that loses a group is
   refilled from there, so Redis always holds exactly the newest ``cap`` live groups
   (the ``CAPPED`` rule).

The writer is meant to run keyed by recipient (the notifications job): every effect of
one recipient passes through one writer, in order, which is what makes its clock a valid
order for that recipient's rows. Applying the same effects twice, in order, changes
nothing. Each effect also appends a realtime ``notification`` event to the recipient's
push stream (``feedline.stores.push``, read by ``GET /v1/stream``), after both stores are
written; ``on_written(recipient, group_keys)`` is then called once per recipient (a no-op
unless ``notify`` is given).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from cassandra import OperationTimedOut, Unavailable, WriteTimeout
from cassandra.query import BatchStatement, BatchType

from feedline.rules.effects import NotificationDelete, NotificationEffect, NotificationUpsert
from feedline.stores.cluster_writes import ScriptPipeline, slot_multi_script, write_pipeline
from feedline.stores.cql import execute_all
from feedline.stores.lua import source
from feedline.stores.push import queue_notification_event
from schemas.cql_statements import bind_write, dt_to_ms, ms_to_dt, prepare
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import (
    NOTIFICATION_CAP,
    NOTIFICATIONS_LISTING,
    GroupPayload,
    encode_group,
)

_TRANSIENT = (WriteTimeout, OperationTimedOut, Unavailable)
_WRITES = ("notification_group_add", "notification_group_remove")
#: Replies of ``notification_apply.lua``.
_NOT_CACHED, _APPLIED, _REFILL = 0, 1, 2

Notify = Callable[[str, tuple[str, ...]], object]


class NotificationWriter:
    """Writes notification effects to one keyspace and one Redis key prefix."""

    def __init__(
        self,
        session: Any,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        cap: int = NOTIFICATION_CAP,
        notify: Notify | None = None,
        concurrency: int = 16,
        retries: int = 6,
        batch_size: int = 50,
    ) -> None:
        self.session = session
        self.redis = client
        self.keys = keys
        self.cap = cap
        self.notify = notify
        self.concurrency = concurrency
        self.retries = retries
        self.batch_size = batch_size
        self.stmts = prepare(session, (*_WRITES, NOTIFICATIONS_LISTING))
        self._apply = client.register_script(source("notification_apply.lua"))
        self._slot_multi = slot_multi_script(client)  # on a cluster only
        self._last_micros = 0

    # --- CQL ----------------------------------------------------------------------------

    @staticmethod
    def statements(effect: NotificationEffect) -> list[tuple[str, tuple[Any, ...]]]:
        """(statement name, bind values without the write time) of one effect, in order."""
        if isinstance(effect, NotificationDelete):
            return [("notification_group_remove",
                     (effect.recipient_id, ms_to_dt(effect.latest_ms), effect.group_key))]
        if not isinstance(effect, NotificationUpsert):
            raise TypeError(f"not a notification effect: {effect!r}")
        out: list[tuple[str, tuple[Any, ...]]] = []
        moved_from = effect.previous_latest_ms
        if moved_from is not None and moved_from != effect.latest_ms:
            out.append(("notification_group_remove",
                        (effect.recipient_id, ms_to_dt(moved_from), effect.group_key)))
        out.append(("notification_group_add", (
            effect.recipient_id, ms_to_dt(effect.latest_ms), effect.group_key, effect.type,
            effect.post_id, effect.count, list(effect.actors))))
        return out

    def _write_time(self) -> int:
        """A microsecond write time, strictly greater than the previous one."""
        self._last_micros = max(self._last_micros + 1, time.time_ns() // 1000)
        return self._last_micros

    def _batches(self, by_recipient: dict[str, list[NotificationEffect]]) -> list[Any]:
        """Each recipient's statements, stamped in effect order, in unlogged batches."""
        out: list[Any] = []
        for effects in by_recipient.values():
            ops = [op for effect in effects for op in self.statements(effect)]
            for start in range(0, len(ops), self.batch_size):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for name, values in ops[start:start + self.batch_size]:
                    batch.add(self.stmts[name], bind_write(name, values, self._write_time()))
                out.append((batch, None))
        return out

    def _run_cql(self, statements: list[Any]) -> None:
        for attempt in range(self.retries + 1):
            try:
                execute_all(self.session, statements, concurrency=self.concurrency)
                return
            except _TRANSIENT:
                if attempt == self.retries:
                    raise
                time.sleep(min(5.0, 0.2 * 2**attempt))

    # --- Redis --------------------------------------------------------------------------

    def _redis(self, effects: Sequence[NotificationEffect]) -> None:
        k, cap = self.keys, self.cap
        pipe = ScriptPipeline(self.redis)
        for e in effects:
            zset, payloads = k.notifications(e.recipient_id), k.notification_groups(e.recipient_id)
            if isinstance(e, NotificationUpsert):
                payload = encode_group(e.type, e.post_id, e.count, e.actors, e.latest_ms)
                args: list[Any] = [cap, "upsert", e.group_key, e.latest_ms, payload]
            else:
                args = [cap, "delete", e.group_key]
            pipe.script(self._apply, [zset, payloads], args)
        reload = {e.recipient_id for e, reply in zip(effects, pipe.execute(), strict=True)
                  if reply in (_NOT_CACHED, _REFILL)}
        self.reload(sorted(reload))

    def _push(self, effects: Sequence[NotificationEffect]) -> None:
        """Append a realtime ``notification`` event per effect to its recipient's stream.

        The group as written now, or gone (count 0): ``feedline.stores.push``.
        """
        pipe = self.redis.pipeline(transaction=False)
        for e in effects:
            group = (GroupPayload(e.type, e.post_id, e.count, list(e.actors), e.latest_ms)
                     if isinstance(e, NotificationUpsert) else None)
            queue_notification_event(pipe, self.keys, e.recipient_id, e.group_key, group)
        pipe.execute()

    def reload(self, recipients: Sequence[str]) -> None:
        """Rebuild recipients' cached lists from the CQL store (the newest ``cap`` groups).

        On one Redis in one MULTI/EXEC; on a cluster each recipient's list (its keys share
        the recipient's tag) in one atomic step of its slot.
        """
        if not recipients:
            return
        pages = execute_all(
            self.session,
            [(self.stmts[NOTIFICATIONS_LISTING], (r, self.cap)) for r in recipients],
            concurrency=self.concurrency)
        pipe = write_pipeline(self.redis, self._slot_multi, transaction=True)
        for recipient, rows in zip(recipients, pages, strict=True):
            zset, payloads = self.keys.notifications(recipient), \
                self.keys.notification_groups(recipient)
            pipe.delete(zset, payloads)
            scores: dict[str, int] = {}
            fields: dict[str, bytes] = {}
            for row in rows:
                latest = dt_to_ms(row.latest_at)
                scores[row.group_key] = latest
                fields[row.group_key] = encode_group(row.type, row.post_id, int(row.count),
                                                     list(row.actors or ()), latest)
            if scores:
                pipe.zadd(zset, scores)
                pipe.hset(payloads, mapping=fields)
        pipe.execute()

    # --- both ---------------------------------------------------------------------------

    def write(self, effects: Iterable[NotificationEffect]) -> int:
        """Apply effects: the CQL store first, then Redis. Returns how many were applied.

        A CQL timeout or unavailable error is retried with backoff (every write is
        idempotent, so re-sending the whole batch is safe); after ``retries`` the error
        propagates and the job restarts from its last checkpoint.
        """
        batch = list(effects)
        if not batch:
            return 0
        by_recipient: dict[str, list[NotificationEffect]] = {}
        for effect in batch:
            by_recipient.setdefault(effect.recipient_id, []).append(effect)
        self._run_cql(self._batches(by_recipient))
        self._redis(batch)
        self._push(batch)
        for recipient, written in by_recipient.items():
            self.on_written(recipient, tuple(dict.fromkeys(e.group_key for e in written)))
        return len(batch)

    def on_written(self, recipient_id: str, group_keys: tuple[str, ...]) -> None:
        """Called once per recipient after each write reached both stores.

        Upserts and deletes alike: where a realtime "notification" event is published.
        """
        if self.notify is not None:
            self.notify(recipient_id, group_keys)
