"""The alert rules (infra/prometheus/alerts.yml): valid, unit-tested with promtool, documented.

`promtool test rules` runs the cases of alerts_test.yml: each alert fires on a series that
shows the problem, and stays quiet on one that does not. promtool ships with the Debian
`prometheus` package that `make deps` installs; without it those tests are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from feedline.settings import REPO_ROOT

RULES_DIR = REPO_ROOT / "infra" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts_test.yml"
RUNBOOK = REPO_ROOT / "docs" / "RUNBOOK.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool missing (`make deps` installs the Debian prometheus package)")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          check=False)


def alerts(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_the_rule_file_is_valid() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_alert_passes_its_promtool_unit_tests() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize(("alert", "old", "new"), [
    ("DeadLettersArriving", "increase(feedline_dead_letters_total[10m])) > 0",
     "increase(feedline_dead_letters_total[10m])) > 5"),
    ("ConsumerLagGrowing", 'consumer!="archiver"}[10m])) > 0', 'consumer!="archiver"}[10m])) < 0'),
    ("StreamingJobNotRunning", 'job_name="feedline-counters"}) == 1)',
     'job_name="feedline-counters"}) == 0)'),
    # Every pushed group, not only Flink's: the batch's single push would fire it.
    ("FlinkMetricsStale", 'push_time_seconds{job="flink"} > 120', "push_time_seconds > 120"),
])
def test_a_broken_rule_fails_its_tests(tmp_path: Path, alert: str, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text
    (tmp_path / "alerts.yml").write_text(text.replace(old, new, 1))
    shutil.copyfile(RULE_TESTS, tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


def test_every_alert_has_a_firing_test_case() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {check["alertname"] for case in cases for check in case.get("alert_rule_test", [])
              if check.get("exp_alerts")}
    quiet = {check["alertname"] for case in cases for check in case.get("alert_rule_test", [])
             if not check.get("exp_alerts")}
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts no test case makes fire"
    assert names - quiet == set(), "alerts no test case shows quiet"


def test_every_alert_has_a_runbook_section_and_links_it() -> None:
    headings = re.findall(r"^## (\w+)\s*$", RUNBOOK.read_text(), flags=re.M)
    for rule in alerts():
        assert rule["alert"] in headings, f"docs/RUNBOOK.md has no '## {rule['alert']}'"
        assert rule["annotations"]["runbook"] == f"docs/RUNBOOK.md#{rule['alert'].lower()}"
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    assert set(headings) >= {rule["alert"] for rule in alerts()}
