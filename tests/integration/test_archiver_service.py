"""The archiver as a local-stack service: started with a pid file, healthy, stopped."""

from __future__ import annotations

from pathlib import Path

from feedline.archive.store import Archive
from feedline.settings import KafkaSettings, LocalStackSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs.load import produce
from jobs.localstack.archiver import ArchiverService
from tests.support.waiting import eventually


def test_archiver_service_starts_archives_and_stops(stack, topic_factory, tmp_path: Path):
    kafka = KafkaSettings(bootstrap_servers=stack.kafka.bootstrap_servers,
                          uploads_topic=topic_factory(1), follows_topic=topic_factory(1),
                          engagements_topic=topic_factory(1))
    settings = StackSettings(kafka=kafka, storage=stack.storage,
                             local=LocalStackSettings(state_dir=tmp_path))
    service = ArchiverService(settings)
    service.group_id = f"archiver-{kafka.uploads_topic}"
    archive = Archive.open(stack.storage, "events")
    try:
        pid = service.start()
        assert service.process.pid_file.read_text().strip() == str(pid)
        def healthy() -> bool:
            assert not service.process.exited_early(), service.process.log_tail(30)
            return service.healthy()

        eventually(healthy, "the archiver's first heartbeat",
                   detail=lambda: service.process.log_tail(30))
        events = list(Workload(WorkloadSpec(users=30, posts=5, mean_followers=3,
                                            max_followers=10)).events())
        produce(kafka, events)
        def archived() -> int:
            return sum(len(archive.partition_records(p))
                       for t in kafka.event_topics for p in archive.partitions(t))

        # Flushed within --max-age (30 s) once the service has read them.
        eventually(lambda: archived() == len(events), "every event in the archive", every_s=1,
                   detail=lambda: f"{archived()} of {len(events)}; "
                                  f"{service.process.log_tail(30)}")
        rss_kb = int(next(line.split()[1] for line in
                          Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:")))
        print(f"archiver service RSS {rss_kb / 1024:.0f} MB")
        assert rss_kb < 250 * 1024
    finally:
        stopped = service.process.stop()
        for topic in kafka.event_topics:
            for blob in archive.bucket.list_blobs(prefix=f"events/{topic}/"):
                blob.delete()
    assert stopped and service.process.pid() is None
    assert "archiver stopped" in service.process.log_file.read_text()
