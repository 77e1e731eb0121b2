"""Produce feed events to Kafka from asyncio code, bounded in time.

kafka-python's producer is thread-based: ``send`` may block for broker metadata (up to
``max_block_ms``) and its future resolves on the producer's I/O thread. So ``send`` runs
in a worker thread and the future is bridged back to the event loop. Every produce is
``acks=all``, idempotent, keyed by the topic's partition key.

When Kafka cannot be reached the caller gets ``StoreUnavailable`` within
``max_block_ms + delivery_timeout_ms``, and for ``retry_after_s`` afterwards every publish
fails at once (a circuit breaker) so a broker outage cannot tie up the API's threads.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from feedline.settings import KafkaSettings
from feedline.stores.errors import StoreUnavailable
from schemas.event_contracts import Event, encode_event


def topic_of(kafka: KafkaSettings, role: str) -> str:
    """The configured topic of a topic role (``uploads``, ``follows``, ``engagements``)."""
    return {"uploads": kafka.uploads_topic, "follows": kafka.follows_topic,
            "engagements": kafka.engagements_topic}[role]


class EventPublisher:
    """One lazily created producer shared by a process's requests."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        max_block_ms: int,
        delivery_timeout_ms: int,
        retry_after_s: int,
        client_id: str = "feedline-api",
        producer_factory: Callable[..., Any] = KafkaProducer,
    ) -> None:
        self.kafka = kafka
        self.max_block_ms = max_block_ms
        self.delivery_timeout_ms = delivery_timeout_ms
        self.retry_after_s = retry_after_s
        self.client_id = client_id
        self._factory = producer_factory
        self._producer: Any = None
        self._lock = threading.Lock()
        self._open_until = 0.0

    def _options(self) -> dict[str, Any]:
        request_timeout_ms = max(self.delivery_timeout_ms - 100, 400)
        return {
            "bootstrap_servers": self.kafka.bootstrap_servers,
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
        """The producer, created on first use (blocking; runs in a worker thread)."""
        with self._lock:
            if self._producer is None:
                self._producer = self._factory(**self._options())
            return self._producer

    def _send(self, event: Event) -> Any:
        producer = self._ensure_producer()
        return producer.send(topic_of(self.kafka, event.role), key=event.key.encode(),
                             value=encode_event(event))

    def _trip(self, error: BaseException) -> StoreUnavailable:
        self._open_until = time.monotonic() + self.retry_after_s
        return StoreUnavailable("kafka", f"{type(error).__name__}: {error}",
                                retry_after_s=self.retry_after_s)

    def check_open(self) -> None:
        """Raise ``StoreUnavailable`` while the breaker is open (Kafka failed recently)."""
        remaining = self._open_until - time.monotonic()
        if remaining > 0:
            raise StoreUnavailable("kafka", "unreachable (failing fast after a recent error)",
                                   retry_after_s=max(1, round(remaining)))

    async def publish(self, event: Event) -> None:
        """Produce ``event`` and wait for the acks=all acknowledgement."""
        self.check_open()
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

        limit_s = (self.max_block_ms + self.delivery_timeout_ms) / 1000 + 1
        try:
            async with asyncio.timeout(limit_s):
                future = await asyncio.to_thread(self._send, event)
                future.add_callback(lambda meta: report(meta, None))
                future.add_errback(lambda error: report(None, error))
                await acked
        except (KafkaError, TimeoutError, OSError) as error:
            raise self._trip(error) from error

    async def ready(self, timeout_s: float = 2.0) -> None:
        """Raise ``StoreUnavailable`` unless a broker accepts connections.

        The producer is created now if it does not exist yet.
        """

        def probe() -> None:
            host, _, port = self.kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                pass
            self._ensure_producer()

        try:
            async with asyncio.timeout(timeout_s + self.max_block_ms / 1000):
                await asyncio.to_thread(probe)
        except (KafkaError, TimeoutError, OSError, ValueError) as error:
            raise StoreUnavailable("kafka", f"{type(error).__name__}: {error}") from error

    def close(self, timeout_s: float = 2.0) -> None:
        """Flush and close the producer, if one was created."""
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=timeout_s)
                self._producer = None
