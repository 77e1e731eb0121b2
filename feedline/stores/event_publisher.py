"""Produce feed events to Kafka from asyncio code, bounded in time, recovering after outages.

kafka-python's producer is thread-based: ``send`` may block for broker metadata (up to
``max_block_ms``) and its future resolves on the producer's I/O thread. So ``send`` runs
in a worker thread and the future is bridged back to the event loop. Every produce is
``acks=all``, idempotent, keyed by the topic's partition key.

When Kafka cannot be reached the caller gets ``StoreUnavailable`` within
``max_block_ms + delivery_timeout_ms`` (plus a second), and a circuit breaker spares the
API's threads during the outage: for ``retry_after_s`` after a failure every publish fails
at once; then exactly one publish goes through as a probe (half-open) while the others still
fail fast; the probe's success closes the breaker, its failure opens it again.

Why the producer is replaced after a failed delivery (kafka-python 3.0, read in
``kafka/producer/sender.py`` and ``transaction_manager.py``, and seen by freezing a broker
with SIGSTOP): when a batch that was already sent expires (the delivery timeout passes while
the broker is frozen), the sender resets the idempotent producer id to -1 but leaves the
transaction state READY, where ``init_producer_id`` does nothing. The I/O thread then waits
for a producer id forever: no record is sent again and no later future ever resolves, not
even with a timeout. Fatal errors (``FATAL_ERROR`` state) stop it the same way, and the
sequence/epoch errors (``OutOfOrderSequenceNumberError``, ``UnknownProducerIdError``,
``InvalidProducerEpochError``) reset or bump its state. Telling these apart needs private
state, so every failure *of a delivery* (the future's errback, or no answer within the
bound) discards the producer and the next attempt builds a new one. Errors raised by
``send`` itself (metadata not fetched within ``max_block_ms``, a failed bootstrap) leave
the producer usable: it recovered by itself in the same experiments, so it is kept.

``close`` on a stuck producer raises ``KafkaTimeoutError`` from its flush and leaves the
I/O thread running, so a discarded producer is closed in a daemon thread, and its sender is
force-closed when the graceful close times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from feedline.settings import KafkaSettings
from feedline.stores.errors import StoreUnavailable
from schemas.event_contracts import Event, encode_event

log = logging.getLogger(__name__)

#: How long a discarded producer may flush before its I/O thread is force-closed.
CLOSE_TIMEOUT_S = 1.0
#: How long a readiness answer about the broker is reused (``/readyz`` may be hammered).
READY_CACHE_S = 2.0


def topic_of(kafka: KafkaSettings, role: str) -> str:
    """The configured topic of a topic role (``uploads``, ``follows``, ``engagements``)."""
    return {"uploads": kafka.uploads_topic, "follows": kafka.follows_topic,
            "engagements": kafka.engagements_topic}[role]


def dispose(producer: Any, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close a producer, force-closing its I/O thread if a graceful close does not stop it.

    Blocking: call it in a thread. Never raises (the producer is being thrown away).
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except Exception as error:  # a stuck producer's flush times out: stop its thread below
        log.info("closing a discarded Kafka producer: %s: %s", type(error).__name__, error)
    sender = getattr(producer, "_sender", None)  # kafka-python offers no public force-close
    if sender is None:
        return
    try:
        sender.force_close()
        sender.join(timeout_s)
        producer.close(timeout=0)  # every batch is aborted now: marks the producer closed
    except Exception as error:
        log.warning("force-closing a discarded Kafka producer: %s: %s",
                    type(error).__name__, error)


def _close_admin(admin: Any) -> None:
    try:
        admin.close()
    except Exception as error:
        log.warning("closing a Kafka admin client: %s: %s", type(error).__name__, error)


def in_background(close: Callable[[Any], None], client: Any) -> None:
    """``close(client)`` in a daemon thread: never blocks the caller, even on a stuck client."""
    threading.Thread(target=close, args=(client,), name="kafka-close", daemon=True).start()


class ReadinessAdmin(KafkaAdminClient):
    """A ``KafkaAdminClient`` that stops its I/O thread when its bootstrap fails.

    kafka-python 3.0 starts the admin client's I/O thread before bootstrapping and leaves it
    running when the bootstrap raises: one leaked thread per check while Kafka is down.
    """

    def __init__(self, **configs: Any) -> None:
        try:
            super().__init__(**configs)
        except BaseException:
            self._closed = False  # set only after a bootstrap; close() needs it
            with contextlib.suppress(Exception):
                self.close()
            raise


class EventPublisher:
    """One lazily created producer shared by a process's requests, with a circuit breaker."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        max_block_ms: int,
        delivery_timeout_ms: int,
        retry_after_s: int,
        client_id: str = "feedline-api",
        producer_factory: Callable[..., Any] = KafkaProducer,
        admin_factory: Callable[..., Any] = ReadinessAdmin,
    ) -> None:
        self.kafka = kafka
        self.max_block_ms = max_block_ms
        self.delivery_timeout_ms = delivery_timeout_ms
        self.retry_after_s = retry_after_s
        self.client_id = client_id
        self._factory = producer_factory
        self._producer: Any = None
        self._lock = threading.Lock()  # guards _producer; held briefly (the loop takes it)
        self._create_lock = threading.Lock()  # one producer built at a time (worker threads)
        # The breaker (touched on the event loop only, so no lock).
        self._open_until = 0.0
        self._probing = False
        self._failing_since: float | None = None
        self.broker = BrokerCheck(kafka, f"{client_id}-ready", admin_factory)

    def _options(self) -> dict[str, Any]:
        request_timeout_ms = max(self.delivery_timeout_ms - 100, 400)
        return {
            **self.kafka.client_options(),
            "client_id": self.client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 1,
            "max_block_ms": self.max_block_ms,
            "bootstrap_timeout_ms": self.max_block_ms,
            "request_timeout_ms": request_timeout_ms,
            "delivery_timeout_ms": self.delivery_timeout_ms,
            "reconnect_backoff_max_ms": 1000,
        }

    def _ensure_producer(self) -> Any:
        """The producer, created on first use or after a discard (blocking: a worker thread)."""
        with self._create_lock:
            with self._lock:
                if self._producer is not None:
                    return self._producer
            producer = self._factory(**self._options())
            with self._lock:
                self._producer = producer
            return producer

    def _discard(self, producer: Any) -> None:
        """Forget ``producer`` (if still current) and close it in the background."""
        with self._lock:
            if producer is None or self._producer is not producer:
                return
            self._producer = None
        log.warning("discarding the Kafka producer after a failed delivery; "
                    "the next publish creates a new one")
        in_background(dispose, producer)

    def _send(self, event: Event) -> tuple[Any, Any]:
        """Hand ``event`` to the producer: (the producer, its delivery future). Blocking."""
        return self._send_record(topic_of(self.kafka, event.role), event.key.encode(),
                                 encode_event(event))

    def _send_record(self, topic: str, key: bytes, value: bytes) -> tuple[Any, Any]:
        """Hand one record to the producer: (the producer, its delivery future). Blocking."""
        producer = self._ensure_producer()
        return producer, producer.send(topic, key=key, value=value)

    def _open(self, error: BaseException) -> StoreUnavailable:
        self._open_until = time.monotonic() + self.retry_after_s
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        why = str(error) or f"no acknowledgement within {self._limit_s():g} s"
        return StoreUnavailable("kafka", f"{type(error).__name__}: {why}",
                                retry_after_s=self.retry_after_s)

    def _limit_s(self) -> float:
        """The longest a publish may take (the bounded-time contract, plus a second)."""
        return (self.max_block_ms + self.delivery_timeout_ms) / 1000 + 1

    def check_open(self) -> None:
        """Raise ``StoreUnavailable`` while the breaker is open or its probe is in flight."""
        remaining = self._open_until - time.monotonic()
        if remaining > 0:
            raise StoreUnavailable("kafka", "unreachable (failing fast after a recent error)",
                                   retry_after_s=max(1, round(remaining)))
        if self._probing:
            raise StoreUnavailable("kafka", "unreachable (failing fast while a probe is "
                                   "in flight after a recent error)",
                                   retry_after_s=max(1, self.retry_after_s))

    def publishing_fails(self) -> str | None:
        """Why a publish cannot succeed now (breaker open or half-open), or None."""
        if self._failing_since is None:
            return None
        if self._probing:
            return "a probe publish is in flight after a failure"
        if self._open_until > time.monotonic():
            return "publishes failed recently (breaker open)"
        return None  # the next publish is the probe: BrokerCheck tells whether it can work

    async def publish(self, event: Event) -> None:
        """Produce ``event`` and wait for the acks=all acknowledgement."""
        await self._publish(lambda: self._send(event))

    async def publish_record(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce a record that is not a feed event (same bound, same breaker)."""
        await self._publish(lambda: self._send_record(topic, key, value))

    async def _publish(self, send: Callable[[], tuple[Any, Any]]) -> None:
        self.check_open()
        probe = self._failing_since is not None  # half-open: this publish is the one probe
        if probe:
            self._probing = True  # no await since check_open: no other publish got here
        settled = False
        try:
            await self._produce(send)
            settled = True
        except (KafkaError, TimeoutError, OSError) as error:
            settled = True
            raise self._open(error) from error
        finally:
            if probe:
                self._probing = False
                if not settled:  # cancelled: let the next publish probe at once
                    self._open_until = 0.0
        if probe:
            log.info("Kafka publishes succeed again after %.1f s: breaker closed",
                     time.monotonic() - (self._failing_since or time.monotonic()))
            self._failing_since = None

    async def _produce(self, send: Callable[[], tuple[Any, Any]]) -> None:
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[Any] = loop.create_future()

        def settle(value: Any, error: BaseException | None) -> None:
            if not acked.done():
                if error is not None:
                    acked.set_exception(error)
                else:
                    acked.set_result(value)

        def report(value: Any, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:  # the loop closed meanwhile
                pass

        producer: Any = None  # known once send() returned: later errors are delivery errors
        try:
            async with asyncio.timeout(self._limit_s()):
                producer, future = await asyncio.to_thread(send)
                future.add_callback(lambda meta: report(meta, None))
                future.add_errback(lambda error: report(None, error))
                await acked
        except (KafkaError, OSError, TimeoutError):
            # A failed or unanswered delivery may have left the producer stuck; an error
            # raised by send() itself (producer None) did not.
            self._discard(producer)
            raise

    async def ready(self, timeout_s: float = 2.0) -> None:
        """Raise ``StoreUnavailable`` unless a publish can succeed now.

        Not while the breaker is open or its probe is in flight (no I/O); otherwise the
        broker must answer a metadata request for the event topics (``BrokerCheck``, whose
        answer is reused for ``READY_CACHE_S``: no connection per call).
        """
        reason = self.publishing_fails()
        if reason is not None:
            raise StoreUnavailable("kafka", reason)
        await self.broker.check(timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Flush and close the producer and the readiness client (blocking)."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            dispose(producer, timeout_s)
        self.broker.close()


class BrokerCheck:
    """Whether the broker answers a metadata request for the event topics, cached briefly.

    One admin client is kept (one connection, not one per check), replaced after a failed
    check; one check runs at a time and every caller waits for the same one.
    """

    def __init__(self, kafka: KafkaSettings, client_id: str,
                 admin_factory: Callable[..., Any] = ReadinessAdmin,
                 cache_s: float = READY_CACHE_S) -> None:
        self.kafka = kafka
        self.client_id = client_id
        self.cache_s = cache_s
        self._factory = admin_factory
        self._admin: Any = None
        self._answer: tuple[float, str | None] | None = None  # (when, why down or None)
        self._running: asyncio.Future[str | None] | None = None

    def _describe(self, timeout_s: float) -> str | None:
        """Why the broker cannot take a publish now, or None (blocking)."""
        try:
            if self._admin is None:
                timeout_ms = max(int(timeout_s * 1000) - 250, 100)  # answers before check()
                self._admin = self._factory(
                    **self.kafka.client_options(), client_id=self.client_id,
                    request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
                    reconnect_backoff_max_ms=1000)
            topics = self._admin.describe_topics(list(self.kafka.event_topics))
        except Exception as error:  # whatever the client raised, the broker is not usable
            admin, self._admin = self._admin, None
            if admin is not None:
                in_background(_close_admin, admin)
            return f"{type(error).__name__}: {error}"
        for topic in topics:
            leaders = [p.get("leader_id", -1) for p in topic.get("partitions", [])]
            if topic.get("error_code", 0) != 0 or not leaders or min(leaders) < 0:
                return f"topic {topic.get('name')} has no leader (error {topic.get('error_code')})"
        return None

    async def check(self, timeout_s: float) -> None:
        """Raise ``StoreUnavailable`` unless the broker answered (now or within the cache)."""
        now = time.monotonic()
        if self._answer is not None and now - self._answer[0] < self.cache_s:
            why = self._answer[1]
        else:
            running = self._running
            if (running is None or running.done()
                    or running.get_loop() is not asyncio.get_running_loop()):
                running = self._running = asyncio.ensure_future(self._run(timeout_s))
            try:
                async with asyncio.timeout(timeout_s):
                    why = await asyncio.shield(running)
            except TimeoutError:
                why = f"no metadata answer within {timeout_s:g} s"
        if why is not None:
            raise StoreUnavailable("kafka", why)

    async def _run(self, timeout_s: float) -> str | None:
        why = await asyncio.to_thread(self._describe, timeout_s)
        self._answer = (time.monotonic(), why)
        return why

    def close(self) -> None:
        """Close the admin client, if one was created (blocking)."""
        admin, self._admin = self._admin, None
        if admin is not None:
            _close_admin(admin)
