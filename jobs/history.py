"""The deployment history of each streaming job: one JSON line per apply, upgrade, rollback.

Kept as JSON lines under ``<state_dir>/jobs/history/<flink job name>.jsonl``, beside the
savepoints and releases they point at, rather than in a CQL table: the history is read
when things are going wrong (a rollback during an incident) and must not depend on the
store the jobs write to; it is append-only and small (a line per deployment), and it
travels with the savepoint folder it refers to. Each record says which code version, spec
and parallelism ran as which Flink job, which savepoint it started from, the savepoint its
predecessor was stopped with, when, and who asked.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedline.settings import StackSettings


@dataclass(frozen=True)
class Deployment:
    """One line of a job's history."""

    revision: int
    """1, 2, 3 ... per job."""
    action: str
    """``apply`` (started), ``upgrade`` (replaced a running job), ``rollback``, ``revert``
    (an upgrade's new version did not start: the replaced one started again)."""
    job_name: str
    job_id: str
    version: str
    """The code version (``jobs.releases.code_version``)."""
    commit: str | None
    parallelism: int
    upgrade_mode: str
    started_from: str | None
    """The savepoint or checkpoint it started from (None: empty state)."""
    previous_stopped_with: str | None
    """The savepoint the job it replaced was stopped with (what a rollback returns to)."""
    spec: dict[str, Any]
    """The spec as applied (what ``rollback`` deploys again)."""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    by: str = field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def history_file(stack: StackSettings, job_name: str) -> Path:
    """The JSON-lines file of one Flink job name."""
    return stack.local.state_dir / "jobs" / "history" / f"{job_name}.jsonl"


def read(stack: StackSettings, job_name: str) -> list[Deployment]:
    """Every recorded deployment of a job, oldest first."""
    try:
        lines = history_file(stack, job_name).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [Deployment(**json.loads(line)) for line in lines if line.strip()]


def append(stack: StackSettings, record: Deployment) -> None:
    """Add one record (a single write of one line)."""
    path = history_file(stack, record.job_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(asdict(record), sort_keys=True) + "\n")


def next_revision(stack: StackSettings, job_name: str) -> int:
    """The revision number the next record gets."""
    records = read(stack, job_name)
    return records[-1].revision + 1 if records else 1


def current(stack: StackSettings, job_name: str, job_id: str | None) -> Deployment | None:
    """The record of the deployment that runs as ``job_id`` (None: not deployed by apply)."""
    return next((r for r in reversed(read(stack, job_name)) if r.job_id == job_id), None)
