"""Every service's log in one place: find the files, read, merge in time order, follow.

Each service writes under ``<state dir>/<service>/logs/``: ``console.log`` (what the
process printed) for most; the Java servers' own files where they keep one — Kafka's
``server.log``, Cassandra's ``system.log`` (beside their console.log, which holds start-up
errors), Flink's ``flink--*.log`` (its console.log repeats the same lines, so it is left
out), Redis's ``redis.log``. Lines are normalised by `jobs.localstack.log_lines`.

History is read from the current files, and with ``since`` also from the rotated ones
(``system.log.1`` …) last written after it. `Follower` then polls the current files:
a file replaced under its name (rotation) is read to its end and the new one from its
start; a file that got shorter (truncated) is read again from its start; a line is taken
only once its newline arrived.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from feedline.settings import StackSettings
from jobs.localstack.log_lines import EntryAssembler, LogEntry
from jobs.localstack.redis_cluster import MASTERS

#: Log files of the services that do not (only) write console.log, as globs.
SERVICE_FILES: dict[str, tuple[str, ...]] = {
    "kafka": ("server.log", "console.log"),
    "cassandra": ("system.log", "console.log"),
    "flink-jobmanager": ("flink--standalonesession-*.log",),
    "flink-taskmanager": ("flink--taskexecutor-*.log",),
    "redis": ("redis.log", "console.log"),
    "redis-guards": ("redis.log", "console.log"),
    **{f"redis-cluster-{i + 1}": ("redis.log", "console.log") for i in range(MASTERS)},
}
#: Read at most this much at a time (a follower never holds a whole big file).
CHUNK_BYTES = 1 << 20


def service_names(settings: StackSettings) -> list[str]:
    """Every service of the stack, in start order, and the supervisor."""
    from jobs.localstack.stack import services  # the stack imports every service module

    return [svc.name for svc in services(settings)] + ["supervisor"]


def log_files(state_dir: Path, service: str) -> list[Path]:
    """The current log files of ``service`` that exist."""
    folder = state_dir / service / "logs"
    found: list[Path] = []
    for pattern in SERVICE_FILES.get(service, ("console.log",)):
        found.extend(sorted(p for p in folder.glob(pattern) if p.is_file()))
    return found


def rotated_files(current: Path, since: datetime) -> list[Path]:
    """``current``'s rotated copies (``NAME.1`` …) last written at or after ``since``."""
    cutoff = since.timestamp()
    older = [p for p in current.parent.glob(f"{current.name}.*")
             if p.suffix[1:].isdigit() and p.stat().st_mtime >= cutoff]
    return sorted(older, key=lambda p: p.stat().st_mtime)


def tail_offset(handle: IO[bytes], lines: int) -> int:
    """Where the last ``lines`` lines of ``handle`` start (reads backwards in blocks)."""
    end = handle.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    position, seen = end, 0
    while position > 0:
        step = min(65536, position)
        position -= step
        handle.seek(position)
        block = handle.read(step)
        if position + step == end and block.endswith(b"\n"):
            block = block[:-1]  # the final newline ends the last line, not one more
        for index in range(len(block) - 1, -1, -1):
            if block[index] == 0x0A:
                seen += 1
                if seen == lines:
                    return position + index + 1
    return 0


class LogReader:
    """Reads one log file of one service as entries, from where it stopped."""

    def __init__(self, service: str, path: Path, *, tail: int | None = None) -> None:
        self.service = service
        self.path = path
        self.tail = tail
        self._handle: IO[bytes] | None = None
        self._inode: int | None = None
        self._partial = b""
        self._assembler = EntryAssembler(service, self._mtime())
        self.lines_read = 0
        """Lines read so far (a follower hands out the open entry of a quiet file)."""

    def _mtime(self) -> datetime:
        try:
            return datetime.fromtimestamp(self.path.stat().st_mtime, UTC)
        except FileNotFoundError:
            return datetime.now(UTC)

    def _open(self, *, from_start: bool) -> bool:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        self._handle, self._inode = handle, os.fstat(handle.fileno()).st_ino
        if not from_start and self.tail is not None:
            handle.seek(tail_offset(handle, self.tail))
        self._partial = b""
        return True

    def _lines(self) -> Iterator[str]:
        """Complete lines that arrived since the last call."""
        assert self._handle is not None
        while chunk := self._handle.read(CHUNK_BYTES):
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self.lines_read += len(complete)
            for raw in complete:
                yield raw.rstrip(b"\r").decode("utf-8", errors="replace")

    def _replaced_or_truncated(self) -> str | None:
        assert self._handle is not None
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None  # mid-rotation: keep reading the old file for now
        if stat.st_ino != self._inode:
            return "replaced"
        if stat.st_size < self._handle.tell():
            return "truncated"
        return None

    def read(self) -> Iterator[LogEntry]:
        """Entries completed by the lines written since the last read.

        The last entry stays open (a following line may continue it); `flush` hands it out.
        """
        if self._handle is None and not self._open(from_start=False):
            return
        change = self._replaced_or_truncated()
        if change == "truncated":
            assert self._handle is not None
            self._handle.seek(0)
            self._partial = b""
        yield from self._feed(self._lines())
        if change == "replaced":
            assert self._handle is not None
            self._handle.close()
            if self._partial:  # the old file's last line had no newline: it is complete now
                yield from self._feed([self._partial.decode("utf-8", errors="replace")])
            yield from self.flush()
            if self._open(from_start=True):
                yield from self._feed(self._lines())

    def _feed(self, lines: Iterable[str]) -> Iterator[LogEntry]:
        for line in lines:
            done = self._assembler.feed(line)
            if done is not None:
                yield done

    def flush(self) -> Iterator[LogEntry]:
        """The entry still open, if any."""
        done = self._assembler.finish()
        if done is not None:
            yield done

    def history(self) -> Iterator[LogEntry]:
        """Everything up to the file's current end."""
        yield from self.read()
        yield from self.flush()

    def close(self) -> None:
        """Close the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class IdFilter:
    """Entries mentioning any of the ids; a request id brings in its write's event id.

    An entry matches when an id occurs in its message or a field's value (Java lines
    carry ids in their text). When a matched entry's ``request_id`` is one of the ids,
    its ``event_id`` and ``media_id`` join them, so that following a request id also
    finds the lines of the event it produced that come after it.
    """

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = set(ids)

    def __call__(self, entry: LogEntry) -> bool:
        """Whether ``entry`` is shown."""
        text = entry.search_text()
        if not any(wanted in text for wanted in self.ids):
            return False
        if entry.fields.get("request_id") in self.ids:
            for name in ("event_id", "media_id"):
                value = entry.fields.get(name)
                if isinstance(value, str) and value:
                    self.ids.add(value)
        return True


Keep = Callable[[LogEntry], bool]


def readers_for(state_dir: Path, services: Sequence[str], *,
                tail: int | None = None) -> list[LogReader]:
    """A reader per current log file of each service."""
    return [LogReader(service, path, tail=tail)
            for service in services for path in log_files(state_dir, service)]


def history(readers: Sequence[LogReader], state_dir: Path, services: Sequence[str],
            since: datetime | None, keep: Keep) -> Iterator[LogEntry]:
    """What the files hold now (the rotated ones too from ``since``), in time order."""
    streams: list[Iterator[LogEntry]] = [reader.history() for reader in readers]
    if since is not None:
        for service in services:
            for current in log_files(state_dir, service):
                streams.extend(LogReader(service, old).history()
                               for old in rotated_files(current, since))
    for entry in heapq.merge(*streams, key=lambda e: e.ts):
        if (since is None or entry.ts >= since) and keep(entry):
            yield entry


class Follower:
    """New entries of every file, a poll at a time, each poll's batch in time order.

    An entry whose file stayed quiet for a whole poll is handed out (nothing continues
    it any more); services whose first log file appears later are picked up.
    """

    def __init__(self, readers: Sequence[LogReader], state_dir: Path,
                 services: Sequence[str], keep: Keep) -> None:
        self.readers = list(readers)
        self.state_dir = state_dir
        self.services = list(services)
        self.keep = keep
        self._known = {reader.path for reader in self.readers}

    def _discover(self) -> None:
        for service in self.services:
            for path in log_files(self.state_dir, service):
                if path not in self._known:
                    self._known.add(path)
                    self.readers.append(LogReader(service, path))  # new: all of it

    def poll(self) -> list[LogEntry]:
        """The entries completed since the last poll, sorted by time."""
        self._discover()
        batch: list[LogEntry] = []
        for reader in self.readers:
            before = reader.lines_read
            batch.extend(reader.read())
            if reader.lines_read == before:
                batch.extend(reader.flush())
        batch.sort(key=lambda e: e.ts)
        return [entry for entry in batch if self.keep(entry)]

    def run(self, emit: Callable[[LogEntry], object], *, interval_s: float = 0.5,
            sleep: Callable[[float], object] = time.sleep) -> None:
        """Poll and emit until interrupted."""
        while True:
            for entry in self.poll():
                emit(entry)
            sleep(interval_s)
