"""A stack service killed (SIGKILL) and started again by the stack's supervisor; the events
in a set of topics, read back to compute a reference from."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from feedline.settings import ServingSettings, StackSettings
from jobs.localstack import stack as local_stack
from jobs.localstack.stack import services
from schemas.event_contracts import parse_event, role_of
from tests.support.faults import Answer, note
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Kill:
    """When a service was killed and when the supervisor had it healthy again (monotonic)."""

    service: str
    killed_at: float
    back_at: float

    def during(self, answer: Answer) -> bool:
        """The exchange happened wholly while the service was down."""
        return answer.started > self.killed_at and answer.ended < self.back_at


def supervised_service(stack: StackSettings, name: str) -> Any:
    """The stack's service ``name``, or a skip when nothing would restart it after a kill."""
    service = next(s for s in services(stack) if s.name == name)
    if service.process.pid() is None:
        pytest.skip(f"the {name} server is not this stack's process (reused from elsewhere)")
    if not local_stack.supervisor_status(stack).healthy:
        pytest.skip("no supervisor runs on this stack, so nothing would restart a killed "
                    "service (`feedctl local up` starts one)")
    if name not in local_stack.supervised_names(stack):
        pytest.skip(f"this stack's supervisor does not watch {name} (it was started with "
                    "other settings: `feedctl local down` and let the tests start the stack)")
    return service


def kill(stack: StackSettings, name: str, *, timeout_s: float,
         detail: Callable[[], str] = lambda: "",
         on_killed: Callable[[], object] = lambda: None,
         seen: Callable[[float], bool] | None = None, seen_max_s: float = 45.0) -> Kill:
    """SIGKILL the service ``name`` (its process group), call ``on_killed``, and wait until
    the stack's supervisor has started it again and it is healthy: no manual step.

    ``seen(killed_at)``: the supervisor is held (SIGSTOP) from before the kill until it is
    true or ``seen_max_s`` passed, so a service that restarts in a second or two (a Redis)
    stays down long enough for the clients to notice, however slow the machine; then the
    supervisor goes on and must restart it by itself.
    """
    service = supervised_service(stack, name)
    pid = service.process.pid()
    supervisor = local_stack.supervisor_status(stack).pid if seen is not None else None
    note(f"killing {name} (SIGKILL group {pid})")
    print(f"\nkilling {name} (pid {pid})")
    if supervisor is not None:
        os.kill(supervisor, signal.SIGSTOP)
    try:
        killed_at = time.monotonic()
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            os.kill(pid, signal.SIGKILL)
        on_killed()
        if seen is not None:
            while not (noticed := seen(killed_at)) \
                    and time.monotonic() - killed_at < seen_max_s:
                time.sleep(0.2)
            print(f"supervisor held {time.monotonic() - killed_at:.1f} s: {name} down "
                  f"{'noticed' if noticed else 'not noticed'} by the clients")
    finally:
        if supervisor is not None:
            os.kill(supervisor, signal.SIGCONT)

    def restarted() -> bool:
        new = service.process.pid()
        return new is not None and new != pid and service.healthy()

    eventually(restarted, f"the supervisor to restart {name}", timeout_s=timeout_s,
               every_s=0.5, detail=detail)
    back_at = time.monotonic()
    note(f"{name} back (pid {service.process.pid()}) {back_at - killed_at:.1f} s after the kill")
    print(f"{name} healthy again {back_at - killed_at:.1f} s after SIGKILL")
    return Kill(name, killed_at, back_at)


def topic_records(bootstrap: str, topics: Iterable[str]) -> list[Any]:
    """Every record in ``topics`` (all partitions, up to their end offsets now), as the
    consumer gives them (``topic``, ``partition``, ``offset``, ``timestamp``, ``value``)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                found.extend(record for record in records if record.offset < ends[tp])
        return found
    finally:
        consumer.close()


def topic_events(settings: ServingSettings, topics: Iterable[str]) -> list[Any]:
    """Every event in ``topics`` (all partitions, up to their end offsets now), parsed."""
    return [parse_event(role_of(json.loads(record.value)["event_type"]), record.value)
            for record in topic_records(settings.kafka.bootstrap_servers, topics)]
