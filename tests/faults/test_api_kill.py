"""The stack's API server killed (SIGKILL) or frozen (SIGSTOP), all its worker processes,
while clients write.

Clients write follows through the stack's own API (``feedctl local up`` runs it under the
supervisor): one without an Idempotency-Key, two with one, retrying the same key after a
5xx or a failed connection as a client library would. The API is killed once; the
supervisor must start it again with no manual step, within ``RECOVERY_BOUND_S``. Or it is
frozen for ``FREEZE_S`` (a long GC pause, a stalled VM): requests time out at the client
(``Traffic``'s timeout) and the server must answer again within the bound after SIGCONT,
the requests it had queued included. Then:
writes are accepted again; every write answered 202 is in Kafka; and each key's follow
is in Kafka as one event (perhaps sent twice, with one event id, which the consumers
deduplicate): a write whose answer was lost with the server is applied at most once when
retried with its key.

It kills the shared stack's API: every other client of it sees connections refused for a
few seconds.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

import pytest

from feedline.settings import ServingSettings, StackSettings
from jobs.localstack.api import ApiService
from tests.support.faults import Traffic, freeze
from tests.support.kills import kill, supervised_service, topic_events
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

#: From SIGKILL (SIGCONT) to writes accepted again.
RECOVERY_BOUND_S = 120.0
#: How long the frozen API stays stopped.
FREEZE_S = 20.0


@dataclass(frozen=True)
class StackApi:
    """The stack's API server, where the traffic threads send their requests."""

    url: str


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_writes_recover_after_the_api_is_killed_or_frozen(stack: StackSettings,
                                                         fault: str) -> None:
    supervised_service(stack, "api")  # skips when nothing would restart it
    settings = ServingSettings(environment=stack.environment, kafka=stack.kafka,
                               redis=stack.redis, api=stack.api)
    tag = f"-{uuid.uuid4().hex[:8]}-"  # this run's names on the stack's shared topics
    api = StackApi(ApiService(stack).endpoint())
    with Traffic(api, settings, writers=1, keyed_writers=2, tag=tag) as traffic:
        eventually(lambda: traffic.accepted_after(0.0), "writes accepted before the kill",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        if fault == "kill":
            killed = kill(stack, "api", timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            hit_at, back_at = killed.killed_at, killed.back_at
        else:
            frozen = freeze(stack, "api", min_s=FREEZE_S, max_s=FREEZE_S, group=True)
            hit_at, back_at = frozen.frozen_at, frozen.thawed_at
        accepted = eventually(lambda: traffic.accepted_after(back_at),
                              "a write accepted after the restart",
                              timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        eventually(lambda: sum(a.status == 202 and a.started > accepted.ended
                               for a in [*traffic.writes, *traffic.keyed]) >= 10,
                   "writes accepted steadily after the restart",
                   timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
    print(f"api {fault}: back {back_at - hit_at:.1f} s after the fault began; first write "
          f"accepted {accepted.ended - back_at:.1f} s after it was back; {traffic.summary()}")

    answers = [*traffic.writes, *traffic.keyed]
    if fault == "kill":
        lost = [a for a in answers if a.status == 0]
        assert lost, f"no request found the API down ({traffic.summary()})"
    else:  # a frozen server's requests wait (the clients' timeout is 60 s), then get answered
        waited = [a for a in answers if a.started < back_at - 1 < a.ended]
        assert waited, f"no request waited for the frozen API ({traffic.summary()})"
    # Killed: connections refused or cut (0). Frozen: after SIGCONT a request the server had
    # begun outlives its deadline (504), and a kept-alive connection whose idle or head
    # deadline passed during the freeze is closed as the server wakes (0); the keyed
    # writers retry both with the same key (checked below). Never a 500.
    allowed = (0, 202, 429) if fault == "kill" else (0, 202, 429, 504)
    assert all(a.status in allowed for a in answers), traffic.summary()

    ours = [e for e in topic_events(settings, [settings.kafka.follows_topic])
            if tag in e.followee_id]
    in_kafka = {e.event_id for e in ours}
    answered = [a for a in [*traffic.writes, *traffic.keyed] if a.status == 202]
    assert all(a.body["event_id"] in in_kafka for a in answered), "a 202 is not in Kafka"
    events_per_followee: dict[str, set[str]] = defaultdict(set)
    for event in ours:
        events_per_followee[event.followee_id].add(event.event_id)
    keyed = {f for f in events_per_followee if f.startswith(f"kfollowee{tag}")}
    assert keyed and all(len(events_per_followee[f]) == 1 for f in keyed), \
        "a write retried with its Idempotency-Key was applied twice"
