"""Per-user request state in Redis: rate limits and idempotency keys.

Rate limit: a sliding-window counter. Each user has one counter per fixed window
(``RedisKeys.rate_limit``); a request is allowed while ``previous * (1 - elapsed share of
the current window) + current < limit``, which smooths the burst a fixed window allows at
its edges while costing one small script call.

When Redis cannot count (down, full, or known down by the breaker), ``RateLimits`` counts
in process memory instead (``LocalRateLimiter``, the same sliding window, per worker): the
limit never simply switches off while reads fall back to the CQL store.

Idempotency: the first request with a given key stores the event it built (and its
response) under ``RedisKeys.idempotency`` for ``ttl_s``; a retry with the same key and the
same request gets the same event back — same event id, same post or comment id — and
produces it again only if the first attempt never got Kafka's acknowledgement (consumers
deduplicate on the event id). Once acknowledged, the record drops the event and keeps only
the request's fingerprint and the response (a few hundred bytes instead of up to tens of
KB), and each user keeps at most ``max_keys`` records: claiming one more drops the user's
oldest (a retry of that one would then produce a new event), so one token cannot fill Redis.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from feedline.stores.errors import Breaker
from feedline.stores.lua import source
from schemas.redis_keys import RedisKeys

log = logging.getLogger(__name__)

#: The Idempotency-Key under which a user's index of recorded keys is kept; clients' keys
#: match ``[A-Za-z0-9_.:-]{1,128}`` (``serving.writes``), so never this one.
INDEX_SUFFIX = "#index"


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may proceed, and when to retry if not."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


def window_position(now_s: float, window_s: int) -> tuple[int, float]:
    """The number of the window ``now_s`` falls in, and the seconds elapsed in it."""
    index = math.floor(now_s / window_s)
    return index, now_s - index * window_s


def retry_after(limit: int, current: int, previous: int, elapsed_s: float,
                window_s: int) -> int:
    """Whole seconds until the sliding estimate falls below ``limit`` (at least 1)."""
    remaining_s = window_s - elapsed_s
    if current < limit and previous > 0:
        wait = window_s * (1 - (limit - current) / previous) - elapsed_s
        if wait < remaining_s:
            return max(1, math.ceil(wait + 1e-9))
    decay = window_s * (1 - limit / current) if current >= limit else 0.0
    return max(1, math.ceil(remaining_s + max(0.0, decay) + 1e-9))


class RateLimited(Exception):
    """The caller is over its rate limit (``decision`` says when to retry)."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(f"over {decision.limit} requests per minute")
        self.decision = decision


@dataclass(frozen=True, slots=True)
class RateWindow:
    """One user's rate-limit check at one moment: what the Lua ``rate_check`` needs."""

    keys: tuple[str, str]
    """Counters of the current and the previous window."""
    limit: int
    weight: float
    """Share of the previous window still inside the sliding window."""
    elapsed_s: float
    window_s: int

    def args(self) -> list[Any]:
        """``limit, weight, ttl_ms`` as script arguments."""
        return [self.limit, f"{self.weight:.6f}", self.window_s * 2 * 1000]

    def decision(self, allowed: bool, current: int, previous: int) -> RateDecision:
        """The decision for the counters the script saw."""
        if allowed:
            estimate = previous * self.weight + current
            return RateDecision(True, self.limit, max(0, math.floor(self.limit - estimate)), 0)
        wait = retry_after(self.limit, current, previous, self.elapsed_s, self.window_s)
        return RateDecision(False, self.limit, 0, wait)


class RateLimiter:
    """Sliding-window request limits per user."""

    def __init__(self, client: Redis, keys: RedisKeys, *, per_minute: int,
                 window_s: int = 60) -> None:
        self.keys = keys
        self.limit = per_minute
        self.window_s = window_s
        self._script = client.register_script(source("rate_limit.lua"))

    def window(self, user_id: str, now_s: float) -> RateWindow:
        """The check of one request of ``user_id`` at ``now_s``."""
        index, elapsed = window_position(now_s, self.window_s)
        return RateWindow((self.keys.rate_limit(user_id, index),
                           self.keys.rate_limit(user_id, index - 1)),
                          self.limit, 1 - elapsed / self.window_s, elapsed, self.window_s)

    async def check(self, user_id: str, now_s: float) -> RateDecision:
        """Count one request of ``user_id`` at ``now_s`` unless it is over the limit."""
        window = self.window(user_id, now_s)
        allowed, current, previous = await self._script(keys=list(window.keys),
                                                         args=window.args())
        return window.decision(bool(allowed), current, previous)


class LocalRateLimiter:
    """``RateLimiter``'s sliding window in process memory (one worker's view).

    Keeps the newest ``max_subjects`` subjects; an older one forgotten starts afresh.
    """

    def __init__(self, *, per_minute: int, window_s: int = 60,
                 max_subjects: int = 100_000) -> None:
        self.limit = per_minute
        self.window_s = window_s
        self.max_subjects = max_subjects
        self._counts: OrderedDict[str, tuple[int, int, int]] = OrderedDict()

    def check(self, subject: str, now_s: float) -> RateDecision:
        """Count one request of ``subject`` at ``now_s`` unless it is over the limit."""
        index, elapsed = window_position(now_s, self.window_s)
        seen_index, seen_current, seen_previous = self._counts.pop(subject, (index, 0, 0))
        if seen_index == index:
            current, previous = seen_current, seen_previous
        elif seen_index == index - 1:
            current, previous = 0, seen_current
        else:
            current, previous = 0, 0
        window = RateWindow((subject, subject), self.limit, 1 - elapsed / self.window_s,
                            elapsed, self.window_s)
        allowed = previous * window.weight + current < self.limit
        if allowed:
            current += 1
        self._counts[subject] = (index, current, previous)
        if len(self._counts) > self.max_subjects:
            self._counts.popitem(last=False)
        return window.decision(allowed, current, previous)


class RateLimits:
    """A rate limit counted in Redis, or in process memory while Redis cannot count."""

    def __init__(self, limiter: RateLimiter, breaker: Breaker, *, what: str) -> None:
        self.redis = limiter
        self.local = LocalRateLimiter(per_minute=limiter.limit, window_s=limiter.window_s)
        self.breaker = breaker
        self.what = what
        # Imported here: feed_reader imports this module (through feed_cache).
        from feedline.stores.feed_reader import REDIS_DOWN
        self._redis_down = REDIS_DOWN

    @property
    def limit(self) -> int:
        """Requests per window."""
        return self.redis.limit

    async def check(self, subject: str, now_s: float) -> RateDecision:
        """Count one request of ``subject``: in Redis, else in this process."""
        if self.breaker.allows():
            try:
                return await self.redis.check(subject, now_s)
            except self._redis_down as error:
                self.breaker.trip()
                log.warning("%s rate limit counted in process: redis unavailable (%s)",
                            self.what, error)
        return self.local.check(subject, now_s)


@dataclass(frozen=True, slots=True)
class IdempotentRecord:
    """What a request with an Idempotency-Key produced."""

    fingerprint: str
    """Hash of the request (method, path, body): a key reused for another request is an error."""
    event: str
    """The encoded event (JSON text), produced again verbatim on a retry; empty once Kafka
    acknowledged it (it is never produced again then)."""
    response: dict[str, Any]
    """The body answered."""
    acknowledged: bool = False
    """Kafka acknowledged the event (a retry need not produce it again)."""

    def dumps(self) -> str:
        """JSON text stored in Redis (without the event once it is acknowledged)."""
        data: dict[str, Any] = {"fingerprint": self.fingerprint, "response": self.response,
                                "acknowledged": self.acknowledged}
        if not self.acknowledged:
            data["event"] = self.event
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> IdempotentRecord:
        """Parse what ``dumps`` stored."""
        data = json.loads(text)
        return cls(data["fingerprint"], data.get("event", ""), data["response"],
                   bool(data.get("acknowledged")))


class IdempotencyRecords:
    """Idempotency-Key records of every user, in Redis."""

    def __init__(self, client: Redis, keys: RedisKeys, *, ttl_s: int,
                 max_keys: int = 1000) -> None:
        self.redis = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._claim = client.register_script(source("claim.lua"))

    def index_key(self, user_id: str) -> str:
        """The user's index of recorded keys (``#`` is never in a client's key)."""
        return self.keys.idempotency(user_id, INDEX_SUFFIX)

    async def claim(self, user_id: str, key: str, record: IdempotentRecord,
                    now_s: float | None = None) -> IdempotentRecord:
        """Store ``record`` unless the key already has one; returns the one that counts."""
        now_ms = int((time.time() if now_s is None else now_s) * 1000)
        found = await self._claim(
            keys=[self.keys.idempotency(user_id, key), self.index_key(user_id)],
            args=[record.dumps(), self.ttl_s, now_ms, self.max_keys])
        return IdempotentRecord.loads(found) if found else record

    async def get(self, user_id: str, key: str) -> IdempotentRecord | None:
        """The record stored under the key, if any."""
        found = await self.redis.get(self.keys.idempotency(user_id, key))
        return IdempotentRecord.loads(found) if found else None

    async def acknowledge(self, user_id: str, key: str, record: IdempotentRecord) -> None:
        """Mark the record's event as acknowledged by Kafka (keeps the expiry).

        The stored record drops the event: an acknowledged event is never produced again.
        """
        done = IdempotentRecord(record.fingerprint, record.event, record.response, True)
        await self.redis.set(self.keys.idempotency(user_id, key), done.dumps(), xx=True,
                             keepttl=True)
