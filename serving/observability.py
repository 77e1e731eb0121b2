"""Metrics (Prometheus) and JSON logs carrying the request id.

Metrics are process-global, as prometheus-client intends. With several uvicorn workers
set ``PROMETHEUS_MULTIPROC_DIR`` (the local stack does) and ``/metrics`` aggregates every
worker's samples.
"""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

_REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

REQUEST_SECONDS = Histogram(
    "feedline_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
             2.5, 5.0, 10.0))
REQUESTS = Counter("feedline_http_requests_total", "HTTP requests answered.",
                   ["method", "route", "status"])
ERRORS = Counter("feedline_http_errors_total", "HTTP requests answered with 4xx or 5xx.",
                 ["method", "route", "status"])
DEGRADED = Counter("feedline_degraded_reads_total",
                   "Reads served without a store that should have been used.", ["store"])
UNAVAILABLE = Counter("feedline_dependency_unavailable_total",
                      "Requests that failed because a dependency was unavailable.",
                      ["dependency"])
RATE_LIMITED = Counter("feedline_rate_limited_total", "Requests refused with 429.")


def current_request_id() -> str | None:
    """The id of the request being handled (None outside a request)."""
    return _REQUEST_ID.get()


def set_request_id(request_id: str | None) -> Any:
    """Make ``request_id`` current; returns a token for ``reset_request_id``."""
    return _REQUEST_ID.set(request_id)


def reset_request_id(token: Any) -> None:
    """Restore the request id that was current before ``set_request_id``."""
    _REQUEST_ID.reset(token)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Record one answered request."""
    REQUEST_SECONDS.labels(method, route).observe(seconds)
    code = str(status)
    REQUESTS.labels(method, route, code).inc()
    if status >= 400:
        ERRORS.labels(method, route, code).inc()


def metrics_payload() -> tuple[bytes, str]:
    """The exposition text of every metric (all workers' in multi-process mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message",
                                                                                 "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send every log record (ours and uvicorn's) to stderr as JSON; idempotent."""
    root = logging.getLogger()
    if not any(getattr(h, "_feedline_json", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._feedline_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for chatty in ("kafka", "cassandra", "google", "urllib3"):  # connection chatter at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")  # replaced by serving.access lines
    access.handlers.clear()
    access.propagate = False
