"""The job spec files: the platform's own load, and every rejection is one precise line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from feedline.settings import REPO_ROOT
from jobs.spec_model import JobSpecFile, SpecError, load_spec, parse_spec
from jobs.specs import ALL_SPECS, BATCH_JOBS, JOBS, SPEC_DIR, SPEC_ERRORS

GOOD = {
    "name": "demo",
    "kind": "streaming",
    "description": "uploads -> a demo",
    "entry_point": "pipelines.streaming.fanout_job",
    "parallelism": 1,
    "upgrade_mode": "savepoint",
    "topics": {"in": ["uploads"], "out": ["uploads.dlq"]},
    "operator_uids": ["parse-uploads", "demo-state"],
    "resources": {"cpu": 1, "memory": "2048m"},
}


def _parse(document: object, name: str = "demo") -> JobSpecFile:
    return parse_spec(yaml.safe_dump(document), Path(f"jobs/specs/{name}.yaml"), REPO_ROOT)


def test_the_platforms_specs_load_with_their_current_api() -> None:
    assert SPEC_ERRORS == []
    assert set(JOBS) == {"fanout", "counters", "notifications"}
    assert set(BATCH_JOBS) == {"rebuild_timelines", "rebuild_counters", "rebuild_notifications"}
    assert set(ALL_SPECS) == {p.stem for p in SPEC_DIR.glob("*.yaml")}
    fanout = JOBS["fanout"]
    assert fanout.job_name("-x") == "feedline-fanout-x" and fanout.group_id() == "feedline-fanout"
    assert fanout.script == REPO_ROOT / "pipelines" / "streaming" / "fanout_job.py"
    assert fanout.reads == ("uploads", "follows") and "fan-out-state" in fanout.operator_uids
    assert all(spec.script.is_file() for spec in ALL_SPECS.values())


def test_a_good_spec_parses() -> None:
    spec = _parse(GOOD)
    assert spec.upgrade_mode == "savepoint" and spec.topics.reads == ["uploads"]


def _without(key: str) -> dict[str, object]:
    return {k: v for k, v in GOOD.items() if k != key}


REJECTIONS = {
    "unknown field": ({**GOOD, "paralelism": 2}, "paralelism: unknown field"),
    "missing field": (_without("entry_point"), "entry_point: required"),
    "parallelism 0": ({**GOOD, "parallelism": 0}, "parallelism: input should be greater than"),
    "parallelism type": ({**GOOD, "parallelism": "two"}, "parallelism: input should be a valid"),
    "upgrade mode": ({**GOOD, "upgrade_mode": "hot"}, "upgrade_mode: input should be"),
    "streaming without upgrade mode": (_without("upgrade_mode"), "upgrade_mode: required"),
    "streaming without uids": ({**GOOD, "operator_uids": []}, "operator_uids: a streaming job"),
    "repeated uid": ({**GOOD, "operator_uids": ["a", "a"]}, "operator_uids: repeated a"),
    "bad uid": ({**GOOD, "operator_uids": ["Has Space"]}, "operator_uids.0: string should"),
    "unknown topic role": ({**GOOD, "topics": {"in": ["likes"]}}, "topics.in.0: input should"),
    "no topics in": ({**GOOD, "topics": {"in": []}}, "topics.in: list should have at least"),
    "bad out topic": ({**GOOD, "topics": {"in": ["uploads"], "out": ["a b"]}},
                      "topics.out.0: string should match"),
    "bad memory": ({**GOOD, "resources": {"cpu": 1, "memory": "2GB"}}, "resources.memory:"),
    "no cpu": ({**GOOD, "resources": {"memory": "2g"}}, "resources.cpu: required"),
    "kind": ({**GOOD, "kind": "cron"}, "kind: input should be 'streaming' or 'batch'"),
    "streaming with runner": ({**GOOD, "runner": "DirectRunner"}, "runner: only a batch job"),
    "batch without runner": ({**_without("upgrade_mode"), "kind": "batch", "operator_uids": []},
                             "runner: required for a batch job"),
    "batch with uids": ({**GOOD, "kind": "batch", "runner": "DirectRunner"},
                        "upgrade_mode/operator_uids: only a streaming job"),
    "entry point form": ({**GOOD, "entry_point": "pipelines/fanout_job"},
                         "entry_point: string should"),
    "entry point missing": ({**GOOD, "entry_point": "pipelines.streaming.nope_job"},
                            "entry_point: no module pipelines.streaming.nope_job"),
    "bad name": ({**GOOD, "name": "Demo"}, "name: string should match"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_each_rejection_is_one_line_naming_the_file_and_field(case: str) -> None:
    document, expected = REJECTIONS[case]
    name = str(document.get("name", "demo")) if isinstance(document, dict) else "demo"
    with pytest.raises(SpecError) as raised:
        _parse(document, name if name.islower() else "demo")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"jobs/specs/{name if name.islower() else 'demo'}.yaml: ")
    assert expected in message


def test_name_must_be_the_file_name() -> None:
    with pytest.raises(SpecError, match=r"other\.yaml: name: 'demo' differs from the file"):
        _parse(GOOD, "other")


def test_not_a_mapping_and_not_yaml() -> None:
    with pytest.raises(SpecError, match="a spec is a YAML mapping"):
        parse_spec("- a\n- b\n", Path("x.yaml"), REPO_ROOT)
    with pytest.raises(SpecError, match=r"x\.yaml: line 2: expected"):
        parse_spec("name: [unclosed\n", Path("x.yaml"), REPO_ROOT)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read it"):
        load_spec(tmp_path / "gone.yaml", REPO_ROOT)


def test_an_invalid_spec_stops_feedctl_jobs_with_its_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.feedctl import job_specs
    from jobs.feedctl.main import main as feedctl

    line = "jobs/specs/fanout.yaml: parallelism: input should be greater than or equal to 1"
    monkeypatch.setattr(job_specs, "SPEC_ERRORS", [line, "another"])
    assert feedctl(["jobs", "plan"]) == 2
    assert capsys.readouterr().err == f"feedctl jobs plan: {line} (and 1 more)\n"
