"""Apply, upgrade and roll back streaming jobs from their specs, recording each deployment.

``apply`` makes a job run as its spec says: a job that does not run is started (from
``--from-savepoint`` if given); a running job whose version, parallelism, flags or entry
point differ is replaced as its ``upgrade_mode`` says (savepoint: stopped with a savepoint
and started from it; last-state: cancelled and started from its newest retained
checkpoint; stateless: cancelled and started empty). ``rollback`` starts the previous
deployment's spec and code version again from the savepoint it was stopped with. Every
deployment is a line of ``jobs.history``; the code runs from its release folder
(``jobs.releases``). The plan (``jobs.plan``) is checked first: an incompatible state
stops the command before anything is stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedline.settings import StackSettings, StreamingSettings
from jobs import flink_rest, history, keeper
from jobs.deploy import DeployError, deploy
from jobs.flink_submit import savepoint_target
from jobs.plan import Plan, make_plan, running_state
from jobs.releases import code_version, git_commit, make_release, release_path
from jobs.savepoint_meta import operator_id, read_operators
from jobs.spec_model import entry_script
from jobs.specs import JobSpec

Say = Callable[[str], object]


class RolloutError(RuntimeError):
    """The apply, upgrade or rollback cannot go ahead or failed; one line."""


@dataclass(frozen=True)
class Outcome:
    """What a command did (or, with ``dry_run``, would do)."""

    plan: Plan
    record: history.Deployment | None
    """The new history line (None: nothing deployed)."""
    stopped_with: str | None


def spec_record(spec: JobSpec) -> dict[str, Any]:
    """The spec as the history keeps it (enough to deploy it again)."""
    return {"name": spec.name, "description": spec.description, "reads": list(spec.reads),
            "writes": list(spec.writes), "entry_point": spec.entry_point,
            "parallelism": spec.parallelism, "upgrade_mode": spec.upgrade_mode,
            "operator_uids": list(spec.operator_uids), "flags": list(spec.flags),
            "resources": dict(spec.resources),
            "source": str(spec.source) if spec.source else None}


def spec_from_record(record: dict[str, Any], root: Path) -> JobSpec:
    """A recorded spec, its script under ``root`` (a release folder)."""
    return JobSpec(record["name"], entry_script(record["entry_point"], root),
                   record["description"], tuple(record["reads"]), "streaming",
                   record["entry_point"], int(record["parallelism"]), record["upgrade_mode"],
                   tuple(record["operator_uids"]), tuple(record["writes"]),
                   tuple(record["flags"]), dict(record["resources"]),
                   Path(record["source"]) if record.get("source") else None)


def _stop(stack: StackSettings, job_id: str, job_name: str, mode: str, say: Say) -> str | None:
    """Stop the running job as ``mode`` says; returns the state the successor starts from."""
    url = stack.flink.rest_url
    keeper.forget(stack, job_name)  # stopped on purpose: the keeper must not restart it
    if mode == "savepoint":
        say(f"stopping {job_name} ({job_id}) with a savepoint ...")
        location = flink_rest.stop_with_savepoint(url, job_id, savepoint_target(stack))
        say(f"savepoint {location}")
        return location
    flink_rest.cancel(url, job_id)
    flink_rest.wait_for_state(url, job_id, set(flink_rest.TERMINAL))
    if mode == "last-state":
        checkpoint = keeper.latest_checkpoint(stack, job_id)
        say(f"cancelled {job_name}; newest checkpoint {checkpoint or 'none'}")
        return checkpoint.resolve().as_uri() if checkpoint else None
    say(f"cancelled {job_name} (stateless)")
    return None


def _deploy(stack: StackSettings, streaming: StreamingSettings, spec: JobSpec, suffix: str,
            release: Path, start_from: str | None, say: Say) -> str:
    say(f"deploying {spec.job_name(suffix)} at parallelism {spec.parallelism}"
        + (f" from {start_from}" if start_from else " with empty state") + " ...")
    try:
        return deploy(stack, streaming, spec.name, suffix=suffix, from_savepoint=start_from,
                      keep=True, spec=spec, release=release)
    except (DeployError, flink_rest.FlinkRestError) as err:
        if isinstance(err, flink_rest.FlinkUnreachable):
            raise
        raise RolloutError(f"{spec.job_name(suffix)} did not start: "
                           f"{_cause(str(err), start_from)}") from err


_GENERIC = "Python process exits with code"
_OPERATOR = re.compile(r"for operator ([0-9a-f]{32})")


def _cause(output: str, start_from: str | None = None) -> str:
    """The telling line of a failed submission.

    Its last ``Caused by`` that is not the client's own exit, else its last line; an
    operator id it names is given its uid when the savepoint it started from has one.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()] or ["(no output)"]
    causes = [line for line in lines if line.startswith("Caused by:") and _GENERIC not in line]
    cause = (causes or lines)[-1]
    found = _OPERATOR.search(cause)
    if found and start_from:
        try:
            uids = read_operators(start_from).uids
        except (OSError, ValueError):
            uids = ()
        named = [uid for uid in uids if operator_id(uid) == found.group(1)]
        if named:
            cause = cause.replace(found.group(0), f"{found.group(0)} (uid {named[0]})")
    return cause[:400]


def apply(stack: StackSettings, streaming: StreamingSettings, spec: JobSpec, *,
          suffix: str = "", from_savepoint: str | None = None, require_running: bool = False,
          dry_run: bool = False, say: Say = print) -> Outcome:
    """Make the job run as ``spec`` says (``require_running``: the ``upgrade`` verb)."""
    if spec.kind != "streaming":
        raise RolloutError(f"{spec.name} is a {spec.kind} job: run it with `feedctl rebuild`")
    version = code_version()
    plan = make_plan(stack, spec, version, suffix, from_savepoint)
    if require_running and plan.running_job_id is None:
        raise RolloutError(f"{plan.job_name} is not running: nothing to upgrade "
                           "(`feedctl jobs apply` starts it)")
    if plan.problems:
        raise RolloutError(f"{plan.job_name}: " + "; ".join(plan.problems))
    if plan.action == "none" or dry_run:
        return Outcome(plan, None, None)
    _, release = make_release(stack)
    stopped_with = None
    start_from = from_savepoint
    if plan.running_job_id is not None:
        start_from = _stop(stack, plan.running_job_id, plan.job_name, spec.upgrade_mode, say)
        stopped_with = start_from if spec.upgrade_mode == "savepoint" else None
    try:
        job_id = _deploy(stack, streaming, spec, suffix, release, start_from, say)
    except RolloutError as err:
        if plan.running_job_id is None:
            raise
        raise RolloutError(f"{err}; {_revert(stack, streaming, plan, suffix, start_from, say)}"
                           ) from err
    record = history.Deployment(
        history.next_revision(stack, plan.job_name),
        "upgrade" if plan.running_job_id else "apply", plan.job_name, job_id, version,
        git_commit(), spec.parallelism, spec.upgrade_mode, start_from, stopped_with,
        spec_record(spec))
    history.append(stack, record)
    say(f"{plan.job_name} running as {job_id} (revision {record.revision}, version {version})")
    return Outcome(plan, record, stopped_with)


def _revert(stack: StackSettings, streaming: StreamingSettings, plan: Plan, suffix: str,
            start_from: str | None, say: Say) -> str:
    """Start the replaced deployment again after its successor failed; says what happened."""
    url = stack.flink.rest_url
    for job in flink_rest.running(url, plan.job_name):  # the failed one, restarting
        flink_rest.cancel(url, job.job_id)
    keeper.forget(stack, plan.job_name)
    where = start_from or "empty state"
    record = history.current(stack, plan.job_name, plan.running_job_id)
    if record is None or not (release_path(stack, record.version) / ".complete").is_file():
        return (f"the previous deployment was not made by `jobs apply`, so its code is not "
                f"kept: the job is stopped, its state at {where} (`feedctl jobs deploy "
                f"{plan.job_name.removeprefix('feedline-')} --from-savepoint PATH`)")
    release = release_path(stack, record.version)
    previous = spec_from_record(record.spec, release)
    try:
        job_id = _deploy(stack, streaming, previous, suffix, release, start_from, say)
    except RolloutError as err:
        return f"the previous version did not start again either ({err}); state at {where}"
    history.append(stack, history.Deployment(
        history.next_revision(stack, plan.job_name), "revert", plan.job_name, job_id,
        record.version, record.commit, previous.parallelism, previous.upgrade_mode,
        start_from, start_from, record.spec))
    return f"the previous version {record.version} runs again as {job_id}"


@dataclass(frozen=True)
class RollbackPlan:
    """Which deployment a rollback returns to, and from which state."""

    job_name: str
    running_job_id: str | None
    current: history.Deployment
    target: history.Deployment
    start_from: str | None
    """The savepoint the target was stopped with (None: a fresh one of the running job)."""
    missing_uids: list[str]

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {"job_name": self.job_name, "running_job_id": self.running_job_id,
                "from_revision": self.current.revision, "to_revision": self.target.revision,
                "to_version": self.target.version, "start_from": self.start_from,
                "missing_uids": self.missing_uids, "compatible": not self.missing_uids}


def plan_rollback(stack: StackSettings, job_name: str) -> RollbackPlan:
    """The deployment before the current one, and the savepoint it left."""
    records = history.read(stack, job_name)
    jobs = flink_rest.running(stack.flink.rest_url, job_name)
    running_id = jobs[0].job_id if jobs else None
    current = history.current(stack, job_name, running_id) if running_id else None
    if current is None and running_id is not None:
        raise RolloutError(f"{job_name} runs as {running_id}, which `jobs apply` did not "
                           "deploy: no previous version is recorded")
    current = current or (records[-1] if records else None)
    if current is None:
        raise RolloutError(f"{job_name} has no deployment history: nothing to roll back to")
    earlier = [r for r in records if r.revision < current.revision]
    target = next((r for r in reversed(earlier) if r.version != current.version
                   or r.spec != current.spec), None)
    if target is None:
        raise RolloutError(f"{job_name}: revision {current.revision} has no earlier "
                           "different deployment to roll back to")
    # The savepoint the target was stopped with, recorded by the deployment that replaced it.
    successor = next((r for r in records if r.revision > target.revision), None)
    start_from = successor.previous_stopped_with if successor else None
    # Without the savepoint the target left, the current job's own state is carried over.
    saved = None
    if start_from:
        saved = read_operators(start_from)
    elif running_id:
        newest = flink_rest.latest_state(stack.flink.rest_url, running_id)
        if newest:
            _, saved = running_state(stack.flink.rest_url, running_id, newest)
    missing: list[str] = []
    if saved is not None:
        uids = set(target.spec["operator_uids"])
        missing = [u for u in saved.uids if u not in uids and u not in saved.stateless]
    return RollbackPlan(job_name, running_id, current, target, start_from, missing)


def rollback(stack: StackSettings, streaming: StreamingSettings, name: str, *,
             suffix: str = "", dry_run: bool = False, say: Say = print) -> RollbackPlan:
    """Stop the current deployment (with a savepoint) and start the previous one.

    The previous spec and code version start from the savepoint the previous deployment was
    stopped with when the current one replaced it, so the state is the one that version
    wrote; the events since then are read again from that savepoint's Kafka offsets and
    their effects rewritten (every write is an upsert or an absolute value). Without such a
    savepoint (a stateless or last-state upgrade), from a fresh savepoint of the current job.
    """
    job_name = f"feedline-{name}{suffix}"
    plan = plan_rollback(stack, job_name)
    if plan.missing_uids:
        raise RolloutError(f"{job_name}: the savepoint holds operator uids revision "
                           f"{plan.target.revision} lacks: {', '.join(plan.missing_uids)}")
    release = release_path(stack, plan.target.version)
    if not (release / ".complete").is_file():
        raise RolloutError(f"{job_name}: the code of version {plan.target.version} is gone "
                           f"({release})")
    if dry_run:
        return plan
    target_spec = spec_from_record(plan.target.spec, release)
    stopped_with = None
    if plan.running_job_id is not None:
        stopped_with = _stop(stack, plan.running_job_id, job_name, "savepoint", say)
    start_from = plan.start_from or stopped_with
    job_id = _deploy(stack, streaming, target_spec, suffix, release, start_from, say)
    record = history.Deployment(
        history.next_revision(stack, job_name), "rollback", job_name, job_id,
        plan.target.version, plan.target.commit, target_spec.parallelism,
        target_spec.upgrade_mode, start_from, stopped_with, plan.target.spec)
    history.append(stack, record)
    say(f"{job_name} rolled back to revision {plan.target.revision} (version "
        f"{plan.target.version}) as {job_id}")
    return plan
