"""The media worker (``feedctl media run``) as a background service of the local stack."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping

from feedline.settings import REPO_ROOT
from jobs.localstack.base import Service

#: The heartbeat must have been touched this recently for the service to count as healthy
#: (one photo of the largest allowed size decodes in well under this).
HEARTBEAT_MAX_AGE_S = 60.0


class MediaWorkerService(Service):
    """Processes completed uploads (decode, strip, render); a small Python process.

    Not *essential*, like the archiver: the tests run their own worker on their own topic,
    so a stack without it still counts as up for them. Posts with new media need it.
    """

    name = "media-worker"
    essential = False

    def endpoint(self) -> str:
        """What it consumes."""
        kafka, media = self.settings.kafka, self.settings.media
        return f"{kafka.media_topic} (group {media.consumer_group})"

    def prepare(self) -> None:
        """Nothing to write: settings come from the environment."""

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """``feedctl media run`` from this interpreter over the stack's endpoints."""
        settings = self.settings
        argv = [sys.executable, "-m", "jobs.feedctl.main", "media", "run",
                "--heartbeat-file", str(self.home / "heartbeat")]
        env = {
            "PYTHONPATH": str(REPO_ROOT),
            "MALLOC_ARENA_MAX": "2",  # fewer glibc arenas: a smaller resident set
            "FEEDLINE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "FEEDLINE_KAFKA__MEDIA_TOPIC": settings.kafka.media_topic,
            "FEEDLINE_CQL__CONTACT_POINTS": json.dumps(list(settings.cql.contact_points)),
            "FEEDLINE_CQL__PORT": str(settings.cql.port),
            "FEEDLINE_CQL__KEYSPACE": settings.cql.keyspace,
            "FEEDLINE_STORAGE__EMULATOR_HOST": settings.storage.emulator_host or "",
            "FEEDLINE_STORAGE__PROJECT": settings.storage.project,
            "FEEDLINE_STORAGE__MEDIA_BUCKET": settings.storage.media_bucket,
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
