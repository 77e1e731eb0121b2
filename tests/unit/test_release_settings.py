"""An older release reads the settings a newer submitter gives it (``feedctl jobs rollback``).

The older code is real: the shipped packages of the commit just before the restart settings
(``flink.restart_*``) were added, taken from this checkout's git history into a folder, as
``jobs.releases`` keeps a release; its own interpreter reads the settings file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feedline.settings import REPO_ROOT, StreamingSettings
from jobs.deploy import job_settings_json
from jobs.releases import PACKAGES

#: The last commit whose settings model lacks ``flink.restart_initial_backoff_ms``.
BEFORE_RESTART_SETTINGS = "e353fb7"

READ = ("import sys\n"
        "from feedline.settings import StreamingSettings\n"
        "import feedline\n"
        "s = StreamingSettings.model_validate_json(open(sys.argv[1]).read())\n"
        "print(feedline.__file__, s.kafka.uploads_topic, s.flink.checkpoint_interval_ms)\n")


@pytest.fixture(scope="module")
def older_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", BEFORE_RESTART_SETTINGS,
                              *PACKAGES], capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"no git history here: {archive.stderr.decode().strip()[:200]}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def _read_in(release: Path, settings_json: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "settings.json"
    path.write_text(settings_json)
    env = {**os.environ, "PYTHONPATH": str(release)}
    return subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True,
                          text=True, env=env, cwd=release, check=False)


def test_an_older_release_reads_the_settings_it_is_given(older_release: Path,
                                                          tmp_path: Path) -> None:
    streaming = StreamingSettings.model_validate({
        "kafka": {"uploads_topic": "uploads_rollback"},
        "flink": {"checkpoint_interval_ms": 1500}})
    read = _read_in(older_release, job_settings_json(streaming, older_release), tmp_path)
    assert read.returncode == 0, read.stderr[-2000:]
    where, topic, interval = read.stdout.split()
    assert where.startswith(str(older_release))  # the older code, not this checkout's
    assert (topic, interval) == ("uploads_rollback", "1500")
    # Everything, as the checkout's own jobs get it: the older model refuses the new names.
    full = _read_in(older_release, job_settings_json(streaming, None), tmp_path)
    assert full.returncode != 0 and "RESTART_INITIAL_BACKOFF_MS" in full.stderr


def test_a_new_setting_given_a_value_is_refused_by_name_not_dropped(older_release: Path,
                                                                    tmp_path: Path) -> None:
    streaming = StreamingSettings.model_validate({"flink": {"restart_max_backoff_ms": 30_000}})
    read = _read_in(older_release, job_settings_json(streaming, older_release), tmp_path)
    assert read.returncode != 0 and "RESTART_MAX_BACKOFF_MS" in read.stderr
    assert "RESTART_INITIAL_BACKOFF_MS" not in read.stderr


def test_the_checkouts_own_jobs_read_the_settings_back_whole() -> None:
    streaming = StreamingSettings.model_validate({"flink": {"restart_max_backoff_ms": 30_000},
                                                  "kafka": {"uploads_topic": "u2"}})
    for release in (None, Path("/any/release")):
        assert StreamingSettings.model_validate_json(
            job_settings_json(streaming, release)) == streaming
