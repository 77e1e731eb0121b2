"""feedctl archive — copy the event topics from Kafka into the object-storage archive.

`run` archives continuously (the local stack runs it as a service) until SIGTERM/SIGINT;
`drain` archives everything up to the topics' current end and exits; `status` shows the
archiver group's committed offset and lag per partition. Objects land in
gs://<archive bucket>/<archive prefix>/<topic>/dt=YYYY-MM-DD/hr=HH/ (feedline.archive.layout).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from feedline.cli import interactive, progress_bar, stop_on_signals
from feedline.logs import configure_logging
from feedline.settings import get_batch_settings
from jobs.feedctl import deps
from jobs.feedctl.output import add_json_flag, print_json

DEFAULT_GROUP = "feedline-archiver"


def register(nouns: Any) -> None:
    """Add `archive` and its verbs."""
    parser = nouns.add_parser("archive", help="archive the event topics to object storage",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    run = verbs.add_parser("run", help="archive continuously until stopped")
    drain = verbs.add_parser("drain", help="archive up to the topics' current end, then exit")
    for verb in (run, drain):
        verb.add_argument("--topic", action="append", dest="topics", metavar="TOPIC",
                          help="topic to archive (repeatable; default: the three event topics)")
        verb.add_argument("--group", default=DEFAULT_GROUP, help="Kafka consumer group")
        verb.add_argument("--root", help="archive object prefix (default: settings)")
        verb.add_argument("--max-records", type=int, default=20_000,
                          help="flush a partition's buffer at this many records")
        verb.add_argument("--max-bytes", type=int, default=4 * 1024 * 1024,
                          help="flush a partition's buffer at this many bytes")
        verb.add_argument("--max-age", type=float, default=30.0,
                          help="flush a partition's buffer after this many seconds")
    run.add_argument("--heartbeat-file", type=Path,
                     help="file touched while the loop is alive (the local stack's health check)")
    run.add_argument("--metrics-port", type=int,
                     help="serve Prometheus metrics (objects and records written) on this port")
    run.add_argument("--metrics-host", default="127.0.0.1",
                     help="address of the metrics server (default: %(default)s)")
    run.set_defaults(run=_run)
    drain.add_argument("--timeout", type=float, default=600.0, help="seconds to catch up")
    drain.set_defaults(run=_drain)
    st = verbs.add_parser("status", help="committed offset and lag per partition; exit 1 if lag")
    st.add_argument("--topic", action="append", dest="topics", metavar="TOPIC")
    st.add_argument("--group", default=DEFAULT_GROUP, help="Kafka consumer group")
    add_json_flag(st)
    st.set_defaults(run=_status)


def _archiver(args: argparse.Namespace, **extra: Any) -> Any:
    from feedline.archive.archiver import Archiver

    settings = get_batch_settings()
    deps.require(deps.kafka(settings.kafka), deps.storage(settings.storage))
    return Archiver(settings.kafka, settings.storage,
                    topics=args.topics or list(settings.kafka.event_topics),
                    root=args.root or settings.archive_prefix, group_id=args.group,
                    max_records=args.max_records, max_bytes=args.max_bytes,
                    max_age_s=args.max_age, **extra)


def _logging() -> None:
    configure_logging("archiver")  # JSON lines on stdout, with the event ids archived


def _run(args: argparse.Namespace) -> int:
    _logging()
    stop = stop_on_signals()
    beat = args.heartbeat_file
    if beat is not None:
        beat.parent.mkdir(parents=True, exist_ok=True)
        beat.touch()
    extra: dict[str, Any] = {}
    if args.metrics_port is not None:
        extra["on_written"] = _serve_metrics(args.metrics_host, args.metrics_port)
    try:
        _archiver(args, on_poll=(lambda: beat.touch()) if beat is not None else None,
                  **extra).run(stop)
    except KafkaError as err:
        print(f"feedctl archive run: Kafka: {err}", file=sys.stderr)
        return 1
    return 0


def _serve_metrics(host: str, port: int) -> Any:
    """Start the metrics server; returns the ``on_written`` hook that counts each batch."""
    from prometheus_client import Counter, Gauge, start_http_server

    objects = Counter("feedline_archive_objects", "Archive objects (parts) written.", ["topic"])
    records = Counter("feedline_archive_records",
                      "Kafka offsets archived (records and any transaction markers among them).",
                      ["topic"])
    last = Gauge("feedline_archive_last_write_timestamp_seconds",
                 "When the archiver last wrote a part (Unix time).")
    try:
        start_http_server(port, addr=host)
    except OSError as error:  # archiving matters more than its metrics: go on without them
        logging.getLogger(__name__).warning(
            "metrics not served: %s:%d: %s (another archiver has the port?)", host, port, error)

    def on_written(batch: Any) -> None:
        objects.labels(batch.topic).inc(len(batch.objects))
        records.labels(batch.topic).inc(batch.last_offset - batch.first_offset + 1)
        last.set_to_current_time()

    return on_written


def _drain(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from feedline.archive.lag import archive_lag

    _logging()
    started = time.monotonic()
    total = None
    if interactive():  # the bar's total: what the group has not archived yet
        settings = get_batch_settings()
        deps.require(deps.kafka(settings.kafka))
        total = sum(row.lag for row in archive_lag(
            settings.kafka, args.topics or list(settings.kafka.event_topics), args.group))
    with progress_bar("archive drain", total, "record", unit_scale=True) as bar, \
            logging_redirect_tqdm():
        try:
            archiver = _archiver(args, on_written=lambda batch: bar.update(
                batch.last_offset - batch.first_offset + 1))
            archived = archiver.drain(args.timeout)
        except (TimeoutError, RuntimeError) as err:
            print(f"feedctl archive drain: {err}", file=sys.stderr)
            return 1
    took = time.monotonic() - started
    print(f"archived {archived:,} records in {took:.1f}s ({archived / max(took, 1e-9):,.0f}/s)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from feedline.archive.lag import archive_lag

    settings = get_batch_settings()
    deps.require(deps.kafka(settings.kafka))
    rows = archive_lag(settings.kafka, args.topics or list(settings.kafka.event_topics),
                       args.group)
    total = sum(r.lag for r in rows)
    if args.json:
        print_json({"group": args.group, "total_lag": total, "partitions": [
            {"topic": r.topic, "partition": r.partition, "committed": r.committed,
             "end": r.end, "lag": r.lag} for r in rows]})
        return 0 if total == 0 else 1
    print(f"{'topic':<24} {'part':>4} {'committed':>12} {'end':>12} {'lag':>10}")
    for row in rows:
        committed = "-" if row.committed is None else str(row.committed)
        print(f"{row.topic:<24} {row.partition:>4} {committed:>12} {row.end:>12} {row.lag:>10}")
    print(f"group {args.group}: total lag {total:,}")
    return 0 if total == 0 else 1
