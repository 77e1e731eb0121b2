"""One shape for every log line of the local stack: the services' formats, normalised.

The Python services (API, archiver, media worker, exporter, freshness probe) write JSON
lines (`feedline.logs`). The others keep their own formats, and `feedctl local logs`
normalises each line here into a `LogEntry` with the same fields as the JSON lines
(``ts``, ``level``, ``service``, ``logger``, ``msg``, ids), so all can be merged,
filtered and printed alike:

========================  ==========================================================
Flink (log4j)             ``2026-12-01 01:53:44,703 INFO  org.apache… [] - msg``
Kafka (log4j2)            ``[2026-12-01 01:53:54,544] INFO msg (logger)``
Cassandra (logback)       ``INFO  [thread] 2026-12-01 01:53:49,914 File.java:744 - msg``
Prometheus, exporters     logfmt: ``ts=… level=info msg="…"`` (or ``time=…``)
Redis                     ``15231:M 01 Dec 2026 01:53:29.379 * msg``
Python text logging       ``2026-12-01 01:53:53,862 INFO feedline.archiver: msg``
the supervisor, others    an ISO-8601 time, then the message
the stack's own markers   ``--- start 2026-12-01T01:53:51+0000: /usr/bin/redis-server``
========================  ==========================================================

The Java formats print the machine's local time without a zone; it is read as such.
A line that starts no entry (a stack trace, a multi-line message) continues the entry
before it. ``request_id=…``, ``event_id=…`` and ``media_id=…`` written in a text message
(Flink's dead-letter lines do) become fields too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

#: Fields printed after the message in text output, and lifted out of text messages.
ID_FIELDS = ("request_id", "event_id", "media_id")
_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "notice": "info",
           "warn": "warning", "warning": "warning", "error": "error", "err": "error",
           "fatal": "critical", "critical": "critical", "crit": "critical"}
_REDIS_LEVELS = {".": "debug", "-": "info", "*": "info", "#": "warning"}
_IDS_IN_TEXT = re.compile(r"\b(request_id|event_id|media_id)=([A-Za-z0-9._:-]+)")


@dataclass(slots=True)
class LogEntry:
    """One log entry of one service, normalised."""

    ts: datetime
    """When it was written (timezone-aware)."""
    service: str
    level: str
    """debug, info, warning, error or critical."""
    logger: str
    msg: str
    fields: dict[str, Any] = field(default_factory=dict)
    """Everything else: request_id, event_id, a JSON line's extra fields."""

    def as_json(self) -> dict[str, Any]:
        """The entry as the JSON object `feedctl local logs --json` prints."""
        return {"ts": format_ts(self.ts), "level": self.level, "service": self.service,
                "logger": self.logger, "msg": self.msg, **self.fields}

    def json_line(self) -> str:
        """The entry as one JSON line."""
        return orjson.dumps(self.as_json(), default=str).decode()

    def text_line(self) -> str:
        """The entry for people: time, service, level, logger, message, then its ids."""
        ids = " ".join(f"{name}={self.fields[name]}" for name in ID_FIELDS
                       if self.fields.get(name))
        text = f"{format_ts(self.ts)} {self.service:<17} {self.level:<8} {self.logger}: " \
               f"{self.msg}"
        return f"{text}  [{ids}]" if ids else text

    def search_text(self) -> str:
        """What an id is looked for in: the message and every field's value."""
        return " ".join([self.msg, *(str(value) for value in self.fields.values())])


def format_ts(moment: datetime) -> str:
    """UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def level_of(text: str) -> str:
    """A level word of any of the formats, normalised (unknown words: info)."""
    return _LEVELS.get(text.strip().lower(), "info")


@dataclass(frozen=True, slots=True)
class Head:
    """What the first line of an entry says (``ts`` None: the line carries no time)."""

    ts: datetime | None
    level: str
    logger: str
    msg: str
    fields: dict[str, Any] = field(default_factory=dict)


def _local(text: str, fmt: str) -> datetime:
    """A zone-less local time of this machine, made aware."""
    return datetime.strptime(text, fmt).astimezone()


def _iso(text: str) -> datetime:
    """An ISO-8601 time with a zone; nanoseconds cut to microseconds."""
    text = text.replace("Z", "+00:00").replace(",", ".")
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
    moment = datetime.fromisoformat(text)
    return moment if moment.utcoffset() is not None else moment.astimezone()


def _json(line: str) -> Head | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ts"), str):
        return None
    try:
        ts = _iso(data.pop("ts"))
    except ValueError:
        return None
    data.pop("service", None)  # the file says which service wrote it
    msg = data.pop("msg", None)
    if msg is None:
        msg = data.pop("message", "")
    return Head(ts, level_of(str(data.pop("level", "info"))), str(data.pop("logger", "")),
                str(msg), data)


_LOG4J = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) +([A-Z]+) +(\S+) +\[[^\]]*\] - "
                    r"(.*)$")
_KAFKA = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] ([A-Z]+) (.*?)"
                    r"(?: \(([\w.$-]+)\))?$")
_LOGBACK = re.compile(r"^([A-Z]+) +\[([^\]]*)\] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
                      r"(\S+) - (.*)$")
_PY_TEXT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ([A-Z]+) ([\w.]+): (.*)$")
_REDIS = re.compile(r"^(\d+):([A-Z]) (\d\d \w{3} \d{4} \d\d:\d\d:\d\d\.\d{3}) ([.*#-]) (.*)$")
_START = re.compile(r"^--- start (\S+): (.*)$")
_LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_ISO_LINE = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
                       r" +(.*)$")
_LEVEL_WORD = re.compile(r"\b(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL)\b")
_JAVA_TS = "%Y-%m-%d %H:%M:%S,%f"
_PY_PATH = re.compile(r"^/\S*?/((?:feedline|pipelines|serving|jobs|schemas|apache_beam|pyflink)"
                      r"/\S+\.py:\d+)$")


def _log4j(line: str) -> Head | None:
    m = _LOG4J.match(line)
    if m is None:
        return None
    # Lines the Python workers forward (logger ``path.py:LINE``) end with a space; their
    # path is cut to the package (the shipped copy sits under a long temporary folder).
    logger = _PY_PATH.sub(r"\1", m[3])
    return Head(_local(m[1], _JAVA_TS), level_of(m[2]), logger, m[4].rstrip())


def _kafka(line: str) -> Head | None:
    m = _KAFKA.match(line)
    if m is None:
        return None
    return Head(_local(m[1], _JAVA_TS), level_of(m[2]), m[4] or "kafka", m[3])


def _logback(line: str) -> Head | None:
    m = _LOGBACK.match(line)
    if m is None:
        return None
    return Head(_local(m[3], _JAVA_TS), level_of(m[1]), m[4], m[5], {"thread": m[2]})


def _python_text(line: str) -> Head | None:
    m = _PY_TEXT.match(line)
    if m is None:
        return None
    return Head(_local(m[1], _JAVA_TS), level_of(m[2]), m[3], m[4])


def _redis(line: str) -> Head | None:
    m = _REDIS.match(line)
    if m is None:
        return None
    return Head(_local(m[3], "%d %b %Y %H:%M:%S.%f"), _REDIS_LEVELS[m[4]], "redis", m[5])


def _logfmt(line: str) -> Head | None:
    if not line.startswith(("ts=", "time=")):
        return None
    pairs = {k: (v[1:-1].replace('\\"', '"') if v.startswith('"') else v)
             for k, v in _LOGFMT_PAIR.findall(line)}
    try:
        ts = _iso(pairs.pop("ts", None) or pairs.pop("time", ""))
    except ValueError:
        return None
    level = level_of(pairs.pop("level", "info"))
    logger = pairs.pop("caller", None) or pairs.pop("source", None) or pairs.pop("logger", "")
    return Head(ts, level, logger, pairs.pop("msg", ""), pairs)


def _start_marker(line: str) -> Head | None:
    m = _START.match(line)
    if m is None:
        return None
    try:
        ts = _iso(m[1])
    except ValueError:
        return None
    return Head(ts, "info", "localstack", f"process started: {m[2]}")


def _iso_line(line: str) -> Head | None:
    m = _ISO_LINE.match(line)
    if m is None:
        return None
    try:
        ts = _iso(m[1])
    except ValueError:
        return None
    word = _LEVEL_WORD.search(m[2][:60])
    return Head(ts, level_of(word[1]) if word else "info", "", m[2])


#: Tried in order; the first that recognises a line wins.
PARSERS: tuple[Callable[[str], Head | None], ...] = (
    _log4j, _kafka, _logback, _python_text, _redis, _logfmt, _start_marker, _iso_line)


def parse_head(line: str) -> Head | None:
    """The entry ``line`` starts, or None when it continues the one before."""
    if line.startswith("{"):
        return _json(line)
    if line.startswith("--- killed "):
        return Head(None, "warning", "localstack", line[4:])
    for parse in PARSERS:
        head = parse(line)
        if head is not None:
            return head
    return None


def ids_in_text(msg: str) -> dict[str, str]:
    """``request_id=…``, ``event_id=…``, ``media_id=…`` written in a message."""
    return {name: value for name, value in _IDS_IN_TEXT.findall(msg)}


class EntryAssembler:
    """Turns one file's lines into entries: heads start one, other lines continue it.

    ``feed`` returns the entry a new head completes; ``finish`` the last one. A line
    without a time takes the previous entry's (``fallback_ts`` before any).
    """

    def __init__(self, service: str, fallback_ts: datetime) -> None:
        self.service = service
        self.last_ts = fallback_ts
        self.pending: LogEntry | None = None

    def feed(self, line: str) -> LogEntry | None:
        """Take one line (without its newline)."""
        if not line.strip():
            return None
        head = parse_head(line)
        if head is None:
            if self.pending is not None:
                self.pending.msg += "\n" + line
                return None
            head = Head(None, "info", "", line)
        done, self.pending = self.pending, self._entry(head)
        return done

    def finish(self) -> LogEntry | None:
        """The entry still open (None when there is none)."""
        done, self.pending = self.pending, None
        return done

    def _entry(self, head: Head) -> LogEntry:
        ts = head.ts or self.last_ts
        self.last_ts = ts
        fields = dict(head.fields)
        if not any(name in fields for name in ID_FIELDS):
            fields.update(ids_in_text(head.msg))
        return LogEntry(ts, self.service, head.level, head.logger or self.service, head.msg,
                        fields)
