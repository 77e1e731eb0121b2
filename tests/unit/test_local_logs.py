"""`feedctl local logs`: every format normalised, merged in time order, filtered, followed."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.feedctl.main import main
from jobs.localstack.log_lines import EntryAssembler, LogEntry, parse_head
from jobs.localstack.logs import (
    Follower,
    IdFilter,
    LogReader,
    history,
    log_files,
    readers_for,
    rotated_files,
    tail_offset,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def local(text: str) -> datetime:
    """A zone-less time of this machine, as the Java formats print it."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").astimezone()


@pytest.mark.parametrize(("line", "ts", "level", "logger", "msg"), [
    ('{"ts":"2026-12-01T01:54:23.963+00:00","level":"info","service":"api",'
     '"logger":"serving.access","msg":"POST /v1/posts 202","request_id":"r1"}',
     datetime(2026, 12, 1, 1, 54, 23, 963000, UTC), "info", "serving.access",
     "POST /v1/posts 202"),
    ('{"ts":"2026-12-01T01:54:23.963+00:00","level":"warning","logger":"x","message":"old"}',
     datetime(2026, 12, 1, 1, 54, 23, 963000, UTC), "warning", "x", "old"),
    ("2026-12-01 01:53:44,703 INFO  org.apache.flink.runtime.taskexecutor.TaskExecutor  "
     "[] - Start job leader service.", local("2026-12-01 01:53:44.703"), "info",
     "org.apache.flink.runtime.taskexecutor.TaskExecutor", "Start job leader service."),
    ("2026-11-30 20:24:05,405 WARN  /work/main/pipelines/streaming/job_graph.py:160 [] - "
     "dead letter uploads[0]@7: missing_field event_id=e9 ", local("2026-11-30 20:24:05.405"),
     "warning", "pipelines/streaming/job_graph.py:160",
     "dead letter uploads[0]@7: missing_field event_id=e9"),
    ("[2026-12-01 01:53:54,544] INFO [GroupCoordinator id=1] Preparing to rebalance (in "
     "state X) (org.apache.kafka.coordinator.group.GroupMetadataManager)",
     local("2026-12-01 01:53:54.544"), "info",
     "org.apache.kafka.coordinator.group.GroupMetadataManager",
     "[GroupCoordinator id=1] Preparing to rebalance (in state X)"),
    ("WARN  [Native-Transport-Requests-1] 2026-12-01 01:53:53,678 FBUtilities.java:427 - "
     "Trigger directory doesn't exist", local("2026-12-01 01:53:53.678"), "warning",
     "FBUtilities.java:427", "Trigger directory doesn't exist"),
    ("2026-12-01 01:53:53,862 INFO feedline.archiver: revoked []",
     local("2026-12-01 01:53:53.862"), "info", "feedline.archiver", "revoked []"),
    ("15231:M 01 Dec 2026 01:53:29.379 * Ready to accept connections",
     local("2026-12-01 01:53:29.379"), "info", "redis", "Ready to accept connections"),
    ('ts=2026-12-01T01:53:52.348Z caller=main.go:973 level=info msg="Server is ready."',
     datetime(2026, 12, 1, 1, 53, 52, 348000, UTC), "info", "main.go:973", "Server is ready."),
    ('time="2026-12-01T01:53:51Z" level=warning msg="scrape \\"x\\" failed"',
     datetime(2026, 12, 1, 1, 53, 51, tzinfo=UTC), "warning", "", 'scrape "x" failed'),
    ("2026-12-01T01:53:55+00:00 supervisor watching cassandra",
     datetime(2026, 12, 1, 1, 53, 55, tzinfo=UTC), "info", "", "supervisor watching cassandra"),
    ("2026-12-01T01:52:32.417629468Z kafka-1-raft-io-thread WARN Unable to register",
     datetime(2026, 12, 1, 1, 52, 32, 417629, UTC), "warning", "",
     "kafka-1-raft-io-thread WARN Unable to register"),
    ("--- start 2026-12-01T01:53:51+0000: /usr/bin/redis-server",
     datetime(2026, 12, 1, 1, 53, 51, tzinfo=UTC), "info", "localstack",
     "process started: /usr/bin/redis-server"),
])
def test_each_format_is_normalised(line: str, ts: datetime, level: str, logger: str,
                                   msg: str) -> None:
    head = parse_head(line)
    assert head is not None
    assert (head.ts, head.level, head.logger, head.msg) == (ts, level, logger, msg)


@pytest.mark.parametrize("line", [
    "\tat org.apache.flink.Foo.bar(Foo.java:1)", "Traceback (most recent call last):",
    "    ssl.provider = null", "WARNING: System::setSecurityManager will be removed"])
def test_continuation_lines_start_no_entry(line: str) -> None:
    assert parse_head(line) is None


def test_continuations_join_their_entry_and_ids_in_text_become_fields() -> None:
    asm = EntryAssembler("flink-taskmanager", EPOCH)
    lines = ["2026-12-01 01:00:00,000 WARN  a.b [] - dead letter t[0]@1: bad event_id=e-7",
             "java.lang.RuntimeException: x", "\tat Foo.bar(Foo.java:1)",
             "2026-12-01 01:00:01,000 INFO  a.b [] - next"]
    done = [e for e in map(asm.feed, lines) if e is not None]
    assert len(done) == 1
    assert done[0].msg.endswith("\n\tat Foo.bar(Foo.java:1)")
    assert done[0].fields == {"event_id": "e-7"}
    last = asm.finish()
    assert last is not None and last.msg == "next" and asm.finish() is None


def test_a_line_before_any_entry_takes_the_fallback_time() -> None:
    asm = EntryAssembler("gcs", EPOCH)
    assert asm.feed("some banner") is None
    first = asm.finish()
    assert first is not None and first.ts == EPOCH and first.logger == "gcs"


def write(path: Path, *lines: str, mode: str = "a") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode) as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def jline(second: int, msg: str, **fields: str) -> str:
    ts = (EPOCH + timedelta(seconds=second)).isoformat()
    return json.dumps({"ts": ts, "level": "info", "logger": "t", "msg": msg, **fields})


def test_tail_offset_finds_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    write(path, *[f"line {i}" for i in range(5000)])
    with path.open("rb") as handle:
        handle.seek(tail_offset(handle, 3))
        assert handle.read().decode().splitlines() == ["line 4997", "line 4998", "line 4999"]
        assert tail_offset(handle, 10_000) == 0
        assert tail_offset(handle, 0) == path.stat().st_size


def test_history_merges_services_in_time_order_and_filters(tmp_path: Path) -> None:
    write(tmp_path / "api" / "logs" / "console.log",
          jline(1, "POST /v1/posts 202", request_id="r1", event_id="e1"), jline(5, "GET"))
    write(tmp_path / "archiver" / "logs" / "console.log",
          jline(3, "archived", event_ids=["e0", "e1"]), jline(4, "other"))
    write(tmp_path / "kafka" / "logs" / "server.log",
          f"[{(EPOCH + timedelta(seconds=2)).astimezone():%Y-%m-%d %H:%M:%S},000] INFO hi (k)")
    services = ["api", "archiver", "kafka"]
    readers = readers_for(tmp_path, services)
    merged = list(history(readers, tmp_path, services, None, lambda _e: True))
    assert [(e.service, e.msg) for e in merged] == [
        ("api", "POST /v1/posts 202"), ("kafka", "hi"), ("archiver", "archived"),
        ("archiver", "other"), ("api", "GET")]
    following = IdFilter(["r1"])  # a request id brings in its event id
    found = list(history(readers_for(tmp_path, services), tmp_path, services, None, following))
    assert [e.msg for e in found] == ["POST /v1/posts 202", "archived"]
    since = EPOCH + timedelta(seconds=4)
    late = list(history(readers_for(tmp_path, services), tmp_path, services, since,
                        lambda _e: True))
    assert [e.msg for e in late] == ["other", "GET"]


def test_since_reads_the_rotated_files_written_after_it(tmp_path: Path) -> None:
    logs = tmp_path / "cassandra" / "logs"
    java = "INFO  [main] {} X.java:1 - {}"
    for name, second in (("system.log.2", 1), ("system.log.1", 2), ("system.log", 3)):
        stamp = (EPOCH + timedelta(seconds=second)).astimezone()
        write(logs / name, java.format(f"{stamp:%Y-%m-%d %H:%M:%S},000", name))
        os.utime(logs / name, (stamp.timestamp(), stamp.timestamp()))
    assert log_files(tmp_path, "cassandra") == [logs / "system.log"]
    since = EPOCH + timedelta(seconds=1, milliseconds=500)
    assert rotated_files(logs / "system.log", since) == [logs / "system.log.1"]
    merged = history(readers_for(tmp_path, ["cassandra"]), tmp_path, ["cassandra"], since,
                     lambda _e: True)
    assert [e.msg for e in merged] == ["system.log.1", "system.log"]


def test_the_reader_takes_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    path.write_text(jline(1, "one") + "\n" + jline(2, "two")[:20])
    reader = LogReader("api", path)
    assert list(reader.read()) == []  # "one" stays open: a continuation may follow
    with path.open("a") as handle:
        handle.write(jline(2, "two")[20:] + "\n")
    assert [e.msg for e in reader.read()] == ["one"]
    assert [e.msg for e in reader.flush()] == ["two"]


def test_the_follower_survives_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "api" / "logs" / "console.log"
    write(path, jline(1, "old"))
    readers = readers_for(tmp_path, ["api", "archiver"], tail=0)  # start at the end
    follower = Follower(readers, tmp_path, ["api", "archiver"], lambda _e: True)
    assert follower.poll() == []
    write(path, jline(2, "a"), jline(3, "b"))
    assert [e.msg for e in follower.poll()] == ["a"]  # "b" may still get a continuation
    assert [e.msg for e in follower.poll()] == ["b"]  # a quiet poll hands it out
    write(path, jline(4, "last before rotation"))
    path.rename(path.with_name("console.log.1"))  # rotation: a new file under the name
    write(path, jline(5, "first after rotation"))
    assert [e.msg for e in follower.poll()] == ["last before rotation"]  # old file read out
    assert [e.msg for e in follower.poll()] == ["first after rotation"]
    write(path, jline(7, "y"), mode="w")  # truncated and rewritten: shorter than it was
    assert [e.msg for e in follower.poll() + follower.poll()] == ["y"]
    write(tmp_path / "archiver" / "logs" / "console.log", jline(8, "new service file"))
    assert [e.msg for e in follower.poll() + follower.poll()] == ["new service file"]


def test_follow_polls_until_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "api" / "logs" / "console.log"
    write(path, jline(1, "one"))
    follower = Follower(readers_for(tmp_path, ["api"]), tmp_path, ["api"], lambda _e: True)
    seen: list[LogEntry] = []
    naps = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        follower.run(seen.append, interval_s=0.25, sleep=sleep)
    assert [e.msg for e in seen] == ["one"] and naps == [0.25, 0.25]


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEEDLINE_LOCAL__STATE_DIR", str(tmp_path))
    from feedline.settings import get_stack_settings

    get_stack_settings.cache_clear()
    yield tmp_path
    get_stack_settings.cache_clear()


def test_the_command_prints_json_lines_for_an_id(state_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    write(state_dir / "api" / "logs" / "console.log",
          jline(1, "POST /v1/posts 202", request_id="r9", event_id="e9"), jline(2, "noise"))
    write(state_dir / "flink-taskmanager" / "logs" / "flink--taskexecutor-0-vm.log",
          f"{(EPOCH + timedelta(seconds=3)).astimezone():%Y-%m-%d %H:%M:%S},000 WARN  "
          "/x/job_graph.py:1 [] - dead letter uploads[0]@1: bad event_id=e9")
    assert main(["local", "logs", "--grep", "r9", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["service"], e.get("request_id"), e["event_id"]) for e in lines] == [
        ("api", "r9", "e9"), ("flink-taskmanager", None, "e9")]
    assert main(["local", "logs", "api", "--text"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].endswith("[request_id=r9 event_id=e9]") and " api " in text[0]


def test_since_takes_a_duration_ago(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fresh = datetime.now(UTC).isoformat()
    write(state_dir / "exporter" / "logs" / "console.log", jline(1, "long ago"),
          json.dumps({"ts": fresh, "level": "info", "logger": "t", "msg": "just now"}))
    assert main(["local", "logs", "exporter", "--since", "1h", "--json"]) == 0
    assert [json.loads(line)["msg"] for line in capsys.readouterr().out.splitlines()] == [
        "just now"]


def test_the_command_refuses_an_unknown_service_with_exit_2(
        state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "logs", "apii"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown service 'apii'" in err[0] and "api" in err[0]
    with pytest.raises(SystemExit) as bad:
        main(["local", "logs", "--since", "yesterday"])
    assert bad.value.code == 2
