"""Savepoints through the REST client: a decline for tasks not running yet is asked again;
any other failure is raised at once."""

from __future__ import annotations

from typing import Any

import pytest

from jobs import flink_rest

NOT_READY = {"class": "java.util.concurrent.CompletionException",
             "stack-trace": "CheckpointException: Checkpoint was declined (tasks not ready)\n"
                            "... CHECKPOINT_DECLINED_TASK_NOT_READY ..."}
OTHER = {"class": "java.io.IOException", "stack-trace": "IOException: disk full\n at x"}


class FakeRest:
    """Answers /stop with a request id and each status poll with the next outcome."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.stops = 0

    def call(self, _base: str, method: str, path: str, body: Any = None,
             timeout_s: float = 10) -> Any:
        if method == "POST":
            self.stops += 1
            return {"request-id": f"r{self.stops}"}
        outcome = self.outcomes.pop(0)
        operation = {"location": outcome} if isinstance(outcome, str) else \
            {"failure-cause": outcome}
        return {"status": {"id": "COMPLETED"}, "operation": operation}


def test_a_savepoint_declined_by_starting_tasks_is_asked_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rest = FakeRest([NOT_READY, NOT_READY, "file:///sp/savepoint-1"])
    monkeypatch.setattr(flink_rest, "call", rest.call)
    monkeypatch.setattr(flink_rest.time, "sleep", lambda _s: None)
    assert flink_rest.stop_with_savepoint("http://x", "j", "/sp") == "file:///sp/savepoint-1"
    assert rest.stops == 3


def test_another_savepoint_failure_is_raised_with_its_first_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rest = FakeRest([OTHER])
    monkeypatch.setattr(flink_rest, "call", rest.call)
    with pytest.raises(flink_rest.FlinkRestError, match="disk full") as raised:
        flink_rest.savepoint("http://x", "j", "/sp")
    assert not isinstance(raised.value, flink_rest.SavepointDeclined)
    assert "at x" not in str(raised.value) and rest.stops == 1
