"""`feedctl jobs new`: the scaffolded job is valid, lint-clean, and its unit test passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from feedline.settings import REPO_ROOT
from jobs.feedctl.main import main as feedctl
from jobs.releases import code_files
from jobs.scaffold import ScaffoldError, scaffold
from jobs.specs import read_spec


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the packages the job and its tests import, standing in for a checkout."""
    helpers = [p.relative_to(REPO_ROOT) for folder in ("jobs", "tests/support")
               for p in (REPO_ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]
    for path in [*code_files(REPO_ROOT), *helpers, Path("tests/__init__.py")]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / path, tmp_path / path)
    shutil.copy2(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")  # ruff's rules
    return tmp_path


def test_new_job_files_validate_lint_and_pass_their_unit_test(
        checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert feedctl(["jobs", "new", "hashtag_counts", "--reads", "uploads,engagements",
                    "--root", str(checkout)]) == 0
    written = [Path(line.split(" ", 1)[1]) for line in capsys.readouterr().out.splitlines()
               if line.startswith("wrote ")]
    assert [p.relative_to(checkout).as_posix() for p in written] == [
        "pipelines/streaming/hashtag_counts_job.py", "jobs/specs/hashtag_counts.yaml",
        "tests/unit/test_hashtag_counts_job.py", "tests/integration/test_hashtag_counts_job.py"]
    spec = read_spec(checkout / "jobs" / "specs" / "hashtag_counts.yaml", checkout)
    assert spec.reads == ("uploads", "engagements") and spec.upgrade_mode == "savepoint"
    source = written[0].read_text()
    assert all(f'.uid("{uid}")' in source for uid in spec.operator_uids if "parse-" not in uid)
    ruff = Path(sys.executable).parent / "ruff"
    lint = subprocess.run([str(ruff), "check", "--no-cache", *map(str, written[:1] + written[2:])],
                          cwd=checkout, capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/unit/test_hashtag_counts_job.py"],
        cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True, text=True, check=False)
    assert tests.returncode == 0, tests.stdout[-2000:]
    assert "2 passed" in tests.stdout


def test_new_refuses_a_bad_name_unknown_roles_and_an_existing_job(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="job name 'Bad-Name'"):
        scaffold("Bad-Name", ["uploads"], tmp_path)
    with pytest.raises(ScaffoldError, match="--reads likes: each one of"):
        scaffold("x", ["likes"], tmp_path)
    with pytest.raises(ScaffoldError, match="exists already"):
        scaffold("fanout", ["uploads"], REPO_ROOT)
    assert scaffold("fresh", ["follows"], tmp_path, dry_run=True)
    assert not (tmp_path / "jobs").exists()


def test_new_with_a_bad_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert feedctl(["jobs", "new", "Bad-Name", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("feedctl jobs new: job name 'Bad-Name'")
