"""The Grafana dashboards (infra/grafana/dashboards/*.json): current, well formed, and every
PromQL expression in them parses (promtool, from the Debian prometheus package)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from feedline.settings import REPO_ROOT, KafkaSettings
from jobs.lag import job_topics
from jobs.specs import JOBS

GRAFANA = REPO_ROOT / "infra" / "grafana"
PROMTOOL = shutil.which("promtool")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def boards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text())
            for path in sorted((GRAFANA / "dashboards").glob("*.json"))}


def expressions() -> list[tuple[str, str, str]]:
    """(file, panel title, expr) of every query of every dashboard."""
    return [(name, panel["title"], target["expr"])
            for name, board in boards().items() for panel in board["panels"]
            for target in panel.get("targets", [])]


def test_the_files_are_what_the_generator_writes() -> None:
    assert generator().main(["--check"]) == 0, "run python infra/grafana/generate.py"


def test_an_overview_and_one_dashboard_per_job() -> None:
    uids = {board["uid"] for board in boards().values()}
    assert uids == {"feedline-overview", "feedline-job-archiver",
                    *(f"feedline-job-{name}" for name in JOBS)}


def test_the_generator_knows_each_jobs_topics() -> None:
    known = job_topics(KafkaSettings())
    assert {name: topics for name, (_, topics) in generator().JOBS.items()} == known
    assert {flink for flink, _ in generator().JOBS.values()} == {
        spec.job_name() for spec in JOBS.values()}


def test_panels_are_placed_and_use_the_datasource_variable() -> None:
    for name, board in boards().items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
                assert panel["targets"], (name, panel["title"])
        assert "$" not in "".join(expr for file, _, expr in expressions() if file == name)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing (`make deps` installs it)")
def test_every_expression_parses(tmp_path: Path) -> None:
    queries = expressions()
    assert len(queries) > 40
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries)
    ]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same check rejects a broken query.
    rules["groups"][0]["rules"][0]["expr"] = "sum by (route (rate(x[5m]))"
    path.write_text(yaml.safe_dump(rules))
    broken = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True,
                            text=True, check=False)
    assert broken.returncode != 0
