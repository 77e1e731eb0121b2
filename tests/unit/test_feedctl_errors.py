"""feedctl's error path: every command with its dependency down answers one line and exit 3.

No service is needed: each dependency is pointed at a local port nothing listens on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from feedline.settings import get_batch_settings, get_stack_settings, get_streaming_settings
from jobs.feedctl import errors
from jobs.feedctl.main import main


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clear_settings() -> None:
    for getter in (get_stack_settings, get_batch_settings, get_streaming_settings):
        getter.cache_clear()


@pytest.fixture
def everything_down(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Every endpoint of the settings at the closed port."""
    for name, value in {
        "FEEDLINE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port}",
        "FEEDLINE_CQL__CONTACT_POINTS": '["127.0.0.1"]',
        "FEEDLINE_CQL__PORT": str(closed_port),
        "FEEDLINE_REDIS__URL": f"redis://127.0.0.1:{closed_port}/0",
        "FEEDLINE_STORAGE__EMULATOR_HOST": f"http://127.0.0.1:{closed_port}",
        "FEEDLINE_FLINK__REST_URL": f"http://127.0.0.1:{closed_port}",
        "FEEDLINE_API__PORT": str(closed_port),
    }.items():
        monkeypatch.setenv(name, value)
    _clear_settings()
    yield closed_port
    _clear_settings()


NOUNS_WITH_VERBS = ("jobs", "db", "archive", "dlq", "quality", "local", "media")

#: Each command and the dependency it needs first.
COMMANDS = [
    (["jobs", "list"], "Flink REST"),
    (["jobs", "list", "--json"], "Flink REST"),
    (["jobs", "cancel", "fanout"], "Flink REST"),
    (["jobs", "cancel", "fanout", "--savepoint"], "Flink REST"),
    (["jobs", "savepoint", "counters"], "Flink REST"),
    (["jobs", "deploy", "fanout", "--if-not-running"], "Flink REST"),
    (["jobs", "wait", "--timeout", "5"], "Kafka"),
    (["db", "status"], "the CQL store"),
    (["db", "migrate", "--dry-run"], "the CQL store"),
    (["feed", "u00001"], "Redis"),
    (["feed", "--sample"], "Redis"),
    (["notifications", "u00001"], "Redis"),
    (["notifications", "--sample", "--json"], "Redis"),
    (["load", "--users", "20", "--posts", "5"], "Kafka"),
    (["archive", "status"], "Kafka"),
    (["archive", "status", "--json"], "Kafka"),
    (["archive", "drain", "--timeout", "5"], "Kafka"),
    (["dlq", "inspect", "uploads"], "Kafka"),
    (["dlq", "inspect", "uploads", "--json"], "Kafka"),
    (["dlq", "replay", "uploads", "--dry-run"], "Kafka"),
    (["quality", "check"], "object storage"),
    (["verify", "--users", "u00001"], "object storage"),
    (["verify", "--sample", "3", "--json"], "object storage"),
    (["backfill", "--user", "u00001"], "object storage"),
    (["backfill", "--all", "--dry-run"], "object storage"),
    (["rebuild", "all"], "object storage"),
    (["rebuild", "timelines", "--users", "u00001"], "object storage"),
    (["rebuild", "counters", "--dry-run"], "object storage"),
    (["rebuild", "notifications", "--users", "u00001"], "object storage"),
    (["media", "run"], "Kafka"),
    (["media", "reprocess", "--all", "--dry-run"], "Kafka"),
]


@pytest.mark.parametrize(("argv", "service"), COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_a_command_with_its_dependency_down_says_one_line_and_exits_3(
        argv: list[str], service: str, everything_down: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == errors.UNREACHABLE, captured.err
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    program = " ".join(["feedctl", *argv[:2 if argv[0] in NOUNS_WITH_VERBS else 1]])
    assert lines[0].startswith(f"{program}: {service} is unreachable at ")
    assert str(everything_down) in lines[0]
    assert "feedctl local up" in lines[0]  # what to do
    assert "{" not in captured.out  # no JSON document when it could not check


def test_the_feed_api_down_is_unreachable(everything_down: int) -> None:
    from jobs.feedctl import feed

    with pytest.raises(errors.Unreachable) as raised:
        feed._api_hint("u00001", 5)
    assert raised.value.dependency.name == "the feed API"
    assert str(everything_down) in str(raised.value)


def test_no_dependency_is_probed_for_a_dry_run_deploy(
        everything_down: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "deploy", "all", "--dry-run"]) == errors.OK
    assert "would submit" in capsys.readouterr().out


def test_an_unknown_setting_is_a_usage_error_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FEEDLINE_KAFKAA", "x")
    _clear_settings()
    try:
        assert main(["jobs", "list"]) == errors.USAGE
    finally:
        _clear_settings()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("feedctl: ")
    assert "FEEDLINE_KAFKAA" in err


def test_an_invalid_setting_value_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FEEDLINE_CQL__PORT", "not-a-port")
    _clear_settings()
    try:
        assert main(["db", "status"]) == errors.USAGE
    finally:
        _clear_settings()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FEEDLINE_CQL__PORT" in err


def test_a_bug_is_an_internal_error_in_one_line_and_debug_shows_the_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.feedctl import local

    def broken(_args: object) -> int:
        raise ZeroDivisionError("oops\nsecond line")

    monkeypatch.setattr(local, "_status", broken)
    assert main(["local", "status"]) == errors.INTERNAL
    err = capsys.readouterr().err
    assert err.splitlines() == ["feedctl local status: internal error: ZeroDivisionError: oops "
                                "second line (rerun with `feedctl --debug ...` for the "
                                "traceback)"]
    assert main(["--debug", "local", "status"]) == errors.INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1] == ("feedctl local status: internal error: ZeroDivisionError: "
                                    "oops second line")


def test_ctrl_c_is_exit_130(monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.feedctl import local

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "_status", interrupted)
    assert main(["local", "status"]) == errors.INTERRUPTED
    assert capsys.readouterr().err == "feedctl local status: interrupted\n"


def test_a_usage_error_is_exit_2() -> None:
    with pytest.raises(SystemExit) as usage:
        main(["jobs", "cancel", "nope"])
    assert usage.value.code == errors.USAGE


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for code in (errors.OK, errors.FAILED, errors.USAGE, errors.UNREACHABLE, errors.INTERNAL,
                 errors.INTERRUPTED):
        assert f"\n  {code} " in out
    assert "--json" in out and "--debug" in out
