"""Metrics (Prometheus) and JSON logs carrying the request id (and a write's event id).

Metrics are process-global, as prometheus-client intends. With several uvicorn workers
set ``PROMETHEUS_MULTIPROC_DIR`` (the local stack does) and ``/metrics`` aggregates every
worker's samples.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from feedline.logs import JsonFormatter as JsonFormatter  # re-exported for the API's callers
from feedline.logs import bind_context, log_context, reset_context
from feedline.logs import configure_logging as configure_service_logging

#: The service name on the API's log lines.
SERVICE = "api"

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
    request_id = log_context().get("request_id")
    return str(request_id) if request_id is not None else None


def set_request_id(request_id: str | None) -> Any:
    """Start the log context of a request (its lines carry ``request_id``); returns a token.

    The context is fresh: fields a write adds (its ``event_id``) belong to this request.
    """
    return bind_context(request_id=request_id)


def reset_request_id(token: Any) -> None:
    """End the request's log context (`set_request_id`)."""
    reset_context(token)


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


def configure_logging(level: str = "INFO") -> None:
    """Send every log record (ours and uvicorn's) to stderr as JSON lines; idempotent."""
    configure_service_logging(SERVICE, level=level, stream=sys.stderr)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")  # replaced by serving.access lines
    access.handlers.clear()
    access.propagate = False
