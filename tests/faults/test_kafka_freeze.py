"""Kafka frozen (SIGSTOP) for tens of seconds while writes go through the API, then resumed.

The app runs in-process under uvicorn on a free loopback port, on this test's own topics,
keyspace and key prefix, against the stack's real Kafka. Writer threads make follows and a
poller reads /readyz throughout. While Kafka is frozen, writes must answer 503 with
Retry-After and /readyz must say Kafka is down; after SIGCONT, writes must be accepted and
/readyz ready again with no manual step, within ``RECOVERY_BOUND_S``; and every write
answered 202 must be in the topic exactly once.

It freezes the shared stack's broker: every other user of the stack stalls meanwhile.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from feedline.settings import ApiSettings, ServingSettings, StackSettings
from jobs.localstack.stack import services
from serving.main import create_app
from tests.integration import test_api_stack
from tests.integration.test_api_stack import auth, consume
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

api_settings = test_api_stack.api_settings  # this test's topics, keyspace and key prefix

#: The broker is resumed by then even if what must be seen during the freeze was not ...
FREEZE_MAX_S = 40.0
#: ... and stays frozen at least this long (FAULTS_KAFKA_FREEZE_S, 10-40 s: other
#: lengths resume it at another point of the publisher's breaker cycle).
FREEZE_MIN_S = min(max(float(os.environ.get("FAULTS_KAFKA_FREEZE_S", "30")), 10.0),
                   FREEZE_MAX_S)
#: The stated recovery bound: from SIGCONT to writes accepted and /readyz ready.
RECOVERY_BOUND_S = 60.0
#: Without writes the broker is resumed as soon as /readyz said it was down (or by then).
IDLE_FREEZE_S = 30.0
WRITERS = 3


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: when it started and ended (monotonic), and what came back."""

    started: float
    ended: float
    status: int
    retry_after: str | None
    body: Any


class InProcessApi:
    """The app under uvicorn in a thread, on a free 127.0.0.1 port."""

    def __init__(self, settings: ServingSettings) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_config=None, access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> InProcessApi:
        self.thread.start()
        eventually(lambda: self.server.started, "the in-process API to start", timeout_s=60)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.socket.close()


class Traffic:
    """Writer threads making follows, and a /readyz poller, recording every answer."""

    def __init__(self, api: InProcessApi, settings: ServingSettings,
                 writers: int = WRITERS) -> None:
        self.api = api
        self.settings = settings
        self.stop = threading.Event()
        self.writes: list[Answer] = []
        self.readiness: list[Answer] = []
        self.threads = [threading.Thread(target=self._write, args=(n,), daemon=True)
                        for n in range(writers)]
        self.threads.append(threading.Thread(target=self._poll_readiness, daemon=True))

    def _exchange(self, client: httpx.Client, method: str, url: str,
                  headers: dict[str, str] | None = None) -> Answer:
        started = time.monotonic()
        response = client.request(method, url, headers=headers)
        body = response.json() if response.content else None
        return Answer(started, time.monotonic(), response.status_code,
                      response.headers.get("retry-after"), body)

    def _write(self, writer: int) -> None:
        user = f"writer{writer}"
        with httpx.Client(base_url=self.api.url, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                self.writes.append(self._exchange(
                    client, "PUT", f"/v1/users/followee{writer}-{n}/follow",
                    auth(self.settings, user)))
                self.stop.wait(0.1)

    def _poll_readiness(self) -> None:
        with httpx.Client(base_url=self.api.url, timeout=60) as client:
            while not self.stop.is_set():
                self.readiness.append(self._exchange(client, "GET", "/readyz"))
                self.stop.wait(0.5)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)

    def accepted_after(self, moment: float) -> Answer | None:
        return next((a for a in list(self.writes) if a.status == 202 and a.started > moment),
                    None)

    def ready_after(self, moment: float) -> Answer | None:
        return next((a for a in list(self.readiness)
                     if a.status == 200 and a.started > moment), None)

    def summary(self) -> str:
        writes = Counter(a.status for a in self.writes)
        ready = Counter(a.status for a in self.readiness)
        return f"writes {dict(writes)}, /readyz {dict(ready)}"


def kafka_down(answer: Answer) -> bool:
    """A /readyz answer saying Kafka is not ready."""
    return answer.status == 503 and "kafka" in answer.body["down"]


@pytest.fixture
def freeze_settings(api_settings: ServingSettings) -> ServingSettings:
    """The API with its default Kafka timeouts (max block, delivery, Retry-After)."""
    return api_settings.model_copy(update={"api": ApiSettings(
        rate_limit_per_minute=100_000, celebrity_cache_s=0, gc_freeze=False,
        access_log=False)})


@pytest.fixture
def kafka_pid(stack: StackSettings) -> Iterator[int]:
    """The pid of the stack's Kafka broker (resumed after the test whatever happens)."""
    kafka = next(s for s in services(stack) if s.name == "kafka")
    pid = kafka.process.pid()
    assert pid is not None, "the stack's Kafka is not running"
    yield pid
    os.kill(pid, signal.SIGCONT)


def test_writes_and_readiness_recover_after_kafka_is_frozen(
        freeze_settings: ServingSettings, kafka_pid: int) -> None:
    settings = freeze_settings
    with InProcessApi(settings) as api, Traffic(api, settings) as traffic:
        start = time.monotonic()
        eventually(lambda: traffic.accepted_after(start), "writes accepted before the freeze",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        eventually(lambda: traffic.ready_after(start), "/readyz ready before the freeze",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)

        def seen_during_freeze() -> bool:
            refused = any(a.status == 503 and a.started > frozen_at for a in list(traffic.writes))
            down = any(kafka_down(a) and a.started > frozen_at for a in list(traffic.readiness))
            return refused and down

        print(f"\nfreezing Kafka (pid {kafka_pid}) for {FREEZE_MIN_S:.0f}-{FREEZE_MAX_S:.0f} s")
        frozen_at = time.monotonic()
        os.kill(kafka_pid, signal.SIGSTOP)
        try:
            while time.monotonic() < frozen_at + FREEZE_MAX_S and not (
                    seen_during_freeze() and time.monotonic() >= frozen_at + FREEZE_MIN_S):
                time.sleep(0.2)
        finally:
            os.kill(kafka_pid, signal.SIGCONT)
            thawed_at = time.monotonic()
        print(f"Kafka resumed after {thawed_at - frozen_at:.1f} s frozen")

        first_accepted = eventually(lambda: traffic.accepted_after(thawed_at),
                                    "a write accepted after Kafka came back",
                                    timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        first_ready = eventually(lambda: traffic.ready_after(thawed_at),
                                 "/readyz ready after Kafka came back",
                                 timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        accepted_by = first_accepted.ended
        eventually(lambda: sum(a.status == 202 and a.started > accepted_by
                               for a in list(traffic.writes)) >= 10,
                   "writes accepted steadily after the recovery",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
    print(f"recovery after SIGCONT: first 202 after {first_accepted.ended - thawed_at:.1f} s, "
          f"/readyz ready after {first_ready.ended - thawed_at:.1f} s; {traffic.summary()}")

    during = [a for a in traffic.writes if a.started > frozen_at and a.ended < thawed_at]
    refused = [a for a in during if a.status == 503]
    assert refused, f"no write answered 503 while Kafka was frozen ({traffic.summary()})"
    assert all(a.status in (202, 503) for a in traffic.writes), traffic.summary()
    for answer in (a for a in traffic.writes if a.status == 503):
        assert answer.retry_after is not None and int(answer.retry_after) >= 1
        assert answer.body["dependency"] == "kafka"

    # /readyz told the truth: Kafka down during the freeze, once the first write had failed
    # never "ready" until Kafka was back; a status per dependency, never a reason.
    assert any(kafka_down(a) for a in traffic.readiness
               if a.started > frozen_at and a.ended < thawed_at), traffic.summary()
    first_refusal = min(a.ended for a in refused)
    assert not [a for a in traffic.readiness
                if a.status == 200 and a.started > first_refusal and a.ended < thawed_at]
    for answer in traffic.readiness:
        assert answer.status in (200, 503)
        assert set(answer.body["checks"].values()) <= {"ok", "down"}, answer.body

    # Every write answered 202 is in Kafka exactly once.
    accepted = Counter(a.body["event_id"] for a in traffic.writes if a.status == 202)
    produced = Counter(event["event_id"]
                       for _key, event in consume(settings, settings.kafka.follows_topic))
    assert max(accepted.values()) == 1
    missing = [event_id for event_id in accepted if produced[event_id] == 0]
    assert not missing, f"{len(missing)} writes answered 202 are not in Kafka"
    assert max(produced.values()) == 1, "an event is in Kafka more than once"


def test_readiness_follows_a_frozen_kafka_without_writes(
        freeze_settings: ServingSettings, kafka_pid: int) -> None:
    """No write fails to tell: /readyz itself must notice the broker does not answer."""
    settings = freeze_settings
    with InProcessApi(settings) as api, Traffic(api, settings, writers=0) as traffic:
        start = time.monotonic()
        eventually(lambda: traffic.ready_after(start), "/readyz ready before the freeze",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        print(f"\nfreezing Kafka (pid {kafka_pid}), no writes, for {IDLE_FREEZE_S:.0f} s at most")
        frozen_at = time.monotonic()
        os.kill(kafka_pid, signal.SIGSTOP)
        try:
            while time.monotonic() < frozen_at + IDLE_FREEZE_S and not any(
                    kafka_down(a) and a.started > frozen_at for a in list(traffic.readiness)):
                time.sleep(0.2)
        finally:
            os.kill(kafka_pid, signal.SIGCONT)
            thawed_at = time.monotonic()
        down = [a for a in traffic.readiness if kafka_down(a) and a.started > frozen_at]
        assert down, f"/readyz never said Kafka was down while it was frozen ({traffic.summary()})"
        print(f"/readyz said Kafka was down {down[0].ended - frozen_at:.1f} s into the freeze")
        ready = eventually(lambda: traffic.ready_after(thawed_at),
                           "/readyz ready after Kafka came back",
                           timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
    print(f"/readyz ready {ready.ended - thawed_at:.1f} s after SIGCONT; {traffic.summary()}")
    assert all(set(a.body["checks"].values()) <= {"ok", "down"} for a in traffic.readiness)
