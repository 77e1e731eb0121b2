"""The rebuild's --runner flink plumbing (no JVM, no Beam venv: those run in the parity test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from feedline.settings import BeamFlinkSettings
from jobs.feedctl.rebuild import on_flink
from pipelines.batch import flink_runner
from pipelines.batch.options import pipeline_options, worker_count


def test_without_runner_drops_both_spellings() -> None:
    argv = ["--since", "2026-01-01T00:00:00Z", "--runner", "flink", "--runner=flink", "--x=1"]
    assert flink_runner.without_runner(argv) == ["--since", "2026-01-01T00:00:00Z", "--x=1"]


def test_on_flink_reads_the_last_runner_flag() -> None:
    assert on_flink(["--runner", "flink"])
    assert on_flink(["--runner=DirectRunner", "--runner=flink"])
    assert not on_flink(["--runner=flink", "--runner", "DirectRunner"])
    assert not on_flink([])


def test_pipeline_args_name_the_job_server_and_parallelism() -> None:
    settings = BeamFlinkSettings(parallelism=3)
    args = flink_runner.pipeline_args(settings, "127.0.0.1:4242")
    assert args == ["--runner=PortableRunner", "--job_endpoint=127.0.0.1:4242",
                    "--environment_type=LOOPBACK", "--parallelism=3"]
    assert worker_count(pipeline_options(args)) == 3
    assert worker_count(pipeline_options([])) == 2  # the DirectRunner's two processes


def test_external_environment_passes_its_config() -> None:
    settings = BeamFlinkSettings(environment_type="EXTERNAL", environment_config="127.0.0.1:5")
    assert "--environment_config=127.0.0.1:5" in flink_runner.pipeline_args(settings, "h:1")


def test_a_missing_install_names_the_make_target(tmp_path: Path) -> None:
    settings = BeamFlinkSettings(python=tmp_path / "nope" / "python",
                                 job_server_classpath=tmp_path / "jars")
    with pytest.raises(flink_runner.BeamRunnerMissing, match="make beam-runner"):
        flink_runner.check_installed(settings)


def test_the_job_server_binds_loopback_and_disables_expansion() -> None:
    server = flink_runner.JobServer(BeamFlinkSettings())
    command = server.command("/tmp/artifacts")
    assert "--job-host=127.0.0.1" in command and "--flink-master=[local]" in command
    assert f"--job-port={server.port}" in command and "--expansion-port=-1" in command
    assert command[command.index("-cp") + 1].endswith("beam-flink-job-server/*")


def test_pipeline_options_keep_a_portable_runner() -> None:
    options = pipeline_options(["--runner=PortableRunner", "--job_endpoint=127.0.0.1:1"])
    assert options.get_all_options()["runner"] == "PortableRunner"
    assert isinstance(options, PipelineOptions)
