"""`feedctl jobs plan/apply/upgrade/rollback/history` on the real cluster, in a sandbox.

The notifications job of ``jobs/specs/notifications.yaml`` is applied under a sandbox's
topics, keyspace, key prefix and job-name suffix (so the stack's own jobs are never
touched), planned against its running state, upgraded to a changed spec through a
savepoint, upgraded to a version that does not start (reverted), rolled back to its first
revision from the savepoint that revision was stopped with, and its history read back;
events arrive in every phase and the stores must end equal to the reference model of all
of them: nothing lost or doubled across the moves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from feedline.settings import (
    FeedSettings,
    StackSettings,
    get_batch_settings,
    get_stack_settings,
    get_streaming_settings,
)
from jobs import flink_rest, history
from jobs.feedctl.main import main as feedctl
from jobs.load import produce
from jobs.sandbox import Sandbox, open_sandbox
from jobs.specs import JOBS
from tests.support.notification_workload import NotificationWorkload, store_differences
from tests.support.notifications_reference import reference_notifications
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

Run = Callable[..., tuple[int, dict]]


def _clear_settings() -> None:
    for getter in (get_stack_settings, get_batch_settings, get_streaming_settings):
        getter.cache_clear()


@pytest.fixture
def sandbox(stack: StackSettings) -> Iterator[Sandbox]:
    flink = stack.flink.model_copy(update={"checkpoint_interval_ms": 1000})
    sb = open_sandbox(stack, FeedSettings(), flink)
    yield sb
    sb.close()
    history.history_file(stack, JOBS["notifications"].job_name(sb.suffix)).unlink(
        missing_ok=True)


@pytest.fixture
def run(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """feedctl with the sandbox's settings; (exit code, the --json document).

    A failed command's document carries its stderr (the one-line error) as ``stderr``, so
    an assertion on it says why.
    """
    kafka, streaming = sandbox.streaming.kafka, sandbox.streaming
    for name, value in {"KAFKA__UPLOADS_TOPIC": kafka.uploads_topic,
                        "KAFKA__FOLLOWS_TOPIC": kafka.follows_topic,
                        "KAFKA__ENGAGEMENTS_TOPIC": kafka.engagements_topic,
                        "CQL__KEYSPACE": streaming.cql.keyspace,
                        "REDIS__KEY_PREFIX": streaming.redis.key_prefix,
                        "FLINK__CHECKPOINT_INTERVAL_MS": "1000"}.items():
        monkeypatch.setenv(f"FEEDLINE_{name}", value)
    _clear_settings()

    def run_one(*argv: str) -> tuple[int, dict]:
        code = feedctl(["jobs", *argv, f"--suffix={sandbox.suffix}", "--json"])
        out, err = capsys.readouterr()
        document = json.loads(out) if out.strip() else {}
        if code:
            document.setdefault("stderr", err.strip())
        return code, document

    yield run_one
    monkeypatch.undo()
    _clear_settings()


def _spec_file(tmp_path: Path, name: str, **changes: object) -> Path:
    document = yaml.safe_load(JOBS["notifications"].source.read_text())  # type: ignore[union-attr]
    document.update(changes)
    path = tmp_path / name / "notifications.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(document))
    return path


def _state(stack: StackSettings, job_id: str) -> str | None:
    return flink_rest.latest_state(stack.flink.rest_url, job_id)


def test_plan_apply_upgrade_rollback_history(stack: StackSettings, sandbox: Sandbox, run: Run,
                                             tmp_path: Path) -> None:
    workload = NotificationWorkload(seed=15, users=12, posts=30, tag="j")
    events = [*workload.follows(40), *workload.activity()]
    phases = [events[: len(events) // 3], events[len(events) // 3: 2 * len(events) // 3],
              events[2 * len(events) // 3:]]
    kafka = sandbox.streaming.kafka

    code, applied = run("apply", "notifications")
    assert code == 0, applied
    assert applied["plan"]["action"] == "start"
    first = applied["deployed"]
    assert (first["revision"], first["action"], first["started_from"]) == (1, "apply", None)
    produce(kafka, phases[0])
    eventually(lambda: _state(stack, first["job_id"]), "a first checkpoint")

    code, planned = run("plan", "notifications")
    [plan] = planned["plans"]
    assert code == 0 and plan["action"] == "none", planned
    assert plan["running_job_id"] == first["job_id"], planned

    flagged = _spec_file(tmp_path, "flagged", flags=["--dedup-window-s", "1800"])
    code, planned = run("plan", str(flagged))
    [plan] = planned["plans"]
    assert code == 0 and plan["action"] == "upgrade" and plan["compatible"], planned
    assert plan["changes"] == [{"field": "flags", "current": [],
                                "desired": ["--dedup-window-s", "1800"]}]
    assert {"npost-state", "recipient-state", "write-notifications"} <= set(plan["saved_uids"])
    assert "parse-uploads" in plan["stateless_uids"]  # a map: Flink may drop it
    assert "npost-state" not in plan["stateless_uids"]
    uids = [u for u in JOBS["notifications"].operator_uids if u != "npost-state"]
    renamed = _spec_file(tmp_path, "renamed", flags=["--dedup-window-s", "1800"],
                         operator_uids=[*uids, "post-state"])
    code, planned = run("plan", str(renamed))
    assert code == 1 and planned["plans"][0]["missing_uids"] == ["npost-state"], planned
    code, _ = run("upgrade", str(renamed))
    assert code == 1  # refused before anything was stopped
    code, dry = run("upgrade", str(flagged), "--dry-run")
    assert code == 0 and dry["deployed"] is None, dry
    assert flink_rest.running(stack.flink.rest_url, JOBS["notifications"].job_name(
        sandbox.suffix))[0].job_id == first["job_id"]

    code, upgraded = run("upgrade", str(flagged))
    assert code == 0, upgraded
    second = upgraded["deployed"]
    assert (second["revision"], second["action"]) == (2, "upgrade")
    assert second["started_from"] == second["previous_stopped_with"] is not None
    assert second["spec"]["flags"] == ["--dedup-window-s", "1800"]
    assert flink_rest.job_state(stack.flink.rest_url, first["job_id"]) == "FINISHED"
    produce(kafka, phases[1])

    # A version that does not start (its entry point refuses a flag): the replaced one
    # starts again from the savepoint it was just stopped with, recorded as a revert.
    broken = _spec_file(tmp_path, "broken", flags=["--dedup-window-s", "1800", "--no-such"])
    code, _ = run("upgrade", str(broken))
    assert code == 1
    reverted = history.read(stack, second["job_name"])[-1]
    assert (reverted.revision, reverted.action, reverted.spec) == (3, "revert", second["spec"])
    assert flink_rest.job_state(stack.flink.rest_url, reverted.job_id) == "RUNNING"

    code, dry = run("rollback", "notifications", "--dry-run")
    assert code == 0 and (dry["from_revision"], dry["to_revision"]) == (3, 1), dry
    assert dry["start_from"] == second["previous_stopped_with"] and dry["compatible"]
    code, rolled = run("rollback", "notifications")
    assert code == 0, rolled
    produce(kafka, phases[2])

    code, listed = run("history", "notifications")
    records = listed["deployments"]
    assert code == 0 and [(r["revision"], r["action"]) for r in records] == [
        (1, "apply"), (2, "upgrade"), (3, "revert"), (4, "rollback")], listed
    third = records[3]
    assert third["version"] == first["version"] and third["spec"] == first["spec"]
    assert third["started_from"] == second["previous_stopped_with"]
    assert flink_rest.job_state(stack.flink.rest_url, third["job_id"]) == "RUNNING"
    sandbox.job_ids["notifications"] = third["job_id"]

    expected = reference_notifications([p.event for p in events], known_users_only=True)

    def converged() -> bool:
        sandbox.assert_jobs_alive()
        return not store_differences(sandbox.session, sandbox.redis, sandbox.keys, expected)

    eventually(converged, "the stores to equal the reference after the rollback",
               every_s=2, detail=lambda: str(store_differences(
                   sandbox.session, sandbox.redis, sandbox.keys, expected)[:5]))
