"""The streaming jobs feedline deploys: what to run and under which names.

A spec names the entry module, the Flink job name and the Kafka consumer group; the
settings (endpoints, topics, knobs) come from ``StreamingSettings`` at deploy time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feedline.settings import REPO_ROOT


@dataclass(frozen=True)
class JobSpec:
    """One deployable streaming job."""

    name: str
    script: Path
    description: str

    def job_name(self, suffix: str = "") -> str:
        """The Flink job name (suffix lets tests run isolated copies)."""
        return f"feedline-{self.name}{suffix}"

    def group_id(self, suffix: str = "") -> str:
        """The Kafka consumer group."""
        return f"feedline-{self.name}{suffix}"


STREAMING = REPO_ROOT / "pipelines" / "streaming"
JOBS: dict[str, JobSpec] = {
    "fanout": JobSpec("fanout", STREAMING / "fanout_job.py",
                      "uploads + follows -> timelines, posts, outboxes, follow graph"),
    "counters": JobSpec("counters", STREAMING / "counters_job.py",
                        "engagements + follows + uploads -> post and user counters"),
}
