"""The archiver (``feedctl archive run``) as a background service of the local stack."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

from feedline.settings import REPO_ROOT
from jobs.localstack.base import Service

#: The heartbeat must have been touched this recently for the service to count as healthy.
HEARTBEAT_MAX_AGE_S = 30.0


class ArchiverService(Service):
    """Copies the event topics to the archive bucket; a small Python process (~100 MB).

    It is not *essential*: the test fixtures and `make test` do not need it, so a stack
    without it still counts as up for them (``essential = False``).
    """

    name = "archiver"
    essential = False
    group_id = "feedline-archiver"
    """Kafka consumer group of the service."""

    def endpoint(self) -> str:
        """Where it writes."""
        storage = self.settings.storage
        return f"gs://{storage.archive_bucket}/events (group feedline-archiver)"

    def prepare(self) -> None:
        """Nothing to write: settings come from the environment."""

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """``feedctl archive run`` from this interpreter over the stack's topics and bucket."""
        kafka, storage = self.settings.kafka, self.settings.storage
        argv = [sys.executable, "-m", "jobs.feedctl.main", "archive", "run",
                "--heartbeat-file", str(self.home / "heartbeat"), "--group", self.group_id,
                "--metrics-port", str(self.settings.monitoring.archiver_metrics_port)]
        for topic in kafka.event_topics:
            argv += ["--topic", topic]
        env = {
            "PYTHONPATH": str(REPO_ROOT),
            "MALLOC_ARENA_MAX": "2",  # fewer glibc arenas: a smaller resident set
            "FEEDLINE_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "FEEDLINE_STORAGE__EMULATOR_HOST": storage.emulator_host or "",
            "FEEDLINE_STORAGE__PROJECT": storage.project,
            "FEEDLINE_STORAGE__ARCHIVE_BUCKET": storage.archive_bucket,
        }
        return argv, env

    def healthy(self) -> bool:
        """Its process runs and its loop touched the heartbeat recently."""
        if self.process.pid() is None:
            return False
        try:
            age = time.time() - (self.home / "heartbeat").stat().st_mtime
        except FileNotFoundError:
            return False
        return age < HEARTBEAT_MAX_AGE_S
