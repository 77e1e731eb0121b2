"""The jobs feedline deploys, read from their spec files (``jobs/specs/*.yaml``).

A spec names the entry module, the Flink job name, the Kafka consumer group and the
topics it reads (``feedctl jobs wait`` measures its lag on them), its parallelism, upgrade
mode and operator uids (``jobs.spec_model`` validates the file); the settings (endpoints,
topic names, knobs) come from ``StreamingSettings`` at deploy time. ``JOBS`` holds the
streaming jobs, ``BATCH_JOBS`` the Beam rebuilds (run by ``feedctl rebuild``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from feedline.settings import REPO_ROOT, KafkaSettings
from jobs.spec_model import JobSpecFile, SpecError, entry_script, load_spec

SPEC_DIR = Path(__file__).resolve().parent / "specs"
"""The platform's spec files, one per job."""


@dataclass(frozen=True)
class JobSpec:
    """One deployable job."""

    name: str
    script: Path
    description: str
    reads: tuple[str, ...]
    """The event-topic roles it consumes (``uploads``, ``follows``, ``engagements``)."""
    kind: str = "streaming"
    entry_point: str = ""
    parallelism: int = 1
    upgrade_mode: str = "savepoint"
    operator_uids: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    """Topics it produces to (dead letters)."""
    flags: tuple[str, ...] = ()
    """Extra flags for the entry point."""
    resources: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    source: Path | None = None
    """The spec file it was read from."""

    @classmethod
    def from_file(cls, spec: JobSpecFile, source: Path, root: Path = REPO_ROOT) -> JobSpec:
        """The spec of a validated file (its script under ``root``)."""
        return cls(spec.name, entry_script(spec.entry_point, root), spec.description,
                   tuple(spec.topics.reads), spec.kind, spec.entry_point, spec.parallelism,
                   spec.upgrade_mode or "", tuple(spec.operator_uids), tuple(spec.topics.writes),
                   tuple(spec.flags), spec.resources.model_dump(), source)

    def job_name(self, suffix: str = "") -> str:
        """The Flink job name (suffix lets tests run isolated copies)."""
        return f"feedline-{self.name}{suffix}"

    def group_id(self, suffix: str = "") -> str:
        """The Kafka consumer group."""
        return f"feedline-{self.name}{suffix}"

    def topics(self, kafka: KafkaSettings) -> list[str]:
        """The Kafka topics it consumes under these settings."""
        return [getattr(kafka, f"{role}_topic") for role in self.reads]


def read_spec(path: Path, root: Path = REPO_ROOT) -> JobSpec:
    """One spec file as a ``JobSpec`` (``SpecError`` when it is invalid)."""
    return JobSpec.from_file(load_spec(path, root), path, root)


def _load() -> tuple[dict[str, JobSpec], list[str]]:
    specs: dict[str, JobSpec] = {}
    errors: list[str] = []
    for path in sorted(SPEC_DIR.glob("*.yaml")):
        try:
            specs[path.stem] = read_spec(path)
        except SpecError as err:  # reported by `feedctl jobs`, not at every import
            errors.append(str(err))
    return specs, errors


ALL_SPECS, SPEC_ERRORS = _load()
"""Every valid job of ``jobs/specs/`` by name; the one-line errors of the invalid ones
(``feedctl jobs`` refuses to run while there are any; a unit test keeps the list empty)."""
JOBS: dict[str, JobSpec] = {n: s for n, s in ALL_SPECS.items() if s.kind == "streaming"}
"""The streaming jobs (``feedctl jobs deploy``, the lag exporter, the keeper)."""
BATCH_JOBS: dict[str, JobSpec] = {n: s for n, s in ALL_SPECS.items() if s.kind == "batch"}
"""The Beam rebuild jobs (``feedctl rebuild``)."""
