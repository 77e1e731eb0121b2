"""feedctl on the real stack: the --json documents, and exit 3 when one store is down."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from feedline.settings import (
    StackSettings,
    get_batch_settings,
    get_stack_settings,
    get_streaming_settings,
)
from jobs.feedctl.main import main as feedctl
from jobs.localstack.kafka import ensure_topics

SERVICE_KEYS = {"name", "state", "healthy", "pid", "endpoint", "essential", "restarts",
                "last_restart_at", "last_restart_reason"}


def _clear_settings() -> None:
    for getter in (get_stack_settings, get_batch_settings, get_streaming_settings):
        getter.cache_clear()


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Set a FEEDLINE_* variable for feedctl (its settings are read again)."""

    def set_one(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        _clear_settings()

    yield set_one
    monkeypatch.undo()
    _clear_settings()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = feedctl(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_local_status_json(stack: StackSettings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["local", "status", "--json"], capsys)
    doc = json.loads(out)
    assert set(doc) == {"healthy", "services", "supervisor"}
    assert set(doc["supervisor"]) == {"running", "pid", "log"}
    services = {s["name"]: s for s in doc["services"]}
    assert {"cassandra", "kafka", "redis", "gcs", "flink-jobmanager", "api"} <= set(services)
    for service in services.values():
        assert set(service) == SERVICE_KEYS
        assert service["state"] in ("healthy", "UNHEALTHY", "stopped")
        assert service["healthy"] == (service["state"] == "healthy")
        assert isinstance(service["restarts"], int) and service["restarts"] >= 0
    assert all(s["healthy"] for s in services.values() if s["essential"])  # the fixture's stack
    assert services["kafka"]["endpoint"] == stack.kafka.bootstrap_servers
    assert doc["healthy"] == all(s["healthy"] for s in services.values())
    assert code == (0 if doc["healthy"] else 1)


def test_jobs_list_json(stack: StackSettings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["jobs", "list", "--all", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["rest_url"] == stack.flink.rest_url
    starts = [job["start_time_ms"] for job in doc["jobs"]]
    assert starts == sorted(starts, reverse=True)  # newest first, as the table
    for job in doc["jobs"]:
        assert set(job) == {"job_id", "name", "state", "start_time_ms"}
        assert len(job["job_id"]) == 32 and job["state"].isupper()


def _produce(servers: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=servers)
    try:
        for value in values:
            producer.send(topic, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def test_archive_status_json_counts_what_the_group_has_not_archived(
        stack: StackSettings, topic_factory: Callable[[int], str],
        capsys: pytest.CaptureFixture[str]) -> None:
    topic = topic_factory(2)
    _produce(stack.kafka.bootstrap_servers, topic, [b"{}"] * 3, partition=0)
    _produce(stack.kafka.bootstrap_servers, topic, [b"{}"] * 2, partition=1)
    group = f"{topic}-archiver"
    code, out, _ = _run(["archive", "status", "--topic", topic, "--group", group, "--json"],
                        capsys)
    assert code == 1  # lag left
    doc = json.loads(out)
    assert doc == {"group": group, "total_lag": 5, "partitions": [
        {"topic": topic, "partition": 0, "committed": None, "end": 3, "lag": 3},
        {"topic": topic, "partition": 1, "committed": None, "end": 2, "lag": 2}]}


@pytest.fixture
def event_topic_with_dlq(stack: StackSettings, topic_factory: Callable[[int], str],
                         setenv: Callable[[str, str], None]) -> Iterator[str]:
    """A uuid topic configured as the uploads topic, with its dead-letter topic."""
    topic = topic_factory(1)
    dlq = f"{topic}{stack.kafka.dlq_suffix}"
    ensure_topics(stack.kafka.bootstrap_servers, {dlq: 1})
    setenv("FEEDLINE_KAFKA__UPLOADS_TOPIC", topic)
    yield topic
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
    try:
        admin.delete_topics([dlq])
    finally:
        admin.close()


def test_dlq_inspect_json(stack: StackSettings, event_topic_with_dlq: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    topic = event_topic_with_dlq
    letter = {"reason": "unparseable", "detail": "Expecting value", "topic": topic,
              "partition": 0, "offset": 7, "payload_b64": base64.b64encode(b"{oops").decode()}
    _produce(stack.kafka.bootstrap_servers, f"{topic}.dlq", [json.dumps(letter).encode()])
    code, out, _ = _run(["dlq", "inspect", topic, "--json", "--group", f"{topic}-replay"],
                        capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["topic"] == topic and doc["dlq_topic"] == f"{topic}.dlq"
    assert doc["total"] == {"unparseable": 1} and doc["pending"] == {"unparseable": 1}
    [sample] = doc["samples"]
    assert sample["partition"] == 0 and sample["offset"] == 0
    assert sample["source"] == f"{topic}[0]@7" and sample["event_id"] is None
    assert base64.b64decode(sample["payload_b64"]) == b"{oops"


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("FEEDLINE_REDIS__URL", "redis://127.0.0.1:{port}/0", "Redis"),
    ("FEEDLINE_CQL__PORT", "{port}", "the CQL store"),
])
def test_verify_with_one_store_down_could_not_check(
        stack: StackSettings, setenv: Callable[[str, str], None], closed_port: int,
        variable: str, value: str, named: str, capsys: pytest.CaptureFixture[str]) -> None:
    setenv(variable, value.format(port=closed_port))
    code, out, err = _run(["verify", "--sample", "3", "--json"], capsys)
    assert code == 3  # not 1: no drift was found, nothing could be checked
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"feedctl verify: {named} is unreachable at ")
