"""feedctl's dependency boundary: probes, and the libraries' errors it turns into exit codes."""

from __future__ import annotations

import socket
import urllib.error

import pytest
import redis.exceptions
import requests
from cassandra import OperationTimedOut
from cassandra.cluster import NoHostAvailable
from google.api_core.exceptions import NotFound, RetryError
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError

from feedline.settings import (
    CqlSettings,
    FlinkSettings,
    KafkaSettings,
    RedisSettings,
    StorageSettings,
)
from jobs import flink_rest
from jobs.feedctl import deps, errors


def _refused() -> ConnectionRefusedError:
    return ConnectionRefusedError(111, "Connection refused")


def _wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as error:
            raise outer from error
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(("error", "service"), [
    (KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1"), "Kafka"),
    (KafkaConnectionError("socket disconnected"), "Kafka"),
    (NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:1": _refused()}),
     "the CQL store"),
    (OperationTimedOut("errors={}, last_host=None"), "the CQL store"),
    (redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1."), "Redis"),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), "Redis"),
    (_wrapped(requests.exceptions.ConnectionError("Max retries exceeded"), _refused()),
     "object storage"),
    (_wrapped(RetryError("Timeout of 120.0s exceeded", cause=None), _refused()),
     "object storage"),
    (_wrapped(flink_rest.FlinkUnreachable("GET /jobs/overview: refused"),
              urllib.error.URLError(_refused())), "Flink REST"),
])
def test_a_dependency_that_did_not_answer_is_unreachable(error: BaseException,
                                                         service: str) -> None:
    known = deps.translate(error)
    assert isinstance(known, errors.Unreachable)
    assert known.exit_code == errors.UNREACHABLE == 3
    assert known.dependency.name == service
    assert "\n" not in str(known)


def test_the_cause_is_the_innermost_socket_error() -> None:
    assert deps.cause_of(NoHostAvailable("Unable to connect", {"h": _refused()})) == \
        "connection refused"
    assert deps.cause_of(_wrapped(RetryError("Timeout", cause=None), _refused())) == \
        "connection refused"
    assert deps.cause_of(KafkaTimeoutError("Unable to bootstrap")) == \
        "KafkaTimeoutError: Unable to bootstrap"


@pytest.mark.parametrize("error", [
    UnknownTopicOrPartitionError("no such topic"),
    flink_rest.FlinkRestError("POST /jobs/x/stop: HTTP 404 b'not found'"),
    NotFound("bucket feedline-archive"),
])
def test_a_dependency_that_answered_with_an_error_is_a_failure(error: BaseException) -> None:
    known = deps.translate(error)
    assert isinstance(known, errors.Failed)
    assert known.exit_code == errors.FAILED


def test_other_exceptions_are_not_translated() -> None:
    assert deps.translate(ValueError("a bug")) is None
    assert deps.translate(TimeoutError("drain: not caught up")) is None


def test_endpoints_and_addresses_come_from_the_settings() -> None:
    kafka = deps.kafka(KafkaSettings(bootstrap_servers="k1:9092, [::1]:9093,k3"))
    assert kafka.addresses == (("k1", 9092), ("::1", 9093), ("k3", 9092))
    assert kafka.variable == "FEEDLINE_KAFKA__BOOTSTRAP_SERVERS"
    cql = deps.cql(CqlSettings(contact_points=("a", "b"), port=19042))
    assert cql.addresses == (("a", 19042), ("b", 19042))
    assert deps.redis(RedisSettings(url="redis://cache:6380/2")).addresses == (("cache", 6380),)
    assert deps.redis(RedisSettings(url="unix:///run/redis.sock")).addresses == ()
    assert deps.flink(FlinkSettings(rest_url="http://jm:8081")).addresses == (("jm", 8081),)
    emulator = deps.storage(StorageSettings(emulator_host="http://127.0.0.1:9023"))
    assert emulator.addresses == (("127.0.0.1", 9023),)
    real = deps.storage(StorageSettings(emulator_host=None))
    assert real.addresses == () and "credentials" in real.what_to_do()


def test_require_passes_when_one_address_answers_and_names_the_dependency_otherwise() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            closed = spare.getsockname()[1]
        up = deps.kafka(KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed},127.0.0.1:{port}"))
        deps.require(up)
        down = deps.kafka(KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed}"))
        with pytest.raises(errors.Unreachable) as raised:
            deps.require(up, down)
    assert raised.value.dependency is down
    assert str(raised.value) == (
        f"Kafka is unreachable at 127.0.0.1:{closed} (connection refused); start the local "
        "stack (`feedctl local up`) or set FEEDLINE_KAFKA__BOOTSTRAP_SERVERS")


def test_one_line_flattens_and_shortens() -> None:
    assert errors.one_line("a\n  b\tc") == "a b c"
    assert errors.one_line("x" * 500, 20) == "x" * 17 + "..."
