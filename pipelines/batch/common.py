"""What both rebuild jobs share: flags, the quality gate, the archive read, the runner.

Elements are coarse on purpose (the Python DirectRunner pays per element): one element
per archive part to read, one per (part, shard) of raw records to group, one per shard
to derive and write. Records are routed by the same keys the streaming jobs key by
(``feedline.rules.keys``), hashed into ``--shards`` groups; every rules key lands in
exactly one group, so the rules see all of a key's events, as a keyed Flink state does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from feedline.cli import iso_time
from feedline.rules.keys import Job, record_keys
from feedline.settings import BatchSettings, get_batch_settings

log = logging.getLogger("feedline.rebuild")


def read_users_file(path: str) -> list[str]:
    """User ids, one per line (blank lines and ``#`` comments ignored)."""
    lines = Path(path).read_text().splitlines()
    return [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]


def job_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """Flags every rebuild job takes; unknown flags go to Beam as pipeline options."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Other flags are Beam pipeline options, e.g. --runner=DataflowRunner "
        "--project=P --region=R (default: DirectRunner, --direct_num_workers=2).")
    parser.add_argument("--since", type=iso_time, help="first event time (ISO-8601, inclusive)")
    parser.add_argument("--until", type=iso_time, help="end of the window (ISO-8601, exclusive)")
    parser.add_argument("--users", help="comma-separated user ids: write only theirs")
    parser.add_argument("--users-file", help="file of user ids, one per line: write only theirs")
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would change in the stores; write nothing")
    parser.add_argument("--quarantine", action="store_true",
                        help="let the quality gate move bad records aside (counted) and go on")
    parser.add_argument("--no-gate", action="store_true",
                        help="skip the quality gate: only when it just passed for this window "
                        "(`feedctl rebuild all` runs it once for both jobs)")
    parser.add_argument("--shards", type=int, default=16,
                        help="key groups the work is split into (default 16)")
    parser.add_argument("--settings-json",
                        help="BatchSettings as JSON (default: FEEDLINE_* from the environment)")
    return parser


@dataclass
class JobArgs:
    """Parsed flags plus what they resolve to."""

    args: argparse.Namespace
    settings: BatchSettings
    users: frozenset[str] | None
    beam_args: list[str]


def parse_job_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> JobArgs:
    """Parse flags; exits 2 on a usage error (argparse's convention)."""
    args, beam_args = parser.parse_known_args(argv)
    if args.since and args.until and args.since >= args.until:
        parser.error("--since must be before --until")
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    users: set[str] | None = None
    if args.users is not None or args.users_file is not None:
        users = set()
        if args.users:
            users.update(u.strip() for u in args.users.split(",") if u.strip())
        if args.users_file:
            try:
                users.update(read_users_file(args.users_file))
            except OSError as err:
                parser.error(f"--users-file: {err}")
        if not users:
            parser.error("--users / --users-file name no user")
    settings = (BatchSettings.model_validate_json(args.settings_json) if args.settings_json
                else get_batch_settings())
    return JobArgs(args, settings, frozenset(users) if users is not None else None, beam_args)


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the pass-through flags; locally the DirectRunner on 2 processes."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "DirectRunner"
    if str(standard.runner).endswith("DirectRunner"):
        direct = options.view_as(DirectOptions)
        if not any(a.startswith("--direct_num_workers") for a in beam_args):
            direct.direct_num_workers = 2
        if not any(a.startswith("--direct_running_mode") for a in beam_args):
            direct.direct_running_mode = "multi_processing"
    return options


def say(message: str) -> None:
    """A progress line on stderr (above a progress bar, if one is showing)."""
    from feedline.cli import write_line

    write_line(f"[{time.strftime('%H:%M:%S')}] {message}", sys.stderr)


def quality_gate(settings: BatchSettings, topics: Sequence[str], since: datetime | None,
                 until: datetime | None, *, quarantine: bool) -> bool:
    """Run the quality gate over the window first; False (with the reasons) when it fails."""
    from feedline.cli import gate_progress
    from pipelines.quality.gate import run_gate

    started = time.monotonic()
    with gate_progress(settings, topics, since, until):
        result = run_gate(settings, topics, since, until, quarantine=quarantine,
                          root=settings.archive_prefix)
    # The summary has one line per partition: show the failing and quarantined ones.
    for report in result.partitions:
        if not report.passed or report.quarantined:
            say(f"gate: {report.line()}")
            for failure in report.failed_expectations:
                say(f"gate:     {failure}")
    say(f"gate: {result.summary().splitlines()[-1]}")
    if not result.passed:
        failed = [p for p in result.partitions if not p.passed]
        say(f"quality gate FAILED for {len(failed)} partition(s); nothing was written. "
            "Fix the archive, or rerun with --quarantine to move the bad records aside.")
        return False
    say(f"quality gate passed in {time.monotonic() - started:.1f} s")
    return True


def shard_of(key: str, shards: int) -> int:
    """The group a rules key's events go to."""
    return zlib.crc32(key.encode()) % shards


def fanout_route(record: Mapping[str, Any]) -> list[str]:
    """The fan-out job's key of a raw record (uploads by author, follows by followee)."""
    return [key.text for key in record_keys(record, Job.FANOUT)]


def counter_route(record: Mapping[str, Any]) -> list[str]:
    """The counters job's keys of a raw record (``post:ID`` / ``user:ID``)."""
    return [key.text for key in record_keys(record, Job.COUNTERS)]


Router = Callable[[Mapping[str, Any]], list[str]]


def route_records(role: str, lines: Sequence[bytes], shards: int,
                  router: Router) -> dict[int, list[tuple[str, bytes]]]:
    """Raw records grouped by the shard of each of their rules keys (a JSON decode only).

    A record of an event type no rule knows raises ``UnknownEventType`` (a ``ValueError``):
    the quality gate should have stopped it, so the job stops rather than drop it.
    """
    groups: dict[int, list[tuple[str, bytes]]] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise ValueError("a record is not a JSON object (the quality gate should have "
                             "stopped the job; rerun with --quarantine)")
        for key in router(record):
            groups.setdefault(shard_of(key, shards), []).append((role, line))
    return groups


class StoreDoFn(beam.DoFn):
    """A DoFn holding an ``ImageWriter`` on the stores from ``setup`` to ``teardown``.

    ``settings_json`` is the job's ``BatchSettings`` as JSON (workers rebuild them), ``job``
    the job's plain options; ``self.writer`` and ``self.settings`` exist once set up.
    """

    def __init__(self, settings_json: str, job: dict[str, Any]) -> None:
        self.settings_json = settings_json
        self.job = job

    def setup(self) -> None:
        """Connect to the CQL store and Redis."""
        import redis

        from feedline.rebuild.writer import ImageWriter
        from feedline.stores.cql import connect
        from schemas.redis_keys import RedisKeys

        self.settings = BatchSettings.model_validate_json(self.settings_json)
        self._cluster, session = connect(self.settings.cql,
                                         keyspace=self.settings.cql.keyspace)
        self._redis = redis.Redis.from_url(self.settings.redis.url, decode_responses=True)
        self.writer = ImageWriter(session, self._redis,
                                  RedisKeys(self.settings.redis.key_prefix),
                                  timeline_cap=self.settings.feed.timeline_cap,
                                  write_time_us=self.job["write_time_us"])

    def teardown(self) -> None:
        """Release the connections."""
        self._cluster.shutdown()
        self._redis.close()


class ReadParts(beam.DoFn):
    """One archive part in, its raw records out, grouped by shard of their rules keys."""

    def __init__(self, settings_json: str, shards: int, route: str,
                 progress_file: str | None = None) -> None:
        self.settings_json = settings_json
        self.shards = shards
        self.route = route
        self.progress_file = progress_file
        self.parts = beam.metrics.Metrics.counter("read", "parts")
        self.records = beam.metrics.Metrics.counter("read", "records")

    def setup(self) -> None:
        """Open the archive (google-cloud-storage; no Beam GCP IO)."""
        from feedline.archive.store import Archive

        settings = BatchSettings.model_validate_json(self.settings_json)
        self.archive = Archive.open(settings.storage, settings.archive_prefix)
        self.router: Router = fanout_route if self.route == "fanout" else counter_route

    def process(self, part: tuple[str, str]) -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
        """Download, decode, route."""
        role, object_name = part
        lines = self.archive.read_lines(object_name)
        try:
            groups = route_records(role, lines, self.shards, self.router)
        except ValueError as err:
            raise ValueError(f"{object_name}: {err}") from None
        self.parts.inc()
        self.records.inc(len(lines))
        advance(self.progress_file)
        yield from groups.items()


def advance(progress_file: str | None) -> None:
    """One step of the job done: a byte appended to its progress file (``pipeline_progress``)."""
    if progress_file:
        with open(progress_file, "ab") as handle:
            handle.write(b".")


class PipelineProgress:
    """A progress bar of ``total`` steps that the job's DoFns advance with ``advance``.

    Shown on a terminal with the DirectRunner, whose workers are local processes: they
    append a byte per step to a temporary file whose size the bar follows. Entering gives
    the file's path for the job's DoFns, or None (no bar: nothing to report).
    """

    def __init__(self, desc: str, total: int, options: PipelineOptions) -> None:
        from feedline.cli import interactive

        runner = str(options.view_as(StandardOptions).runner or "")
        self.shown = interactive() and runner.endswith("DirectRunner")
        self.desc, self.total = desc, total
        self._stop = threading.Event()

    def __enter__(self) -> str | None:
        from feedline.cli import progress_bar

        if not self.shown:
            return None
        self._folder = tempfile.TemporaryDirectory(prefix="feedline-progress-")
        self.path = os.path.join(self._folder.name, "steps")
        open(self.path, "wb").close()
        self._bar = progress_bar(self.desc, self.total, "step")
        self._follower = threading.Thread(target=self._follow, name="pipeline-progress",
                                          daemon=True)
        self._follower.start()
        return self.path

    def _follow(self) -> None:
        while not self._stop.wait(0.5):
            self._bar.update(min(self.total, os.path.getsize(self.path)) - self._bar.n)

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if not self.shown:
            return
        self._stop.set()
        self._follower.join()
        if kind is None:
            self._bar.update(self.total - self._bar.n)
        self._bar.close()
        self._folder.cleanup()


def parse_shard(batches: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    """The valid events of a shard's raw records inside the window."""
    from feedline.rebuild.source import in_window
    from schemas.event_contracts import parse_event

    events = []
    for batch in batches:
        for role, line in batch:
            event = parse_event(role, line)
            if in_window(event, since, until):
                events.append(event)
    return events


def print_metrics(result: Any) -> None:
    """Counts per stage from the pipeline's metrics."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception as err:  # metrics are a report, not the result
        say(f"metrics unavailable: {err}")
        return
    totals: dict[str, int] = {}
    for counter in counters:
        name = f"{counter.key.metric.namespace}.{counter.key.metric.name}"
        totals[name] = totals.get(name, 0) + int(counter.committed or counter.attempted or 0)
    for name in sorted(totals):
        say(f"  {name:<32} {totals[name]:>12,}")


def part_list(settings: BatchSettings, roles: Sequence[str], since: datetime | None,
              until: datetime | None) -> list[tuple[str, str]]:
    """(role, object name) of every archive part to read."""
    from feedline.archive.store import Archive
    from feedline.rebuild.source import list_parts

    archive = Archive.open(settings.storage, settings.archive_prefix)
    topic_roles = {t: r for t, r in settings.kafka.topic_roles().items() if r in roles}
    return [(p.role, p.object_name) for p in list_parts(archive, topic_roles, since, until)]
