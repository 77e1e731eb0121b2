"""/readyz with fake Kafka clients: Kafka reads not-ready while publishes fail and ready once
one can succeed; the answer names a status per dependency, the reasons go to the log only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

from feedline.stores import event_publisher
from feedline.stores.errors import StoreUnavailable
from feedline.stores.event_publisher import EventPublisher
from serving.main import create_app
from tests.support.unreachable import UNREACHABLE
from tests.unit.test_event_publisher import Broker, Producers, follow

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(UNREACHABLE), raise_server_exceptions=False) as c:
        yield c


def test_readyz_gives_a_status_per_dependency_and_logs_the_reason(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="serving.routes.health")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"]
    body = response.json()
    assert body["down"] == ["cql", "kafka", "redis"]
    assert body["checks"] == {"cql": "down", "kafka": "down", "redis": "down"}
    for leak in ("Error", "127.0.0.1", "refused", "Traceback"):
        assert leak not in response.text
    mine = [r for r in caplog.records if r.name == "serving.routes.health"]
    assert sorted(r.getMessage().split(": ")[1] for r in mine) == [
        "cql is down", "kafka is down", "redis is down"]
    assert all(len(r.getMessage().split(": ", 2)) == 3 for r in mine)  # with the reason
    caplog.clear()
    client.get("/readyz")
    assert [r for r in caplog.records if r.name == "serving.routes.health"] == []


def test_readyz_follows_kafka_publishes(client: TestClient,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    resources = client.app.state.resources  # type: ignore[attr-defined]

    async def answers() -> bool:
        return True

    monkeypatch.setattr(resources.cache, "ping", answers)
    monkeypatch.setattr(resources.posts, "ping", answers)
    producers, broker = Producers("ok"), Broker()
    publisher = EventPublisher(UNREACHABLE.kafka, max_block_ms=100, delivery_timeout_ms=500,
                               retry_after_s=3600, producer_factory=producers,
                               admin_factory=broker)
    publisher.broker.cache_s = 0
    monkeypatch.setattr(resources, "publisher", publisher)

    assert client.get("/readyz").json() == {
        "status": "ready", "checks": {"redis": "ok", "kafka": "ok", "cql": "ok"}}
    producers.mode = "expire"
    with pytest.raises(StoreUnavailable, match="kafka"):
        asyncio.run(publisher.publish(follow()))
    down = client.get("/readyz")
    assert down.status_code == 503 and down.json()["down"] == ["kafka"]
    assert down.json()["checks"] == {"redis": "ok", "kafka": "down", "cql": "ok"}

    later = 3601.0  # the breaker's pause is over: the next publish probes
    monkeypatch.setattr(event_publisher, "time", SimpleNamespace(
        monotonic=lambda: later + time.monotonic()))
    with pytest.raises(StoreUnavailable, match="kafka"):
        asyncio.run(publisher.publish(follow()))  # a probe that fails again (mode expire)
    assert client.get("/readyz").status_code == 503  # breaker open again
    later += 3601
    assert client.get("/readyz").status_code == 200  # broker answers: a publish can work
    broker.error = TimeoutError()
    assert client.get("/readyz").status_code == 503  # not while the broker is silent
    broker.error = None
    producers.mode = "ok"
    asyncio.run(publisher.publish(follow()))  # the probe succeeds: breaker closed
    assert client.get("/readyz").status_code == 200
