"""apply's order of steps and its revert when the new version does not start (Flink faked)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from feedline.settings import StackSettings, StreamingSettings
from jobs import history, keeper, rollout
from jobs.deploy import DeployError
from jobs.plan import Plan
from jobs.specs import JOBS


class FakeCluster:
    """What rollout asks Flink and the deployer, recorded."""

    def __init__(self, fail_first_deploys: int) -> None:
        self.fail = fail_first_deploys
        self.calls: list[tuple[str, Any]] = []

    def plan(self, stack: StackSettings, spec: Any, version: str, suffix: str,
             from_savepoint: str | None) -> Plan:
        return Plan(spec.job_name(suffix), "upgrade", "old", [], "file:///chk", ["x"], [],
                    True)

    def stop(self, url: str, job_id: str, target: str) -> str:
        self.calls.append(("stop", job_id))
        return "file:///sp-1"

    def deploy(self, stack: StackSettings, streaming: StreamingSettings, name: str,
               **kw: Any) -> str:
        self.calls.append(("deploy", (kw["spec"].flags, str(kw["release"]),
                                      kw["from_savepoint"])))
        if self.fail:
            self.fail -= 1
            raise DeployError("restore failed: Cannot map checkpoint/savepoint state")
        return f"job{len(self.calls)}"


@pytest.fixture
def stack(tmp_path: Path) -> StackSettings:
    return StackSettings(local={"state_dir": tmp_path})  # type: ignore[arg-type]


def _install(monkeypatch: pytest.MonkeyPatch, fake: FakeCluster, tmp_path: Path) -> None:
    monkeypatch.setattr(rollout, "make_plan", fake.plan)
    monkeypatch.setattr(rollout, "code_version", lambda: "v2")
    monkeypatch.setattr(rollout, "git_commit", lambda: None)
    monkeypatch.setattr(rollout, "make_release", lambda stack: ("v2", tmp_path / "rel-v2"))
    monkeypatch.setattr(rollout, "deploy", fake.deploy)
    monkeypatch.setattr(rollout.flink_rest, "stop_with_savepoint", fake.stop)
    monkeypatch.setattr(rollout.flink_rest, "running", lambda url, name: [])
    monkeypatch.setattr(rollout, "savepoint_target", lambda stack: "file:///sps")


def _previous(stack: StackSettings) -> None:
    folder = rollout.release_path(stack, "v1")
    folder.mkdir(parents=True)
    (folder / ".complete").write_text("v1\n")
    spec = JOBS["notifications"]
    history.append(stack, history.Deployment(
        1, "apply", spec.job_name(), "old", "v1", None, 1, "savepoint", None, None,
        rollout.spec_record(spec)))


def test_upgrade_stops_with_a_savepoint_deploys_from_it_and_records(
        stack: StackSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(fail_first_deploys=0)
    _install(monkeypatch, fake, tmp_path)
    _previous(stack)
    spec = replace(JOBS["notifications"], flags=("--dedup-window-s", "60"))
    outcome = rollout.apply(stack, StreamingSettings(), spec, say=lambda _: None)
    assert fake.calls == [("stop", "old"), ("deploy", (spec.flags, str(tmp_path / "rel-v2"),
                                                       "file:///sp-1"))]
    assert outcome.record is not None and outcome.record.action == "upgrade"
    assert history.read(stack, spec.job_name())[-1] == outcome.record
    assert (outcome.record.started_from, outcome.record.previous_stopped_with) == (
        "file:///sp-1", "file:///sp-1")


def test_a_new_version_that_does_not_start_is_reverted(
        stack: StackSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(fail_first_deploys=1)
    _install(monkeypatch, fake, tmp_path)
    _previous(stack)
    spec = replace(JOBS["notifications"], flags=("--dedup-window-s", "60"))
    with pytest.raises(rollout.RolloutError, match="previous version v1 runs again as job3"):
        rollout.apply(stack, StreamingSettings(), spec, say=lambda _: None)
    assert fake.calls[-1] == ("deploy", ((), str(rollout.release_path(stack, "v1")),
                                         "file:///sp-1"))
    last = history.read(stack, spec.job_name())[-1]
    assert (last.action, last.version, last.job_id) == ("revert", "v1", "job3")


def test_without_a_kept_previous_version_the_job_is_left_stopped(
        stack: StackSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCluster(fail_first_deploys=1)
    _install(monkeypatch, fake, tmp_path)
    with pytest.raises(rollout.RolloutError, match="the job is stopped, its state at "
                       "file:///sp-1"):
        rollout.apply(stack, StreamingSettings(), JOBS["notifications"], say=lambda _: None)
    assert [c[0] for c in fake.calls] == ["stop", "deploy"]


def test_the_keeper_starts_an_applied_job_with_its_own_spec() -> None:
    job = keeper.KeptJob("notifications", "-t", "id", None, "{}", "/rel/v1",
                         ["--dedup-window-s", "60"], "pipelines.streaming.notifications_job")
    spec = keeper._spec_of(job)
    assert spec.flags == ("--dedup-window-s", "60") and job.job_name == "feedline-notifications-t"
    unknown = keeper._spec_of(replace(job, name="brand_new"))
    assert unknown.entry_point == "pipelines.streaming.notifications_job"
    legacy = keeper.KeptJob("fanout", "", "id", None, "{}")  # recorded before specs
    assert keeper._spec_of(legacy).flags == JOBS["fanout"].flags


def test_last_state_and_stateless_upgrades_cancel(
        stack: StackSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cancelled: list[str] = []
    monkeypatch.setattr(rollout.flink_rest, "cancel", lambda url, job_id: cancelled.append(job_id))
    monkeypatch.setattr(rollout.flink_rest, "wait_for_state", lambda *a, **k: "CANCELED")
    for n in (2, 7):
        (keeper.checkpoint_root(stack) / "old" / f"chk-{n}").mkdir(parents=True)
        (keeper.checkpoint_root(stack) / "old" / f"chk-{n}" / "_metadata").write_bytes(b"")
    (keeper.checkpoint_root(stack) / "old" / "chk-9").mkdir()  # not complete: no _metadata
    newest = (keeper.checkpoint_root(stack) / "old" / "chk-7").resolve().as_uri()
    assert rollout._stop(stack, "old", "feedline-n", "last-state", lambda _: None) == newest
    assert rollout._stop(stack, "old", "feedline-n", "stateless", lambda _: None) is None
    assert cancelled == ["old", "old"]


def test_a_failed_submission_is_told_by_its_last_cause() -> None:
    output = ("flink run failed for x:\norg.apache.flink.client.program.ProgramInvocationException"
              "\nCaused by: java.lang.RuntimeException: wrapper\n\tat a.b(C.java:1)\n"
              "Caused by: java.lang.IllegalStateException: Cannot map checkpoint/savepoint "
              "state for operator 42 to the new program\n\tat d.e(F.java:2)\n")
    assert rollout._cause(output).endswith("state for operator 42 to the new program")
    assert rollout._cause("only\nlast line\n") == "last line"


def test_a_refused_savepoint_names_the_operators_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.savepoint_meta import SavepointOperators, operator_id

    monkeypatch.setattr(rollout, "read_operators", lambda location: SavepointOperators(
        location, ("parse-uploads", "npost-state")))
    wanted = operator_id("npost-state")
    output = (f"Caused by: java.lang.IllegalStateException: Failed to rollback to "
              f"checkpoint/savepoint file:/sp. Cannot map checkpoint/savepoint state for "
              f"operator {wanted} to the new program\n\tat x.y(Z.java:3)\n"
              "Caused by: java.lang.RuntimeException: Python process exits with code: 1\n")
    assert f"for operator {wanted} (uid npost-state) to the new" in rollout._cause(
        output, "file:/sp")


def test_rollback_returns_to_the_last_different_deployment_from_its_own_savepoint(
        stack: StackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.flink_rest import JobInfo
    from jobs.savepoint_meta import SavepointOperators

    spec = JOBS["notifications"]
    first = rollout.spec_record(spec)
    flagged = rollout.spec_record(replace(spec, flags=("--dedup-window-s", "60")))
    for revision, action, job_id, stopped, record in (
            (1, "apply", "a", None, first), (2, "upgrade", "b", "file:///sp-a", flagged),
            (3, "revert", "c", "file:///sp-b", flagged)):
        history.append(stack, history.Deployment(
            revision, action, spec.job_name(), job_id, "v1", None, 1, "savepoint", stopped,
            stopped, record))
    monkeypatch.setattr(rollout.flink_rest, "running",
                        lambda url, name: [JobInfo("c", name, "RUNNING", 0)])
    monkeypatch.setattr(rollout, "read_operators", lambda location: SavepointOperators(
        location, ("npost-state", "gone-state", "gone-map"), ("gone-map",)))
    plan = rollout.plan_rollback(stack, spec.job_name())
    assert (plan.current.revision, plan.target.revision) == (3, 1)
    assert plan.start_from == "file:///sp-a"  # what revision 1 was stopped with
    assert plan.missing_uids == ["gone-state"]  # stateful and not in revision 1's uids
    with pytest.raises(rollout.RolloutError, match="gone-state"):
        rollout.rollback(stack, StreamingSettings(), "notifications", dry_run=True)
