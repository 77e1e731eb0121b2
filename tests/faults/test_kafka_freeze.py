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
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from feedline.settings import ServingSettings, StackSettings
from tests.support.faults import (
    Answer,
    InProcessApi,
    Traffic,
    down_in,
    freeze,
    in_kafka_exactly_once,
    service_pid,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

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


def kafka_down(answer: Answer) -> bool:
    """A /readyz answer saying Kafka is not ready."""
    return down_in(answer, "kafka")


@pytest.fixture
def kafka_pid(stack: StackSettings) -> Iterator[int]:
    """The pid of the stack's Kafka broker (resumed again after the test whatever happens)."""
    pid = service_pid(stack, "kafka")
    yield pid
    os.kill(pid, signal.SIGCONT)


def test_writes_and_readiness_recover_after_kafka_is_frozen(
        freeze_settings: ServingSettings, stack: StackSettings, kafka_pid: int) -> None:
    settings = freeze_settings
    with InProcessApi(settings) as api, Traffic(api, settings) as traffic:
        start = time.monotonic()
        eventually(lambda: traffic.accepted_after(start), "writes accepted before the freeze",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        eventually(lambda: traffic.ready_after(start), "/readyz ready before the freeze",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)

        def seen_during_freeze(frozen_at: float) -> bool:
            refused = any(a.status == 503 and a.started > frozen_at for a in list(traffic.writes))
            down = any(kafka_down(a) and a.started > frozen_at for a in list(traffic.readiness))
            return refused and down

        fault = freeze(stack, "kafka", min_s=FREEZE_MIN_S, max_s=FREEZE_MAX_S,
                       seen=seen_during_freeze)
        frozen_at, thawed_at = fault.frozen_at, fault.thawed_at

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
    accepted = [a for a in traffic.writes if a.status == 202]
    assert max(Counter(a.body["event_id"] for a in accepted).values()) == 1
    in_kafka_exactly_once(settings, settings.kafka.follows_topic, accepted)


def test_readiness_follows_a_frozen_kafka_without_writes(
        freeze_settings: ServingSettings, stack: StackSettings, kafka_pid: int) -> None:
    """No write fails to tell: /readyz itself must notice the broker does not answer."""
    settings = freeze_settings
    with InProcessApi(settings) as api, Traffic(api, settings, writers=0) as traffic:
        start = time.monotonic()
        eventually(lambda: traffic.ready_after(start), "/readyz ready before the freeze",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        fault = freeze(stack, "kafka", min_s=0, max_s=IDLE_FREEZE_S,
                       seen=lambda at: any(kafka_down(a) and a.started > at
                                           for a in list(traffic.readiness)))
        frozen_at, thawed_at = fault.frozen_at, fault.thawed_at
        down = [a for a in traffic.readiness if kafka_down(a) and a.started > frozen_at]
        assert down, f"/readyz never said Kafka was down while it was frozen ({traffic.summary()})"
        print(f"/readyz said Kafka was down {down[0].ended - frozen_at:.1f} s into the freeze")
        ready = eventually(lambda: traffic.ready_after(thawed_at),
                           "/readyz ready after Kafka came back",
                           timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
    print(f"/readyz ready {ready.ended - thawed_at:.1f} s after SIGCONT; {traffic.summary()}")
    assert all(set(a.body["checks"].values()) <= {"ok", "down"} for a in traffic.readiness)
