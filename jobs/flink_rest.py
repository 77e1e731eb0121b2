"""A small client of the Flink REST API: list, find, cancel, stop and savepoint jobs."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED"})


class FlinkRestError(RuntimeError):
    """The REST API answered with an error or did not answer."""


class FlinkUnreachable(FlinkRestError):
    """The REST API did not answer at all (refused, unresolvable, timed out)."""


def call(base_url: str, method: str, path: str, body: Any = None, timeout_s: float = 10) -> Any:
    """One REST call; returns the decoded JSON (or None for an empty body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (the configured Flink REST URL)
        f"{base_url}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
            raw = resp.read()
    except urllib.error.HTTPError as err:
        raise FlinkRestError(f"{method} {path}: HTTP {err.code} {err.read()[:500]!r}") from err
    except (urllib.error.URLError, OSError) as err:
        raise FlinkUnreachable(f"{method} {path}: {err}") from err
    return json.loads(raw) if raw else None


@dataclass(frozen=True)
class JobInfo:
    """One job as the overview lists it."""

    job_id: str
    name: str
    state: str
    start_time_ms: int


def list_jobs(base_url: str) -> list[JobInfo]:
    """Every job the cluster knows, newest first."""
    overview = call(base_url, "GET", "/jobs/overview")
    jobs = [
        JobInfo(j["jid"], j["name"], j["state"], int(j.get("start-time", 0)))
        for j in overview.get("jobs", [])
    ]
    return sorted(jobs, key=lambda j: j.start_time_ms, reverse=True)


def running(base_url: str, name: str) -> list[JobInfo]:
    """Jobs with this name that have not ended."""
    return [j for j in list_jobs(base_url) if j.name == name and j.state not in TERMINAL]


def job_state(base_url: str, job_id: str) -> str:
    """Current state of a job (RUNNING, FINISHED, ...)."""
    return str(call(base_url, "GET", f"/jobs/{job_id}")["state"])


def wait_for_state(
    base_url: str, job_id: str, states: set[str], timeout_s: float = 120
) -> str:
    """Poll until the job reaches one of ``states``; returns it."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = job_state(base_url, job_id)
        if state in states:
            return state
        if time.monotonic() > deadline:
            raise FlinkRestError(f"job {job_id} is {state}, not {sorted(states)}, after waiting")
        time.sleep(0.5)


def running_tasks(base_url: str, job_id: str) -> bool:
    """True when every task of the job is RUNNING (sources are consuming)."""
    detail = call(base_url, "GET", f"/jobs/{job_id}")
    vertices = detail.get("vertices", [])
    return bool(vertices) and all(v.get("status") == "RUNNING" for v in vertices)


def _vertex_taskmanagers(base_url: str, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(vertex name, a TaskManager's entry) for each TaskManager running its subtasks."""
    detail = call(base_url, "GET", f"/jobs/{job_id}")
    for vertex in detail.get("vertices", []):
        info = call(base_url, "GET", f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
        for tm in info.get("taskmanagers", []):
            if tm.get("taskmanager-id"):
                yield vertex["name"], tm


def task_placement(base_url: str, job_id: str) -> dict[str, set[str]]:
    """Each vertex's name and the TaskManagers (resource ids) running its subtasks."""
    out: dict[str, set[str]] = {}
    for name, tm in _vertex_taskmanagers(base_url, job_id):
        out.setdefault(name, set()).add(tm["taskmanager-id"])
    return out


def subtasks_per_taskmanager(base_url: str, job_id: str) -> dict[str, int]:
    """How many of the job's subtasks each TaskManager (resource id) runs."""
    out: dict[str, int] = {}
    for _name, tm in _vertex_taskmanagers(base_url, job_id):
        counts = tm.get("status-counts") or {}
        out[tm["taskmanager-id"]] = out.get(tm["taskmanager-id"], 0) + sum(
            int(n) for n in counts.values())
    return out


def cancel(base_url: str, job_id: str) -> None:
    """Cancel a job without a savepoint."""
    call(base_url, "PATCH", f"/jobs/{job_id}?mode=cancel")


class SavepointDeclined(FlinkRestError):
    """A task declined the savepoint: it was not running yet (deploying or restoring).

    The job is unchanged, and the same request succeeds a little later.
    """


#: The failure Flink reports for a savepoint of a job whose tasks are not all running.
_NOT_READY = "CHECKPOINT_DECLINED_TASK_NOT_READY"


def _wait_savepoint(base_url: str, path: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = call(base_url, "GET", path)
        if status["status"]["id"] == "COMPLETED":
            operation = status.get("operation", {})
            if "failure-cause" in operation:
                cause = operation["failure-cause"]
                kind = SavepointDeclined if _NOT_READY in str(cause) else FlinkRestError
                text = cause.get("stack-trace", str(cause)) if isinstance(cause, dict) else cause
                raise kind(f"savepoint failed: {str(text).splitlines()[0]}")
            return str(operation["location"])
        time.sleep(0.5)
    raise FlinkRestError("savepoint did not complete in time")


def _take_savepoint(base_url: str, job_id: str, action: str, body: dict[str, Any],
                    timeout_s: float) -> str:
    """POST ``/jobs/<id>/<action>`` and wait for its savepoint.

    Asked again while tasks decline for not running yet, up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        trigger = call(base_url, "POST", f"/jobs/{job_id}/{action}", body)
        try:
            return _wait_savepoint(base_url, f"/jobs/{job_id}/savepoints/{trigger['request-id']}",
                                   timeout_s)
        except SavepointDeclined:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def savepoint(base_url: str, job_id: str, target_dir: str, timeout_s: float = 120) -> str:
    """Trigger a savepoint and wait for it; returns its location."""
    return _take_savepoint(base_url, job_id, "savepoints",
                           {"target-directory": target_dir, "cancel-job": False}, timeout_s)


def stop_with_savepoint(base_url: str, job_id: str, target_dir: str, timeout_s: float = 120) -> str:
    """Stop a job gracefully, taking a savepoint; returns its location.

    A job whose tasks are still starting declines it (and keeps running): asked again
    until ``timeout_s``.
    """
    return _take_savepoint(base_url, job_id, "stop",
                           {"targetDirectory": target_dir, "drain": False}, timeout_s)


def operator_metric(base_url: str, job_id: str, operator: str, metric: str) -> float:
    """Sum a user metric over the subtasks of the operator named like ``operator``.

    User metrics are reported as ``<subtask>.<operator>.<metric>``.
    """
    total = 0.0
    for vertex in call(base_url, "GET", f"/jobs/{job_id}")["vertices"]:
        if operator not in vertex["name"]:
            continue
        path = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        ids = [m["id"] for m in call(base_url, "GET", path) if m["id"].endswith(f".{metric}")]
        ids = [i for i in ids if operator in i]
        if ids:
            for value in call(base_url, "GET", f"{path}?get={','.join(ids)}"):
                total += float(value["value"])
    return total


def job_parallelism(base_url: str, job_id: str) -> int:
    """The largest parallelism of the job's vertices (what it was started with)."""
    vertices = call(base_url, "GET", f"/jobs/{job_id}").get("vertices", [])
    return max((int(v.get("parallelism", 1)) for v in vertices), default=1)


def free_slots(base_url: str) -> int:
    """Task slots no job holds, over the whole cluster."""
    return int(call(base_url, "GET", "/overview").get("slots-available", 0))


def latest_state(base_url: str, job_id: str) -> str | None:
    """The newest savepoint or completed checkpoint of a job, else what it restored from."""
    latest = call(base_url, "GET", f"/jobs/{job_id}/checkpoints").get("latest") or {}
    taken = [entry for entry in (latest.get("completed"), latest.get("savepoint"))
             if entry and entry.get("external_path")]
    if taken:
        return str(max(taken, key=lambda entry: int(entry.get("id", 0)))["external_path"])
    restored = latest.get("restored") or {}
    return str(restored["external_path"]) if restored.get("external_path") else None
