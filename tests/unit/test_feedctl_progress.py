"""Progress bars (on a terminal only), the workload count behind load's ETA, completion, JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from feedline import cli
from feedline.settings import REPO_ROOT, BatchSettings, StorageSettings
from feedline.workload import Workload, WorkloadSpec
from jobs.feedctl.output import print_json
from jobs.load import count_events
from pipelines.batch.report import PipelineProgress, advance
from pipelines.batch.transforms import CountSteps


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@contextmanager
def on_terminal() -> Iterator[Terminal]:
    """stderr is a terminal inside the block (set in the test body: pytest's capture sets
    sys.stderr again after the fixtures)."""
    screen, saved = Terminal(), sys.stderr
    sys.stderr = screen
    try:
        yield screen
    finally:
        sys.stderr = saved


@pytest.mark.parametrize("spec", [WorkloadSpec(users=120, posts=60, seed=1),
                                  WorkloadSpec(users=400, posts=300, mean_followers=30, seed=9)])
def test_the_event_count_is_exact(spec: WorkloadSpec) -> None:
    assert count_events(spec) == sum(1 for _ in Workload(spec).events())


def test_bars_are_silent_when_stderr_is_not_a_terminal(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert not cli.interactive()
    with cli.progress_bar("work", 3, "step") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_a_bar_shows_its_count_total_and_eta_on_a_terminal() -> None:
    with on_terminal() as terminal, cli.progress_bar("work", 4, "step") as bar:
        assert cli.interactive()
        bar.update(3)
    drawn = terminal.getvalue()
    assert "work" in drawn and "3/4" in drawn and "<" in drawn  # elapsed<remaining


def test_lines_clear_a_bar_only_on_a_terminal() -> None:
    plain, terminal = io.StringIO(), Terminal()
    cli.write_line("hello", plain)
    assert plain.getvalue() == "hello\n"
    cli.write_line("hello", terminal)
    assert terminal.getvalue() == "\r\x1b[Khello\n"


def test_pipeline_progress_is_off_without_a_terminal() -> None:
    with PipelineProgress("job", 5, PipelineOptions([])) as path:
        assert path is None
        advance(path)  # a no-op


def test_pipeline_progress_is_off_for_a_remote_runner() -> None:
    with on_terminal(), \
            PipelineProgress("job", 5, PipelineOptions(["--runner=DataflowRunner"])) as path:
        assert path is None


def test_pipeline_progress_follows_the_steps_the_workers_append() -> None:
    options = PipelineOptions(["--runner=DirectRunner"])
    with on_terminal() as terminal, PipelineProgress("rebuild timelines", 5, options) as path:
        assert path is not None and os.path.getsize(path) == 0
        for _ in range(3):
            advance(path)
        assert os.path.getsize(path) == 3
    assert not os.path.exists(path)  # the temporary folder is gone
    assert "rebuild timelines" in terminal.getvalue()
    assert "5/5" in terminal.getvalue()  # a finished job fills the bar


def test_a_job_step_counts_one_progress_step_per_element(tmp_path: Path) -> None:
    steps = tmp_path / "steps"
    steps.touch()
    with beam.Pipeline("DirectRunner") as pipeline:
        _ = pipeline | beam.Create(range(7)) | CountSteps(str(steps))
    assert steps.stat().st_size == 7
    with beam.Pipeline("DirectRunner") as pipeline:  # no bar: nothing to append to
        _ = pipeline | beam.Create(range(3)) | CountSteps(None)


def test_the_gate_bar_moves_a_topic_at_a_time() -> None:
    log = logging.getLogger(cli.GATE_LOGGER)
    with on_terminal(), cli.progress_bar("quality gate", 10, "partition") as bar:
        handler = cli._GateTopics(bar)
        for args in (("uploads", 4), ("follows", 1)):
            handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 1,
                                          "quality gate: %s, %d partition(s)", args, None))
        handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 1,
                                      "quarantined %d record(s) of %s", (3, "x"), None))
        assert bar.n == 4  # uploads done once follows started; the quarantine line ignored


def test_the_gate_bar_lists_nothing_without_a_terminal() -> None:
    nowhere = BatchSettings(storage=StorageSettings(emulator_host="http://127.0.0.1:1"))
    with cli.gate_progress(nowhere, ["uploads"], None, None):
        pass  # no listing of an unreachable store


def test_json_is_one_sorted_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"b": 1, "a": [Path("/x")]})
    out = capsys.readouterr().out
    assert out == '{"a": ["/x"], "b": 1}\n'
    assert json.loads(out) == {"a": ["/x"], "b": 1}


def _complete(line: str, tmp_path: Path) -> list[str]:
    answer = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_IFS": "\n", "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
    result = subprocess.run([sys.executable, "-m", "jobs.feedctl.main"], env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return answer.read_text().split("\n")


def test_shell_completion_offers_nouns_verbs_and_flags(tmp_path: Path) -> None:
    assert {"local", "jobs", "verify", "rebuild"} <= set(_complete("feedctl ", tmp_path))
    assert _complete("feedctl jobs l", tmp_path) == ["list "]
    assert "--json" in {c.strip() for c in _complete("feedctl archive status --", tmp_path)}
