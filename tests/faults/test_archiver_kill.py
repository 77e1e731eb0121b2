"""The archiver killed (SIGKILL) or frozen (SIGSTOP) mid-stream; nothing is lost.

A private archiver (``jobs/localstack/archiver.py``, the stack's service class) on this test's
own topics, consumer group and state directory, watched by a private supervisor
(``jobs/localstack/supervise.py``, the stack's daemon) that watches it alone: the stack's
own archiver and supervisor are not touched. The generator's events are produced in two
halves; once the first half is archived, the second is produced and the archiver killed 2 s
later (it flushes every 5 s here, so it likely holds read but unwritten records). The
supervisor must restart it with no manual step, within ``RECOVERY_BOUND_S``. Frozen instead
for ``FREEZE_S`` (past its consumer session, so the group moves on without it), it must
carry on by itself after SIGCONT within the same bound. Either way the archive must then
hold every event (readers de-duplicate by ``event_id``: the archiver's contract is
at-least-once, ``feedline/archive/archiver.py``), and no other.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from feedline.archive.store import Archive
from feedline.settings import KafkaSettings, LocalStackSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs.load import produce
from jobs.localstack import restarts
from jobs.localstack.archiver import ArchiverService
from jobs.localstack.base import Service
from jobs.localstack.restarts import Backoff
from jobs.localstack.supervise import SupervisorService
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

#: The stated recovery bound: from SIGKILL to every event archived.
RECOVERY_BOUND_S = 90.0
#: How old the archiver's buffer may get before it is written (the stack's default: 30 s).
FLUSH_AGE_S = 5.0
#: The kill comes this long after the second half was produced: likely read by then and
#: not yet written (where it lands changes what is re-read, never what must be archived).
KILL_AFTER_S = 2.0
#: How long the frozen archiver stays stopped: longer than Kafka's session timeout (10 s in
#: kafka-python), so its group membership expires while it is frozen.
FREEZE_S = 20.0


class PrivateArchiver(ArchiverService):
    """The archiver service on its own consumer group, flushing every ``FLUSH_AGE_S``."""

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.group_id = f"archiver-{settings.kafka.uploads_topic}"

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        argv, env = super().command()
        return [*argv, "--max-age", str(FLUSH_AGE_S)], env


def private_archiver(settings: StackSettings) -> list[Service]:
    """What the test's supervisor watches (``--services``)."""
    return [PrivateArchiver(settings)]


@pytest.fixture
def archiver_stack(stack: StackSettings, topic_factory: object,
                   tmp_path: Path) -> Iterator[StackSettings]:
    """Settings of a private archiver: the test's topics and state directory."""
    make = topic_factory
    assert callable(make)
    kafka = KafkaSettings(bootstrap_servers=stack.kafka.bootstrap_servers,
                          uploads_topic=make(1), follows_topic=make(1),
                          engagements_topic=make(1))
    settings = StackSettings(kafka=kafka, storage=stack.storage,
                             local=LocalStackSettings(state_dir=tmp_path))
    yield settings
    archive = Archive.open(stack.storage, "events")
    for topic in kafka.event_topics:
        for blob in archive.bucket.list_blobs(prefix=f"events/{topic}/"):
            blob.delete()


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_a_killed_or_frozen_archiver_recovers_and_loses_nothing(
        archiver_stack: StackSettings, fault: str) -> None:
    settings = archiver_stack
    kafka = settings.kafka
    archiver = PrivateArchiver(settings)
    supervisor = SupervisorService(settings, services=f"{__name__}:private_archiver",
                                   backoff=Backoff(first_s=0.5, cap_s=5.0, stable_s=3600))
    archive = Archive.open(settings.storage, "events")
    events = list(Workload(WorkloadSpec(users=40, posts=10, mean_followers=4,
                                        max_followers=12, seed=5)).events())
    half = len(events) // 2
    first, second = events[:half], events[half:]

    def archived() -> Counter[str]:
        return Counter(str(r.get("event_id")) for t in kafka.event_topics
                       for p in archive.partitions(t) for r in archive.partition_records(p))

    def log() -> str:
        return f"{archiver.process.log_tail(20)}\n{supervisor.process.log_tail(20)}"

    try:
        archiver.start()
        eventually(archiver.healthy, "the archiver's first heartbeat", timeout_s=60,
                   detail=log)
        supervisor.start()
        eventually(supervisor.healthy, "the supervisor's first look", timeout_s=60, detail=log)

        produce(kafka, first)
        want_first = {p.event.event_id for p in first}
        eventually(lambda: set(archived()) >= want_first, "the first half archived",
                   timeout_s=RECOVERY_BOUND_S, every_s=1, detail=log)

        produce(kafka, second)
        time.sleep(KILL_AFTER_S)
        pid = archiver.process.pid()
        assert pid is not None
        killed_at = time.monotonic()
        if fault == "freeze":
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(FREEZE_S)
            finally:
                os.kill(pid, signal.SIGCONT)
            killed_at = time.monotonic()  # recovery counts from SIGCONT
            print(f"\nfroze the archiver (pid {pid}) {FREEZE_S:.0f} s, "
                  f"{KILL_AFTER_S:.0f} s after producing {len(second)} events")
        else:
            os.kill(pid, signal.SIGKILL)
            print(f"\nkilled the archiver (pid {pid}) {KILL_AFTER_S:.0f} s after producing "
                  f"{len(second)} events")

        def restarted() -> bool:
            new = archiver.process.pid()
            return new is not None and (new != pid or fault == "freeze") and archiver.healthy()

        eventually(restarted, "the archiver healthy again (restarted after a kill)",
                   timeout_s=RECOVERY_BOUND_S, every_s=0.2, detail=log)
        back_at = time.monotonic()
        want = {p.event.event_id for p in events}
        eventually(lambda: set(archived()) >= want, "every event archived after the restart",
                   timeout_s=RECOVERY_BOUND_S, every_s=1,
                   detail=lambda: f"{len(want - set(archived()))} missing; {log()}")
        done_at = time.monotonic()
        counts = archived()
        signal_name = "SIGCONT" if fault == "freeze" else "SIGKILL"
        print(f"archiver healthy again {back_at - killed_at:.1f} s after {signal_name}, every "
              f"event archived {done_at - killed_at:.1f} s after it; {len(events)} events, "
              f"{sum(counts.values()) - len(counts)} archived twice")
        assert set(counts) == want, "the archive holds events that were never produced"
        if fault == "kill":
            record = restarts.load(archiver.home)
            assert record.restarts >= 1 and record.last_restart_at is not None
    finally:
        supervisor.process.stop(timeout_s=10)  # first, so it does not restart the archiver
        archiver.process.stop(timeout_s=10)
