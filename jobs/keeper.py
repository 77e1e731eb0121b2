"""Keep deployed streaming jobs running across a JobManager restart (last-state recovery).

The local Flink cluster has no high-availability services: a JobManager that dies forgets
every job, although their retained checkpoints are still on disk. So a deployment made
through `feedctl jobs deploy` is recorded here (job name, Flink job id, the savepoint it
started from, its settings), a cancel through feedctl forgets it, and `resume_lost` starts
every recorded job that the cluster no longer runs from its newest complete checkpoint
(else from the savepoint it had started from, else from nothing, when it never got that
far). The JobManager's set-up step runs it after each (re)start, which the supervisor
triggers; `feedctl jobs resume` runs it by hand. In production the same role is played by
Flink's Kubernetes HA services or the Flink Kubernetes Operator's last-state upgrade mode.

A job recorded with a Redis this stack no longer runs (deployed on the Redis Cluster, then
the stack switched back to a single Redis, or the other way round) resumes on the stack's
cache instead, and says so: on its recorded Redis it would fail and restart for ever (seen:
a counters job restarting every few seconds, a core busy, after such a switch).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from feedline.settings import REPO_ROOT, RedisSettings, StackSettings, StreamingSettings
from feedline.settings_blocks import redact_url
from jobs import flink_rest
from jobs.localstack.redis_cluster import cluster_runs, cluster_urls
from jobs.localstack.redis_server import redis_address
from jobs.spec_model import entry_script
from jobs.specs import JOBS, JobSpec

Say = Callable[[str], object]

_CHECKPOINT = re.compile(r"chk-(\d+)")


@dataclass(frozen=True)
class KeptJob:
    """What is needed to start a deployed job again."""

    name: str
    """The spec's name (``fanout``, ``counters``)."""
    suffix: str
    """The job-name suffix of an isolated copy ("" for the stack's own jobs)."""
    job_id: str
    """The Flink job id of the latest deployment."""
    restored_from: str | None
    """The savepoint or checkpoint that deployment started from, if any."""
    streaming: str
    """The job's ``StreamingSettings`` as JSON, exactly as it was deployed."""
    release: str | None = None
    """The code version's folder it ran (``feedctl jobs apply``); None: the checkout's code."""
    flags: list[str] | None = None
    """The extra job flags of its spec as applied."""
    entry_point: str | None = None
    """The entry module of its spec as applied (None: the one of ``JOBS``)."""

    @property
    def job_name(self) -> str:
        """The Flink job name (``JobSpec.job_name``)."""
        return f"feedline-{self.name}{self.suffix}"


def records_file(stack: StackSettings) -> Path:
    """Where the deployments are recorded (next to the cluster's checkpoints)."""
    return stack.local.state_dir / "flink" / "kept-jobs.json"


def checkpoint_root(stack: StackSettings) -> Path:
    """The cluster's checkpoint folder (``execution.checkpointing.dir`` of the stack)."""
    return stack.local.state_dir / "flink" / "checkpoints"


_BASE = ("name", "suffix", "job_id", "restored_from", "streaming")
"""The fields of ``kept-jobs.json``; what ``jobs apply`` adds (release, flags, entry point)
goes to ``kept-jobs.specs.json`` beside it, so a keeper of an older checkout (a supervisor
started before, reading the same file) still reads every record."""


def _specs_file(stack: StackSettings) -> Path:
    return records_file(stack).with_name("kept-jobs.specs.json")


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}


def kept(stack: StackSettings) -> dict[str, KeptJob]:
    """The recorded deployments by Flink job name."""
    extras = _read(_specs_file(stack))
    return {name: KeptJob(**{k: fields[k] for k in _BASE if k in fields},
                          **extras.get(name, {}))
            for name, fields in _read(records_file(stack)).items()}


def _write(path: Path, document: object) -> None:
    partial = path.with_suffix(".tmp")
    # Owner-only: a kept job's settings hold the stores' credentials.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(json.dumps(document, indent=1, sort_keys=True))
    os.chmod(partial, 0o600)  # an older partial left with wider rights
    os.replace(partial, path)  # a reader never sees half a file


def _save(stack: StackSettings, jobs: dict[str, KeptJob]) -> None:
    path = records_file(stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = {n: asdict(j) for n, j in sorted(jobs.items())}
    _write(_specs_file(stack), {n: {k: v for k, v in r.items() if k not in _BASE}
                                for n, r in records.items() if r["release"] or r["flags"]
                                or r["entry_point"]})
    _write(path, {n: {k: r[k] for k in _BASE} for n, r in records.items()})


@contextmanager
def _changing(stack: StackSettings) -> Iterator[None]:
    """Hold the record's lock while it is read, changed and written again.

    Deployments made side by side (threads or processes) each keep their entry.
    """
    path = records_file(stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def remember(stack: StackSettings, job: KeptJob) -> None:
    """Record a deployment (replacing the job name's previous one)."""
    with _changing(stack):
        jobs = kept(stack)
        jobs[job.job_name] = job
        _save(stack, jobs)


def forget(stack: StackSettings, job_name: str) -> bool:
    """Drop a job from the record (it was cancelled on purpose); True if it was there."""
    with _changing(stack):
        jobs = kept(stack)
        if jobs.pop(job_name, None) is None:
            return False
        _save(stack, jobs)
        return True


def latest_checkpoint(stack: StackSettings, job_id: str) -> Path | None:
    """The newest complete checkpoint of a job (its ``_metadata`` written), if any."""
    folder = checkpoint_root(stack) / job_id
    found = [(int(m.group(1)), p) for p in folder.glob("chk-*")
             if (m := _CHECKPOINT.fullmatch(p.name)) and (p / "_metadata").is_file()]
    return max(found)[1] if found else None


def restore_point(stack: StackSettings, job: KeptJob) -> str | None:
    """Where a lost job starts again: its newest checkpoint, else where it had started."""
    checkpoint = latest_checkpoint(stack, job.job_id)
    return checkpoint.resolve().as_uri() if checkpoint else job.restored_from


def _spec_of(job: KeptJob) -> JobSpec:
    """The spec a kept job is started again with: its own flags, as applied."""
    spec = JOBS.get(job.name) or JobSpec(job.name, Path(), "", ())
    entry = job.entry_point or spec.entry_point
    return replace(spec, entry_point=entry, script=entry_script(entry, REPO_ROOT),
                   flags=tuple(spec.flags if job.flags is None else job.flags))


def lost(stack: StackSettings) -> list[KeptJob]:
    """Recorded jobs the cluster does not run (any state but a terminal one counts)."""
    return [job for job in kept(stack).values()
            if not flink_rest.running(stack.flink.rest_url, job.job_name)]


def _address(url: str) -> tuple[str, int]:
    host, port = redis_address(url)
    return ("127.0.0.1" if host == "localhost" else host), port


def runs_cache(stack: StackSettings, redis: RedisSettings) -> bool:
    """Whether this stack runs the Redis ``redis`` names (as the kind it names).

    A cluster: one of the local cluster's masters, while the stack runs that cluster (as its
    cache or beside it). A single Redis: the stack's cache, while that is a single Redis.
    """
    if redis.cluster:
        return cluster_runs(stack) and _address(redis.url) in {
            _address(url) for url in cluster_urls(stack)}
    return not stack.redis.cluster and _address(redis.url) == _address(stack.redis.url)


def on_this_stack(stack: StackSettings,
                  streaming: StreamingSettings) -> tuple[StreamingSettings, str | None]:
    """The settings to resume a job with, and why they differ from its record (or None).

    A job keeps the settings it was deployed with, but a Redis the stack no longer runs is
    replaced by the stack's cache (its key prefix stays).
    """
    if runs_cache(stack, streaming.redis):
        return streaming, None
    redis = streaming.redis.model_copy(update={"url": stack.redis.url,
                                               "cluster": stack.redis.cluster})

    def kind(r: RedisSettings) -> str:
        return f"{'Redis Cluster' if r.cluster else 'Redis'} at {redact_url(r.url)}"

    why = (f"it was deployed on the {kind(streaming.redis)}, which this stack does not run; "
           f"it resumes on the stack's {kind(redis)}")
    return streaming.model_copy(update={"redis": redis}), why


def resume_lost(stack: StackSettings, say: Say = print, *, dry_run: bool = False) -> list[str]:
    """Start every lost job again from its restore point; returns their job names.

    A job that fails to start, or whose recorded settings this code cannot read, is reported
    and left recorded, so the next run tries again; the other jobs resume all the same.
    """
    from jobs.deploy import DeployError, deploy  # deploy imports this module

    resumed = []
    for job in lost(stack):
        if kept(stack).get(job.job_name) != job:
            continue  # forgotten (cancelled on purpose) or redeployed while we resumed others
        point = restore_point(stack, job)
        origin = f"from {point}" if point else "from nothing (it never checkpointed)"
        try:
            recorded = StreamingSettings.model_validate_json(job.streaming)
        except ValidationError as error:
            # Recorded by another version of the code (a setting this one does not know):
            # the others still resume, and this one is tried again on the next run.
            # The first message only: ``str(error)`` would echo the record's values, whose
            # credentials must stay out of the log.
            problems = error.errors()
            why = problems[0]["msg"] if problems else "invalid"
            say(f"could not resume {job.job_name}: its recorded settings do not validate "
                f"here ({why}); deploy it again with `feedctl jobs deploy`")
            continue
        streaming, moved = on_this_stack(stack, recorded)
        if moved:
            say(f"{job.job_name}: {moved}")
        if dry_run:
            say(f"would resume {job.job_name} {origin}")
            resumed.append(job.job_name)
            continue
        say(f"resuming {job.job_name} {origin} ...")
        try:
            job_id = deploy(stack, streaming, job.name, suffix=job.suffix, from_savepoint=point,
                            spec=replace(_spec_of(job), parallelism=streaming.flink.parallelism),
                            release=Path(job.release) if job.release else None)
        except (DeployError, flink_rest.FlinkRestError) as error:
            say(f"could not resume {job.job_name}: {str(error).splitlines()[0]}")
            continue
        if job.job_name not in kept(stack):
            # Cancelled through feedctl (forgotten) while it started: it stays cancelled.
            flink_rest.cancel(stack.flink.rest_url, job_id)
            say(f"{job.job_name} was cancelled while it resumed; stopped it again")
            continue
        remember(stack, replace(job, job_id=job_id, restored_from=point,
                                streaming=streaming.model_dump_json()))
        say(f"{job.job_name} running again as {job_id}")
        resumed.append(job.job_name)
    return resumed
