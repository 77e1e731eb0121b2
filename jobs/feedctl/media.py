"""feedctl media — the media worker and its on-call tools.

`run` processes the uploaded-media topic until SIGTERM/SIGINT (the local stack runs it as
the `media-worker` service). `reprocess` queues uploads to be processed again — one
(`--media`, repeatable), a user's (`--user`) or every recorded one (`--all`) — by producing
`reprocess` messages to the media topic: the running workers decode the stored objects
again and rewrite renditions and rows (the same names and values for the same bytes), so
the `media_processing` table can be rebuilt from the bucket. `--dry-run` lists
what would be queued; `--json` prints {"queued", "dry_run", "media": [ids]}.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from feedline.cli import stop_on_signals
from feedline.logs import configure_logging
from feedline.settings import get_batch_settings
from jobs.feedctl import deps
from jobs.feedctl.output import add_json_flag, print_json


def register(nouns: Any) -> None:
    """Add `media` and its verbs."""
    parser = nouns.add_parser("media", help="process uploads; reprocess them for on-call",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    run = verbs.add_parser("run", help="process the uploaded-media topic until stopped")
    run.add_argument("--group", help="Kafka consumer group (default: media.consumer_group)")
    run.add_argument("--heartbeat-file", type=Path,
                     help="file touched while the loop is alive (the local stack's health check)")
    run.set_defaults(run=_run)
    again = verbs.add_parser("reprocess", help="queue uploads to be processed again")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--media", action="append", metavar="ID", help="a media id (repeatable)")
    which.add_argument("--user", help="every upload of this user")
    which.add_argument("--all", action="store_true", help="every recorded upload")
    again.add_argument("--dry-run", action="store_true", help="list them, queue nothing")
    add_json_flag(again)
    again.set_defaults(run=_reprocess)


def _run(args: argparse.Namespace) -> int:
    from feedline.media.worker import MediaWorker

    settings = get_batch_settings()
    deps.require(deps.kafka(settings.kafka), deps.storage(settings.storage),
                 deps.cql(settings.cql))
    configure_logging("media-worker")  # JSON lines on stdout, with each media id
    stop = stop_on_signals()
    beat: Path | None = args.heartbeat_file
    if beat is not None:
        beat.parent.mkdir(parents=True, exist_ok=True)
        beat.touch()
    worker = MediaWorker(settings.kafka, settings.storage, settings.cql, settings.media,
                         group_id=args.group,
                         on_poll=(lambda: beat.touch()) if beat is not None else None)
    try:
        worker.run(stop)
    except KafkaError as err:
        print(f"feedctl media run: Kafka: {err}", file=sys.stderr)
        return 1
    return 0


def _reprocess(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from feedline.media import messages
    from feedline.media.worker import MediaTable

    settings = get_batch_settings()
    deps.require(deps.kafka(settings.kafka), deps.cql(settings.cql))
    if args.media:
        media_ids = sorted(set(args.media))
    else:
        table = MediaTable(settings.cql)
        try:
            media_ids = table.media_ids(owner_id=args.user)
        finally:
            table.close()
    if not args.dry_run and media_ids:
        producer = KafkaProducer(**settings.kafka.client_options(),
                                 client_id="feedctl-media", acks="all")
        try:
            now = datetime.now(UTC)
            for media_id in media_ids:
                producer.send(settings.kafka.media_topic, key=media_id.encode(),
                              value=messages.encode(messages.MediaUploaded(
                                  media_id, "reprocess"), now))
            producer.flush(timeout=60)
        finally:
            producer.close(timeout=10)
    if args.json:
        print_json({"queued": 0 if args.dry_run else len(media_ids), "dry_run": args.dry_run,
                    "media": media_ids})
        return 0
    verb = "would queue" if args.dry_run else "queued"
    for media_id in media_ids:
        print(media_id)
    print(f"{verb} {len(media_ids)} upload(s) on {settings.kafka.media_topic}"
          + ("" if args.dry_run else "; the media workers process them"))
    return 0
