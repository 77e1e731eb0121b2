"""The shared JSON-lines log format (feedline/logs.py) and the log lines that carry ids."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from feedline.archive.archiver import EVENT_IDS_PER_LINE, event_facts, log_archived_ids
from feedline.logs import (
    JsonFormatter,
    LogBudget,
    annotate,
    bind,
    configure_logging,
    log_context,
)
from pipelines.streaming.parse import dead_letter_line, parse_or_dead_letter, payload_event_id


def record(msg: str = "hello %s", args: tuple[object, ...] = ("world",),
           **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("feedline.test", logging.WARNING, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_a_line_is_one_json_object_with_the_fixed_fields_first() -> None:
    line = JsonFormatter("archiver").format(record(topic="uploads"))
    assert "\n" not in line
    entry = json.loads(line)
    assert list(entry)[:5] == ["ts", "level", "service", "logger", "msg"]
    assert entry["level"] == "warning" and entry["service"] == "archiver"
    assert entry["logger"] == "feedline.test" and entry["msg"] == "hello world"
    assert entry["topic"] == "uploads"
    assert entry["ts"].endswith("+00:00")  # UTC


def test_context_fields_are_on_every_line_inside_bind_only() -> None:
    fmt = JsonFormatter("api")
    with bind(request_id="r-1", event_id=None):
        inside = json.loads(fmt.format(record()))
    outside = json.loads(fmt.format(record()))
    assert inside["request_id"] == "r-1" and "event_id" not in inside
    assert "request_id" not in outside


def test_annotate_reaches_the_binder_even_from_a_copied_context() -> None:
    """A field added in a thread-pool dependency or a task shows on the request's line."""
    with bind(request_id="r-2"):
        contextvars.copy_context().run(annotate, event_id="e-2")

        async def in_a_task() -> None:
            annotate(media_id="m-2")

        asyncio.run(in_a_task())  # asyncio copies the context into the task
        assert log_context() == {"request_id": "r-2", "event_id": "e-2", "media_id": "m-2"}
    assert annotate(event_id="lost") is False  # no context: nothing to add to
    assert log_context() == {}


def test_nested_bind_restores_the_outer_context() -> None:
    with bind(request_id="outer"):
        with bind(event_id="inner"):
            assert log_context() == {"request_id": "outer", "event_id": "inner"}
        assert log_context() == {"request_id": "outer"}


def test_exceptions_and_unencodable_values_stay_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    failed.__dict__["when"] = object()
    entry = json.loads(JsonFormatter("api").format(failed))
    assert "ValueError: boom" in entry["exception"] and entry["when"].startswith("<object")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # An app built by an earlier test (create_app) may have configured this process.
    root.handlers[:] = [h for h in handlers if not getattr(h, "_feedline_json", False)]
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_logging_adds_one_handler_and_renames_on_a_second_call(
        root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    first = configure_logging("archiver", stream=stream)
    again = configure_logging("media-worker", stream=stream)
    assert first is again
    assert sum(getattr(h, "_feedline_json", False) for h in root_logger.handlers) == 1
    logging.getLogger("feedline.media").info("ready", extra={"media_id": "m1"})
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["service"] == "media-worker" and entry["media_id"] == "m1"
    assert logging.getLogger("kafka").level == logging.WARNING


def test_the_stdout_handler_follows_a_swapped_stdout(
        root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    configure_logging("archiver")
    logging.getLogger("feedline.archiver").info("one")
    first.close()  # what a test runner does to its capture file after a test
    second = io.StringIO()
    monkeypatch.setattr(sys, "stdout", second)
    logging.getLogger("feedline.archiver").info("two")
    assert json.loads(second.getvalue())["msg"] == "two"
    assert logging.getLogger("httpx").level == logging.WARNING  # a line per request


def test_log_budget_limits_lines_per_window_and_reports_what_it_left_out() -> None:
    now = [0.0]
    budget = LogBudget(limit=2, window_s=10, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == [(True, 0), (True, 0), (False, 0), (False, 0)]
    now[0] = 10.0
    assert budget.take() == (True, 2)
    assert budget.take() == (True, 0)


def test_the_archiver_logs_each_parts_event_ids_a_chunk_a_line(
        caplog: pytest.LogCaptureFixture) -> None:
    rows = [(offset, f"e{offset}" if offset % 7 else None)
            for offset in range(EVENT_IDS_PER_LINE + 5)]
    caplog.set_level(logging.INFO, logger="feedline.archiver")
    log_archived_ids("uploads", 2, "events/uploads/dt=x/hr=y/p2-0-204.jsonl.gz", rows)
    lines = [r for r in caplog.records if r.name == "feedline.archiver"]
    assert len(lines) == 2
    ids = [i for line in lines for i in line.__dict__["event_ids"]]
    assert ids == [e for _, e in rows if e]
    assert lines[1].getMessage().startswith(f"archived uploads[2] offsets {EVENT_IDS_PER_LINE}-")


def test_event_facts_reads_the_event_id_and_tolerates_anything() -> None:
    value = b'{"event_id":"abc","event_time":"2026-11-01T10:30:00+00:00"}'
    partition, event_id = event_facts("uploads", value, 0)
    assert event_id == "abc" and partition.hour == 10
    assert event_facts("uploads", b"[1,2]", 0)[1] is None
    assert event_facts("uploads", b'{"event_id": 5}', 0)[1] is None
    assert event_facts("uploads", None, 0)[1] is None


def test_a_dead_letter_line_names_the_event_id_when_the_bytes_have_one() -> None:
    from feedline.rules.keys import Job

    broken = b'{"event_id":"e-dead","event_type":"post_created","schema_version":1}'
    event, letter = parse_or_dead_letter("uploads", Job.FANOUT, "uploads", 1, 42, broken)
    assert event is None and letter is not None
    line = dead_letter_line("uploads", 1, 42, broken, letter)
    assert line.startswith("dead letter uploads[1]@42: ") and line.endswith(" event_id=e-dead")
    assert "event_id" not in dead_letter_line("uploads", 1, 43, b"\xff", letter)
    assert payload_event_id(b'{"event_id":"a\\nb"}') is None  # would break the log line
