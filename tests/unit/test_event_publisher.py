"""The event publisher with fake Kafka clients: a failed delivery replaces the producer, the
breaker half-opens for exactly one probe, and readiness follows what a publish can do."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, RequestTimedOutError

from feedline.settings import KafkaSettings
from feedline.stores.errors import StoreUnavailable
from feedline.stores.event_publisher import EventPublisher, dispose
from schemas.event_contracts import new_event
from tests.support.waiting import eventually

KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:1")


class Delivery:
    """A send future settled by the test (or at once)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], Any]] = []
        self.errbacks: list[Callable[[Any], Any]] = []
        self.outcome: tuple[str, Any] | None = None

    def add_callback(self, callback: Callable[[Any], Any]) -> None:
        self.callbacks.append(callback)
        self._fire()

    def add_errback(self, errback: Callable[[Any], Any]) -> None:
        self.errbacks.append(errback)
        self._fire()

    def succeed(self) -> None:
        self.outcome = ("ok", "record-metadata")
        self._fire()

    def fail(self, error: Exception) -> None:
        self.outcome = ("error", error)
        self._fire()

    def _fire(self) -> None:
        if self.outcome is None:
            return
        kind, value = self.outcome
        for fn in self.callbacks if kind == "ok" else self.errbacks:
            fn(value)
        self.callbacks, self.errbacks = [], []


class StuckSender:
    """The I/O thread of a stuck producer: only a force-close stops it."""

    def __init__(self) -> None:
        self.force_closed = False

    def force_close(self) -> None:
        self.force_closed = True

    def join(self, timeout: float | None = None) -> None:
        pass


class FakeProducer:
    """Answers each send as ``mode`` says: ok, expire (delivery timeout), stuck (never
    answers, and its close times out), metadata (send itself raises), or gate (the test
    settles the delivery)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.deliveries: list[Delivery] = []
        self.closed = threading.Event()
        self._sender = StuckSender()

    def send(self, topic: str, key: bytes, value: bytes) -> Delivery:
        if self.mode == "metadata":
            raise KafkaTimeoutError("Failed to update metadata after 0.1 secs.")
        delivery = Delivery()
        self.deliveries.append(delivery)
        if self.mode == "ok":
            delivery.succeed()
        elif self.mode == "expire":
            delivery.fail(KafkaTimeoutError("Expiring 1 record(s): 600 ms has passed"))
        return delivery

    def close(self, timeout: float | None = None) -> None:
        if self.mode == "stuck" and not self._sender.force_closed:
            raise KafkaTimeoutError("Timeout waiting for future")
        self.closed.set()


class Producers:
    """A producer factory: each new producer behaves as ``mode`` says at its creation."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.made: list[FakeProducer] = []

    def __call__(self, **options: Any) -> FakeProducer:
        assert options["enable_idempotence"] and options["acks"] == "all"
        self.made.append(FakeProducer(self.mode))
        return self.made[-1]


class Admin:
    """An admin client whose metadata answer the test sets (``None``: no answer)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.closed = False

    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        self.broker.describes += 1
        if self.broker.error is not None:
            raise self.broker.error
        return [{"name": t, "error_code": 0,
                 "partitions": [{"partition_index": 0, "leader_id": self.broker.leader}]}
                for t in topics]

    def close(self) -> None:
        self.closed = True


class Broker:
    """The fake cluster behind ``Admin`` clients, and their factory."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.leader = 1
        self.describes = 0
        self.admins: list[Admin] = []

    def __call__(self, **options: Any) -> Admin:
        self.admins.append(Admin(self))
        return self.admins[-1]


def publisher(producers: Producers, broker: Broker | None = None, *,
              retry_after_s: int = 0) -> EventPublisher:
    return EventPublisher(KAFKA, max_block_ms=100, delivery_timeout_ms=500,
                          retry_after_s=retry_after_s, producer_factory=producers,
                          admin_factory=broker or Broker())


def follow() -> Any:
    return new_event("follow", follower_id="alice", followee_id="bob")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_delivery_timeout_replaces_the_producer() -> None:
    producers = Producers("expire")
    kafka = publisher(producers)
    with pytest.raises(StoreUnavailable) as failed:
        run(kafka.publish(follow()))
    assert failed.value.store == "kafka" and "KafkaTimeoutError" in failed.value.detail
    first = producers.made[0]
    eventually(first.closed.is_set, "the failed producer closed in the background",
               timeout_s=30)
    producers.mode = "ok"
    run(kafka.publish(follow()))  # the probe, on a new producer
    assert len(producers.made) == 2 and len(producers.made[1].deliveries) == 1
    run(kafka.publish(follow()))  # and it is kept while it works
    assert len(producers.made) == 2


def test_a_delivery_that_never_answers_gives_503_and_a_new_producer() -> None:
    """The stuck producer kafka-python leaves after a broker freeze: no future ever resolves
    and its close times out, so its I/O thread is force-closed."""
    producers = Producers("stuck")
    kafka = publisher(producers)
    with pytest.raises(StoreUnavailable) as failed:
        run(kafka.publish(follow()))  # bounded by max_block_ms + delivery_timeout_ms
    assert failed.value.detail == "TimeoutError: no acknowledgement within 1.6 s"
    stuck = producers.made[0]
    eventually(stuck.closed.is_set, "the stuck producer closed", timeout_s=30)
    assert stuck._sender.force_closed
    producers.mode = "ok"
    run(kafka.publish(follow()))
    assert len(producers.made) == 2


def test_a_metadata_timeout_in_send_keeps_the_producer() -> None:
    producers = Producers("metadata")
    kafka = publisher(producers)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            run(kafka.publish(follow()))
    assert len(producers.made) == 1 and not producers.made[0].closed.is_set()


async def _started(producers: Producers, number: int, count: int = 1) -> Delivery:
    """The ``count``-th delivery handed to producer ``number`` (from 0), once it exists."""
    while len(producers.made) <= number or len(producers.made[number].deliveries) < count:
        await asyncio.sleep(0.01)
    return producers.made[number].deliveries[count - 1]


async def _probe_in_flight(kafka: EventPublisher,
                           producers: Producers) -> tuple[asyncio.Future[None], Delivery]:
    """Open the breaker with a delivery that expires, then start the half-open probe on a
    gated producer; returns the probe and its delivery, not yet answered."""
    with pytest.raises(StoreUnavailable):
        await kafka.publish(follow())
    producers.mode = "gate"
    probe = asyncio.ensure_future(kafka.publish(follow()))
    return probe, await _started(producers, 1)


def test_half_open_lets_exactly_one_probe_through_and_its_success_closes() -> None:
    producers = Producers("expire")
    broker = Broker()
    kafka = publisher(producers, broker)

    async def scenario() -> None:
        probe, delivery = await _probe_in_flight(kafka, producers)
        for _ in range(3):  # others fail fast while the probe is in flight
            with pytest.raises(StoreUnavailable) as fast:
                await kafka.publish(follow())
            assert "probe is in flight" in fast.value.detail
        with pytest.raises(StoreUnavailable):
            kafka.check_open()
        with pytest.raises(StoreUnavailable):
            await kafka.ready()
        assert len(producers.made[-1].deliveries) == 1  # only the probe reached a producer
        delivery.succeed()
        await probe
        kafka.check_open()  # closed
        producers.made[-1].mode = "ok"
        await asyncio.gather(*(kafka.publish(follow()) for _ in range(3)))
        assert len(producers.made[-1].deliveries) == 4
        await kafka.ready()

    run(scenario())


def test_a_failed_probe_opens_the_breaker_again() -> None:
    producers = Producers("expire")
    kafka = publisher(producers)

    async def scenario() -> None:
        probe, delivery = await _probe_in_flight(kafka, producers)
        kafka.retry_after_s = 60  # the re-opened breaker stays open through the test
        delivery.fail(RequestTimedOutError("Request timed out"))
        with pytest.raises(StoreUnavailable) as failed:
            await probe
        assert failed.value.retry_after_s == 60
        with pytest.raises(StoreUnavailable) as fast:
            await kafka.publish(follow())
        assert "failing fast after a recent error" in fast.value.detail
        assert fast.value.retry_after_s > 1
        assert len(producers.made) == 2  # the probe's producer was discarded, none made since

    run(scenario())


def test_a_cancelled_probe_lets_the_next_publish_probe() -> None:
    producers = Producers("expire")
    kafka = publisher(producers, retry_after_s=0)

    async def scenario() -> None:
        probe, _delivery = await _probe_in_flight(kafka, producers)
        kafka.retry_after_s = 60
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        producers.made[-1].mode = "ok"
        next_probe = asyncio.ensure_future(kafka.publish(follow()))
        (await _started(producers, 1, 2)).succeed()
        await next_probe
        kafka.check_open()

    run(scenario())


def test_readiness_flips_with_the_breaker_and_the_broker() -> None:
    producers = Producers("ok")
    broker = Broker()
    kafka = publisher(producers, broker, retry_after_s=60)
    kafka.broker.cache_s = 0  # every check asks the broker

    async def scenario() -> None:
        await kafka.ready()
        broker.error = RequestTimedOutError("Request timed out after 2000 ms")
        with pytest.raises(StoreUnavailable) as down:
            await kafka.ready()
        assert "RequestTimedOutError" in down.value.detail
        broker.error = None
        await kafka.ready()
        assert len(broker.admins) == 2  # the failed client was replaced, and closed
        await asyncio.to_thread(eventually, lambda: broker.admins[0].closed,
                                "the failed admin client closed", timeout_s=30)
        broker.leader = -1
        with pytest.raises(StoreUnavailable, match="no leader"):
            await kafka.ready()
        broker.leader = 1
        await kafka.ready()

        producers.mode = "expire"
        with pytest.raises(StoreUnavailable):
            await kafka.publish(follow())
        describes = broker.describes
        with pytest.raises(StoreUnavailable, match="breaker open"):
            await kafka.ready()
        assert broker.describes == describes  # an open breaker needs no broker call

    run(scenario())


def test_readiness_reuses_the_broker_answer_and_runs_one_check_at_a_time() -> None:
    producers = Producers("ok")
    broker = Broker()
    kafka = publisher(producers, broker)
    kafka.broker.cache_s = 3600

    async def scenario() -> None:
        await asyncio.gather(*(kafka.ready() for _ in range(20)))
        for _ in range(20):
            await kafka.ready()
        broker.error = RequestTimedOutError("gone")  # not asked again: the answer is reused
        await kafka.ready()

    run(scenario())
    assert broker.describes == 1 and len(broker.admins) == 1


def test_dispose_force_closes_a_stuck_producer_and_never_raises() -> None:
    stuck = FakeProducer("stuck")
    dispose(stuck, timeout_s=0.01)
    assert stuck._sender.force_closed and stuck.closed.is_set()

    class Broken:
        def close(self, timeout: float | None = None) -> None:
            raise RuntimeError("boom")

    dispose(Broken())  # logged, not raised
