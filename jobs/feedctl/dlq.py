"""feedctl dlq — inspect and replay the dead letters of an event topic (<topic>.dlq).

`inspect TOPIC` counts dead letters by reason (all, and pending: after the replay group's
committed offset) and shows samples with their offsets. `replay TOPIC` re-validates each
pending dead letter with the current schemas (or takes its corrected version from
--from-file, a JSONL file of events, or {"dlq_offset": N, "event": {...}} lines), publishes
the ones that pass to TOPIC with their partition key, and parks the rest for a later replay.
Publishing and the DLQ offset commit are one Kafka transaction: rerunning never publishes
a dead letter twice. --dry-run reports without publishing or committing.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

from feedline.rules.retention import bound_ms
from feedline.settings import get_batch_settings
from jobs.dlq import REPLAY_GROUP, inspect_dlq, replay_dlq
from jobs.feedctl import deps
from jobs.feedctl.output import add_json_flag, print_json


def register(nouns: Any) -> None:
    """Add `dlq` and its verbs."""
    parser = nouns.add_parser("dlq", help="inspect and replay dead letters", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    ins = verbs.add_parser("inspect", help="dead letters by reason, with samples")
    ins.add_argument("topic", metavar="TOPIC", help="event topic (its DLQ is TOPIC.dlq)")
    ins.add_argument("--samples", type=int, default=5, help="pending dead letters to show")
    ins.add_argument("--group", default=REPLAY_GROUP, help="replay consumer group")
    add_json_flag(ins)
    ins.set_defaults(run=_inspect)
    rep = verbs.add_parser("replay", help="re-publish dead letters that now pass")
    rep.add_argument("topic", metavar="TOPIC", help="event topic (its DLQ is TOPIC.dlq)")
    rep.add_argument("--from-file", type=Path, help="JSONL of corrected events")
    rep.add_argument("--dry-run", action="store_true", help="report only; publish nothing")
    rep.add_argument("--group", default=REPLAY_GROUP, help="replay consumer group")
    rep.set_defaults(run=_replay)


def _role(topic: str) -> str | None:
    return get_batch_settings().kafka.topic_roles().get(topic)


def _inspect(args: argparse.Namespace) -> int:
    kafka = get_batch_settings().kafka
    if _role(args.topic) is None:
        print(f"feedctl dlq inspect: {args.topic!r} is not an event topic", file=sys.stderr)
        return 2
    deps.require(deps.kafka(kafka))
    try:
        report = inspect_dlq(kafka, args.topic, samples=args.samples, group_id=args.group)
    except ValueError as err:  # the dead-letter topic does not exist
        print(f"feedctl dlq inspect: {err}", file=sys.stderr)
        return 1
    if args.json:
        print_json({
            "topic": args.topic, "dlq_topic": report.topic, "group": args.group,
            "total": dict(report.total), "pending": dict(report.pending),
            "samples": [{"partition": letter.dlq_partition, "offset": letter.dlq_offset,
                         "reason": letter.reason, "detail": letter.detail,
                         "source": letter.source, "event_id": letter.event_id,
                         "payload_b64": base64.b64encode(letter.payload).decode()}
                        for letter in report.samples]})
        return 0
    print(f"{report.topic}: {sum(report.total.values())} dead letter(s), "
          f"{sum(report.pending.values())} pending replay (group {args.group})")
    for reason, count in report.total.most_common():
        print(f"  {reason:<24} {count:>8}  pending {report.pending.get(reason, 0):>8}")
    for letter in report.samples:
        payload = letter.payload[:120].decode("utf-8", "replace")
        print(f"  @{letter.dlq_partition}:{letter.dlq_offset} {letter.reason} from "
              f"{letter.source}: {letter.detail}\n      {payload}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    settings = get_batch_settings()
    kafka = settings.kafka
    role = _role(args.topic)
    if role is None:
        print(f"feedctl dlq replay: {args.topic!r} is not an event topic", file=sys.stderr)
        return 2
    lines: list[str] = []
    if args.from_file is not None:
        try:
            lines = args.from_file.read_text("utf-8").splitlines()
        except OSError as err:
            print(f"feedctl dlq replay: {err}", file=sys.stderr)
            return 2
    deps.require(deps.kafka(kafka))
    try:
        report = replay_dlq(kafka, args.topic, role, fix_lines=lines, dry_run=args.dry_run,
                            group_id=args.group,
                            lateness_bound_ms=bound_ms(settings.feed.lateness_bound_s))
    except ValueError as err:  # the dead-letter topic does not exist
        print(f"feedctl dlq replay: {err}", file=sys.stderr)
        return 1
    verb = "would publish" if args.dry_run else "published"
    print(f"{verb} {report.published} event(s) to {args.topic} "
          f"({report.fixed_from_file} from --from-file); "
          f"{len(report.still_broken)} still broken"
          + ("" if args.dry_run else " (parked for a later replay)"))
    for letter, why in report.still_broken[:20]:
        print(f"  @{letter.dlq_partition}:{letter.dlq_offset} from {letter.source}: {why}")
    for problem in report.bad_fixes:
        print(f"  --from-file {problem}", file=sys.stderr)
    return 0 if not report.still_broken and not report.bad_fixes else 1
