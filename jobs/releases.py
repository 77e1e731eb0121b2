"""Code versions of the streaming jobs: what a deployment ran, kept so it can run again.

A job's Python workers import ``feedline``, ``schemas`` and ``pipelines``. Their files'
contents hash to the *code version* (12 hex digits), whatever the git state: an edit not
yet committed is a new version too. ``jobs apply`` copies that tree once into
``<state_dir>/jobs/releases/<version>/`` and submits the job from the copy (``flink run
-pyfs`` ships it first on the workers' path), so ``jobs rollback`` can start a previous
version again although the checkout has moved on: the copy plays the role of a container
image tag.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from feedline.settings import REPO_ROOT, StackSettings

PACKAGES = ("feedline", "schemas", "pipelines")
"""What the job workers import (the ``jobs`` package is the submitter's, not theirs)."""

_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def code_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files of the shipped packages, relative to ``root``, in a stable order."""
    found = []
    for package in PACKAGES:
        for folder, dirs, files in os.walk(root / package):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            found += [Path(folder, f).relative_to(root) for f in files
                      if not f.endswith(_SKIP_SUFFIXES)]
    return sorted(found)


def code_version(root: Path = REPO_ROOT) -> str:
    """The hash of the shipped packages' paths and contents (12 hex digits)."""
    digest = hashlib.sha256()
    for path in code_files(root):
        digest.update(str(path).encode() + b"\0" + (root / path).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """The checkout's commit (with ``+dirty`` when the shipped packages have edits), if any."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *PACKAGES],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head.strip() + ("+dirty" if dirty.strip() else "")


def releases_dir(stack: StackSettings) -> Path:
    """Where the released code versions are kept."""
    return stack.local.state_dir / "jobs" / "releases"


def release_path(stack: StackSettings, version: str) -> Path:
    """The folder of one code version (it may not exist)."""
    return releases_dir(stack) / version


def make_release(stack: StackSettings, root: Path = REPO_ROOT) -> tuple[str, Path]:
    """Copy the shipped packages under their version (once); returns (version, folder)."""
    version = code_version(root)
    target = release_path(stack, version)
    if (target / ".complete").is_file():
        return version, target
    partial = target.with_name(f".{version}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for path in code_files(root):
        (partial / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, partial / path)
    (partial / ".complete").write_text(version + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)  # a reader sees the whole copy or none
    return version, target
