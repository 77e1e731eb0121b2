"""Shipping a checkout's code with a job: ``flink.ship_python_paths`` becomes ``-pyfs``."""

from __future__ import annotations

import pytest

from feedline.settings import StackSettings
from jobs.flink_submit import flink_run_argv
from jobs.specs import JOBS


def test_ship_paths_from_the_environment_reach_flink_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLINE_FLINK__SHIP_PYTHON_PATHS", '["/src/a", "/src/b.zip"]')
    settings = StackSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.flink.ship_python_paths == ["/src/a", "/src/b.zip"]
    argv = flink_run_argv(settings, JOBS["fanout"].script, ["--job-name", "x"])
    assert argv[argv.index("-pyfs") + 1] == "/src/a,/src/b.zip"
    assert argv.index("-pyfs") < argv.index("-py") and argv[-2:] == ["--job-name", "x"]


def test_nothing_is_shipped_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEEDLINE_FLINK__SHIP_PYTHON_PATHS", raising=False)
    settings = StackSettings(_env_file=None)  # type: ignore[call-arg]
    assert "-pyfs" not in flink_run_argv(settings, JOBS["fanout"].script, [])
