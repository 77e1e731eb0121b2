"""JSON-lines logs for every Python service, carrying the request or event id.

Each record is one JSON object on one line::

    {"ts": "2026-12-01T01:54:23.963+00:00", "level": "info", "service": "api",
     "logger": "serving.access", "msg": "POST /v1/posts 202",
     "request_id": "…", "event_id": "…", …}

``ts`` is UTC with milliseconds, ``level`` lower case, ``service`` the process's service
name (what `feedctl local logs` files it under), then the fields of the current log
context (`bind`, `annotate`: ``request_id``, ``event_id``, ``media_id`` …) and the
record's ``extra`` fields. orjson encodes the object (any value it cannot encode is
written with ``str``).

The context is a dict held in a context variable: a request (or the handling of one
event) binds a fresh dict, and code deeper down may add to it with `annotate`. Adding
mutates that dict rather than setting the variable, so a field added inside a copied
context (a thread-pool dependency, a task) still reaches the access line written by the
code that bound it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any

import orjson

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("feedline_log_context", default=None)

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
#: Client libraries that log every connection at INFO.
CHATTY_LOGGERS = ("kafka", "cassandra", "google", "urllib3", "httpx")


def log_context() -> dict[str, Any]:
    """The fields of the current log context (a copy; empty outside any `bind`)."""
    return dict(_CONTEXT.get() or {})


def bind_context(**fields: Any) -> Token[dict[str, Any] | None]:
    """Start a new context holding the current fields and ``fields``; returns its token."""
    merged = {**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    return _CONTEXT.set(merged)


def reset_context(token: Token[dict[str, Any] | None]) -> None:
    """End the context started by `bind_context` (the one before it is current again)."""
    _CONTEXT.reset(token)


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Log records written inside the block carry ``fields`` (None values are left out)."""
    token = bind_context(**fields)
    try:
        yield
    finally:
        reset_context(token)


def annotate(**fields: Any) -> bool:
    """Add ``fields`` to the current context (seen by whoever bound it); False outside one."""
    current = _CONTEXT.get()
    if current is None:
        return False
    current.update({k: v for k, v in fields.items() if v is not None})
    return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, msg, context, extra fields."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` on one line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
        }
        if self.service:
            entry["service"] = self.service
        entry["logger"] = record.name
        entry["msg"] = record.getMessage()
        entry.update(_CONTEXT.get() or {})
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class StdoutHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stdout`` is when a record comes.

    Bound to the object ``sys.stdout`` was at set-up instead, a handler outlives a swap:
    a test runner's capture file, replaced and closed after the test, made every later
    record of the process fail with "I/O operation on closed file".
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> IO[str]:
        """The current ``sys.stdout``."""
        return sys.stdout

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        """Ignored: the stream is always the current ``sys.stdout``."""


def configure_logging(service: str, *, level: str | int = "INFO",
                      stream: IO[str] | None = None) -> logging.Handler:
    """Send every record of this process to ``stream`` (stdout) as JSON lines; idempotent.

    Adds one handler to the root logger (a second call only renames the service) and
    quiets the client libraries' connection chatter. Returns the handler.
    """
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_feedline_json", False):
            handler.setFormatter(JsonFormatter(service))
            root.setLevel(level)
            return handler
    added: logging.Handler = (StdoutHandler() if stream is None
                              else logging.StreamHandler(stream))
    added.setFormatter(JsonFormatter(service))
    added._feedline_json = True  # type: ignore[attr-defined]
    root.addHandler(added)
    root.setLevel(level)
    for chatty in CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return added


class LogBudget:
    """At most ``limit`` lines per ``window_s`` for a per-record log (dead letters, say).

    A flood of broken records must not flood the log; what was left out is counted and
    reported by the first line of the next window. ``clock`` is injectable for tests.
    """

    def __init__(self, limit: int = 50, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._window_start = clock()
        self._used = 0
        self._skipped = 0

    def take(self) -> tuple[bool, int]:
        """(whether to log this line, lines left out before it and not yet reported)."""
        now = self.clock()
        if now - self._window_start >= self.window_s:
            self._window_start, self._used = now, 0
        if self._used >= self.limit:
            self._skipped += 1
            return False, 0
        self._used += 1
        skipped, self._skipped = self._skipped, 0
        return True, skipped
