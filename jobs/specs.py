"""The streaming jobs feedline deploys: what to run and under which names.

A spec names the entry module, the Flink job name, the Kafka consumer group and the
topics it reads (``feedctl jobs wait`` measures its lag on them); the settings
(endpoints, topic names, knobs) come from ``StreamingSettings`` at deploy time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feedline.settings import REPO_ROOT, KafkaSettings


@dataclass(frozen=True)
class JobSpec:
    """One deployable streaming job."""

    name: str
    script: Path
    description: str
    reads: tuple[str, ...]
    """The event-topic roles it consumes (``uploads``, ``follows``, ``engagements``)."""

    def job_name(self, suffix: str = "") -> str:
        """The Flink job name (suffix lets tests run isolated copies)."""
        return f"feedline-{self.name}{suffix}"

    def group_id(self, suffix: str = "") -> str:
        """The Kafka consumer group."""
        return f"feedline-{self.name}{suffix}"

    def topics(self, kafka: KafkaSettings) -> list[str]:
        """The Kafka topics it consumes under these settings."""
        return [getattr(kafka, f"{role}_topic") for role in self.reads]


STREAMING = REPO_ROOT / "pipelines" / "streaming"
JOBS: dict[str, JobSpec] = {
    "fanout": JobSpec("fanout", STREAMING / "fanout_job.py",
                      "uploads + follows -> timelines, posts, outboxes, follow graph",
                      ("uploads", "follows")),
    "counters": JobSpec("counters", STREAMING / "counters_job.py",
                        "engagements + follows + uploads -> post and user counters",
                        ("engagements", "follows", "uploads")),
    "notifications": JobSpec(
        "notifications", STREAMING / "notifications_job.py",
        "uploads + engagements + follows -> notification groups per recipient",
        ("uploads", "engagements", "follows")),
}
