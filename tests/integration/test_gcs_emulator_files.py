"""The GCS emulator as the stack runs it (``jobs.localstack.gcs_emulator``): a metadata
file torn by a kill (CI's fault suite once left it empty, and the emulator then failed at
every start) is moved aside and the emulator serves; the files it writes replace the old
ones whole. Runs its own emulator on a free port in a temporary folder (no stack)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from feedline.settings import REPO_ROOT
from jobs.localstack.gcs_emulator import META, recover_meta, write_atomically
from tests.support.waiting import eventually


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _buckets(port: int) -> list[str] | None:
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/storage/v1/b?project=x", timeout=2) as answer:
            return [b["name"] for b in json.load(answer).get("items", [])]
    except OSError:
        return None


def test_a_torn_metadata_file_is_moved_aside_and_the_emulator_serves(tmp_path: Path) -> None:
    meta = tmp_path / META
    meta.parent.mkdir()
    meta.write_bytes(b"")  # what a kill between truncate and write left
    port = _free_port()
    log = (tmp_path / "console.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jobs.localstack.gcs_emulator", "start", "--host", "127.0.0.1",
         "--port", str(port), "--default-bucket", "media", "--quiet"],
        cwd=tmp_path, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        assert eventually(lambda: _buckets(port), "the emulator serving") == ["media"]
        # Its metadata file was written again whole (through write_atomically), and the
        # torn one kept beside it.
        assert "media" in json.loads(meta.read_bytes())["buckets"]
        assert (meta.parent / ".meta.torn-1").read_bytes() == b""
        assert not list(meta.parent.glob("*.tmp"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "moved to .meta.torn-1" in (tmp_path / "console.log").read_text()


def test_recover_meta_leaves_a_whole_file_alone(tmp_path: Path) -> None:
    assert recover_meta(tmp_path, say=lambda _line: None) is None  # no file yet
    meta = tmp_path / META
    write_atomically(meta, b'{"buckets": {}}')
    assert recover_meta(tmp_path, say=lambda _line: None) is None
    assert meta.read_bytes() == b'{"buckets": {}}'
    meta.write_bytes(b'{"buck')
    assert recover_meta(tmp_path, say=lambda _line: None) == meta.with_name(".meta.torn-1")
    assert not meta.exists()


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "object"
    write_atomically(target, b"old")

    def refuse(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new bytes")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["object"]  # no temporary file left
