"""`feedctl local logs` follows one write across services, on real processes.

The test runs its own API (uvicorn, this checkout's code) and its own archiver, each as a
process writing its console log under a state folder of the test's, on the stack's
Kafka, CQL store, Redis and object storage but with this test's topics, keyspace, key
prefix and archive prefix. A comment is posted through the API with an X-Request-ID;
then `feedctl local logs --grep REQUEST_ID --json` must show the API's line (request id
and the event id it answered) and the archiver's line naming that event id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedline.settings import REPO_ROOT, ServingSettings, StackSettings
from jobs.localstack.base import free_port
from tests.integration import test_api_stack
from tests.integration.test_api_stack import auth
from tests.support.waiting import eventually

# The shared fixtures (pytest finds fixtures among module attributes).
api_settings = test_api_stack.api_settings
seeder = test_api_stack.seeder


def start(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A process of the test, its output into ``log`` as the stack's services have it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env})


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not end."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The test's stand-in for the stack's state folder (only logs go there)."""
    return tmp_path / "state"


@pytest.fixture
def api_url(api_settings: ServingSettings, state_dir: Path) -> Iterator[str]:
    """This checkout's API as a uvicorn process on a free loopback port."""
    port = free_port()
    blocks = ("kafka", "cql", "redis", "storage", "feed", "api")
    env = {f"FEEDLINE_{block.upper()}": getattr(api_settings, block).model_dump_json()
           for block in blocks}
    env["FEEDLINE_ENVIRONMENT"] = api_settings.environment
    api = start([sys.executable, "-m", "uvicorn", "serving.main:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                 "--no-access-log"], state_dir / "api" / "logs" / "console.log", env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert api.poll() is None, f"the API exited ({api.returncode})"
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        eventually(healthy, "the test's API to answer /healthz")
        yield url
    finally:
        stop(api)


@pytest.fixture
def archiver(api_settings: ServingSettings, stack: StackSettings, state_dir: Path,
             object_prefix: str) -> Iterator[subprocess.Popen[bytes]]:
    """This checkout's archiver on the test's engagements topic and archive prefix."""
    storage = stack.storage
    process = start(
        [sys.executable, "-m", "jobs.feedctl.main", "archive", "run",
         "--topic", api_settings.kafka.engagements_topic, "--group", f"g-{uuid.uuid4().hex}",
         "--root", object_prefix.rstrip("/"), "--max-age", "0.5"],
        state_dir / "archiver" / "logs" / "console.log",
        {"FEEDLINE_KAFKA__BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers,
         "FEEDLINE_STORAGE__EMULATOR_HOST": storage.emulator_host or "",
         "FEEDLINE_STORAGE__PROJECT": storage.project,
         "FEEDLINE_STORAGE__ARCHIVE_BUCKET": storage.archive_bucket})
    try:
        yield process
    finally:
        stop(process)


def local_logs(state_dir: Path, *args: str) -> list[dict[str, Any]]:
    """`feedctl local logs ARGS --json` over the test's state folder, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "jobs.feedctl.main", "local", "logs", *args, "--json"],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
             "FEEDLINE_LOCAL__STATE_DIR": str(state_dir)})
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_one_write_is_followed_from_the_api_to_the_archiver(
        api_settings: ServingSettings, seeder: Any, api_url: str,
        archiver: subprocess.Popen[bytes], state_dir: Path) -> None:
    seeder.post("bob", "p-logs")
    request_id = f"logs-test-{uuid.uuid4().hex[:12]}"
    answer = httpx.post(f"{api_url}/v1/posts/p-logs/comments", json={"text": "nice"},
                        headers={**auth(api_settings, "alice"), "X-Request-ID": request_id},
                        timeout=30)
    assert answer.status_code == 202, answer.text
    assert answer.headers["x-request-id"] == request_id
    event_id = answer.json()["event_id"]

    def followed() -> list[dict[str, Any]] | None:
        assert archiver.poll() is None, f"the archiver exited ({archiver.returncode})"
        entries = local_logs(state_dir, "--grep", request_id)
        services = {entry["service"] for entry in entries}
        return entries if {"api", "archiver"} <= services else None

    entries = eventually(followed, f"the API's and the archiver's lines of {request_id}")
    access = [e for e in entries if e["service"] == "api" and e["logger"] == "serving.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == request_id and access[0]["event_id"] == event_id
    assert access[0]["msg"] == "POST /v1/posts/{post_id}/comments 202"
    archived = [e for e in entries if e["service"] == "archiver"]
    assert archived and all(event_id in e["event_ids"] for e in archived)
    assert [e["ts"] for e in entries] == sorted(e["ts"] for e in entries)
    # The event id alone finds the same two services' lines.
    by_event = local_logs(state_dir, "archiver", "api", "--grep", event_id)
    assert {e["service"] for e in by_event} == {"api", "archiver"}
    assert local_logs(state_dir, "archiver", "--grep", request_id) == []  # no request there
