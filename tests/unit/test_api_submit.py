"""The submit path of writes with in-memory stand-ins for Kafka and Redis: a write is prepared
at most once, a replay is never prepared again, and what each Idempotency-Key case answers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from feedline.settings import KafkaSettings
from feedline.stores.errors import StoreUnavailable
from feedline.stores.event_publisher import EventPublisher
from feedline.stores.request_guards import IdempotentRecord
from schemas.event_contracts import new_event
from serving.problems import ApiProblem
from serving.writes import EventWrites, PreparedWrite


class Delivery:
    """A producer's send future, settled at once."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_callback(self, callback: Any) -> None:
        if self.error is None:
            callback("metadata")

    def add_errback(self, errback: Any) -> None:
        if self.error is not None:
            errback(self.error)


@dataclass
class MemoryProducer:
    """Records what is sent; fails every send while ``failing``."""

    sent: list[bytes] = field(default_factory=list)
    failing: bool = False

    def send(self, topic: str, key: bytes, value: bytes) -> Delivery:
        if self.failing:
            return Delivery(OSError("broker gone"))
        self.sent.append(value)
        return Delivery(None)


@dataclass
class MemoryRecords:
    """``IdempotencyRecords`` semantics in a dict."""

    stored: dict[tuple[str, str], IdempotentRecord] = field(default_factory=dict)

    async def get(self, user_id: str, key: str) -> IdempotentRecord | None:
        return self.stored.get((user_id, key))

    async def claim(self, user_id: str, key: str, record: IdempotentRecord) -> IdempotentRecord:
        return self.stored.setdefault((user_id, key), record)

    async def acknowledge(self, user_id: str, key: str, record: IdempotentRecord) -> None:
        self.stored[(user_id, key)] = replace(record, acknowledged=True)


@dataclass
class Follow:
    """A write that counts how often it was prepared."""

    followee_id: str = "bob"
    prepared: int = 0

    async def prepare(self) -> PreparedWrite:
        self.prepared += 1
        event = new_event("follow", follower_id="alice", followee_id=self.followee_id)
        return PreparedWrite(event, {"event_id": event.event_id})


@dataclass
class Refused:
    """A write whose state check fails."""

    prepared: int = 0

    async def prepare(self) -> PreparedWrite:
        self.prepared += 1
        raise ApiProblem(404, "post-not-found", "post p1 does not exist")


@pytest.fixture
def producer() -> MemoryProducer:
    return MemoryProducer()


@pytest.fixture
def records() -> MemoryRecords:
    return MemoryRecords()


def writes(producer: MemoryProducer, records: MemoryRecords, path: str = "/v1/users/bob/follow",
           ) -> EventWrites:
    publisher = EventPublisher(KafkaSettings(bootstrap_servers="127.0.0.1:1"), max_block_ms=300,
                               delivery_timeout_ms=600, retry_after_s=0,
                               producer_factory=lambda **_options: producer)
    return EventWrites(publisher, records, user_id="alice", method="PUT",
                       path=path)


def submit(writer: EventWrites, write: Any, key: str | None, body: Any = None) -> Any:
    return asyncio.run(writer.submit(write, key, body))


def sent_ids(producer: MemoryProducer) -> list[str]:
    return [json.loads(value)["event_id"] for value in producer.sent]


def test_without_a_key_each_request_is_prepared_and_produced(
        producer: MemoryProducer, records: MemoryRecords) -> None:
    write = Follow()
    first = submit(writes(producer, records), write, None)
    second = submit(writes(producer, records), write, None)
    assert first.status_code == second.status_code == 202
    assert "idempotent-replayed" not in first.headers
    assert write.prepared == 2
    assert sent_ids(producer) == [json.loads(first.body)["event_id"],
                                  json.loads(second.body)["event_id"]]
    assert records.stored == {}


def test_a_replay_is_answered_without_preparing_or_producing_again(
        producer: MemoryProducer, records: MemoryRecords) -> None:
    write = Follow()
    first = submit(writes(producer, records), write, "k1")
    again = submit(writes(producer, records), write, "k1")
    assert (again.status_code, again.body) == (202, first.body)
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert write.prepared == 1
    assert sent_ids(producer) == [json.loads(first.body)["event_id"]]
    assert records.stored[("alice", "k1")].acknowledged


def test_a_replay_of_an_unacknowledged_event_produces_the_stored_event(
        producer: MemoryProducer, records: MemoryRecords) -> None:
    write = Follow()
    producer.failing = True
    with pytest.raises(StoreUnavailable):
        submit(writes(producer, records), write, "k1")
    stored = records.stored[("alice", "k1")]
    assert not stored.acknowledged
    producer.failing = False
    retried = submit(writes(producer, records), write, "k1")
    assert retried.status_code == 202
    assert retried.headers["idempotent-replayed"] == "true"
    assert write.prepared == 1
    assert [json.loads(value) for value in producer.sent] == [json.loads(stored.event)]
    assert json.loads(retried.body) == stored.response
    assert records.stored[("alice", "k1")].acknowledged


def test_a_key_reused_for_another_request_is_refused_before_preparing(
        producer: MemoryProducer, records: MemoryRecords) -> None:
    submit(writes(producer, records), Follow(), "k1", {"text": "one"})
    other = Follow()
    with pytest.raises(ApiProblem) as refused:
        submit(writes(producer, records), other, "k1", {"text": "two"})
    assert (refused.value.status, refused.value.slug) == (422, "idempotency-key-reused")
    with pytest.raises(ApiProblem) as elsewhere:
        submit(writes(producer, records, "/v1/users/carol/follow"), other, "k1", {"text": "one"})
    assert elsewhere.value.slug == "idempotency-key-reused"
    assert other.prepared == 0
    assert len(producer.sent) == 1


def test_a_malformed_key_is_a_422_on_the_header(producer: MemoryProducer,
                                                records: MemoryRecords) -> None:
    write = Follow()
    with pytest.raises(ApiProblem) as refused:
        submit(writes(producer, records), write, "not a key!")
    assert (refused.value.status, refused.value.slug) == (422, "validation-error")
    assert refused.value.extra["errors"][0]["location"] == "header"
    assert write.prepared == 0 and producer.sent == [] and records.stored == {}


@pytest.mark.parametrize("key", [None, "k1"])
def test_a_refused_check_stores_and_produces_nothing(producer: MemoryProducer,
                                                     records: MemoryRecords,
                                                     key: str | None) -> None:
    write = Refused()
    with pytest.raises(ApiProblem) as refused:
        submit(writes(producer, records), write, key)
    assert refused.value.status == 404
    assert write.prepared == 1 and producer.sent == [] and records.stored == {}


def test_an_event_the_contract_refuses_is_a_422_naming_the_field(
        producer: MemoryProducer, records: MemoryRecords) -> None:
    with pytest.raises(ApiProblem) as refused:
        submit(writes(producer, records), Follow(followee_id="alice"), None)
    assert (refused.value.status, refused.value.slug) == (422, "validation-error")
    assert refused.value.extra["errors"][0]["location"] == "body"
    assert "followee_id" in refused.value.detail
    assert producer.sent == []


def test_an_open_kafka_breaker_answers_before_anything_is_read(
        producer: MemoryProducer, records: MemoryRecords) -> None:
    writer = writes(producer, records)
    writer.publisher.retry_after_s = 60
    producer.failing = True
    with pytest.raises(StoreUnavailable):
        submit(writer, Follow(), None)
    write = Follow()
    with pytest.raises(StoreUnavailable) as failing_fast:
        submit(writer, write, "not a key!")  # the breaker answers before the key is checked
    assert "failing fast" in failing_fast.value.detail
    assert write.prepared == 0 and records.stored == {}



def test_a_record_drops_its_event_once_acknowledged() -> None:
    pending = IdempotentRecord("fp", '{"event_id": "e1"}', {"event_id": "e1"})
    assert IdempotentRecord.loads(pending.dumps()) == pending
    done = replace(pending, acknowledged=True)
    assert "event" not in json.loads(done.dumps())
    assert IdempotentRecord.loads(done.dumps()) == replace(done, event="")
