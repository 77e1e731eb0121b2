"""feedctl rebuild — rebuild derived data from the event archive with the Beam jobs.

    feedctl rebuild all         [--since T] [--until T] [--quarantine] [--dry-run] [beam flags]
    feedctl rebuild timelines   [...] [--users U,V | --users-file F] [--all-tables]
    feedctl rebuild counters    [...] [--users U,V | --users-file F]

`all` runs the quality gate once over every event topic, then the timelines job and the
counters job together in one Beam pipeline: after Redis and the timeline and counter
tables were wiped, it puts back exactly what streaming had built. Every other flag is the
jobs' own (see `python -m pipelines.batch.rebuild_timelines --help`); unknown flags are
Beam pipeline options (`--runner=DataflowRunner --project P --region R`).
Exit codes: 0 done, 1 the quality gate or a job failed, 2 usage error.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(nouns: Any) -> None:
    """Add `rebuild`."""
    parser = nouns.add_parser("rebuild", help="rebuild timelines and counters from the archive",
                              description=__doc__, add_help=False,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", nargs="?", choices=["all", "timelines", "counters"])
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    parser.add_argument("rest", nargs=argparse.REMAINDER,
                        help="the job's flags and Beam pipeline options")
    parser.set_defaults(run=lambda args: _rebuild(args, parser))


def _rebuild(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from pipelines.batch import rebuild_counters, rebuild_timelines

    rest: list[str] = list(args.rest)
    if args.job is None:
        parser.print_help()
        return 0 if args.help else 2
    if args.help:
        rest.append("--help")
    if args.job == "timelines":
        return rebuild_timelines.run(rest)
    if args.job == "counters":
        return rebuild_counters.run(rest)
    return rebuild_all(rest)


def rebuild_all(rest: list[str]) -> int:
    """Gate once over every topic, then both jobs' graphs in one Beam pipeline.

    One pipeline starts the worker processes once, and the counters' work fills the time
    the timelines' writes wait on the stores.
    """
    import time

    import apache_beam as beam

    from pipelines.batch import rebuild_counters, rebuild_timelines
    from pipelines.batch.common import (
        job_parser,
        parse_job_args,
        part_list,
        pipeline_options,
        print_metrics,
        quality_gate,
        say,
    )

    if any(a.startswith(("--users", "--all-tables", "--rate", "--checkpoint")) for a in rest):
        say("feedctl rebuild all: --users/--all-tables/--rate/--checkpoint belong to "
            "`rebuild timelines`, `rebuild counters` or `backfill`")
        return 2
    parsed = parse_job_args(job_parser("feedctl rebuild all", __doc__), rest)
    args, settings = parsed.args, parsed.settings
    started = time.monotonic()
    say(f"rebuild all: archive gs://{settings.storage.archive_bucket}/"
        f"{settings.archive_prefix} window [{args.since or '-inf'}, {args.until or '+inf'}), "
        f"keyspace {settings.cql.keyspace}, redis prefix {settings.redis.key_prefix}"
        + (" (dry run)" if args.dry_run else ""))
    if args.no_gate:
        say("quality gate skipped (--no-gate)")
    elif not quality_gate(settings, list(settings.kafka.event_topics), args.since,
                          args.until, quarantine=args.quarantine):
        return 1
    gate_done = time.monotonic()
    fanout_parts = part_list(settings, ("uploads", "follows"), args.since, args.until)
    counter_parts = part_list(settings, ("uploads", "follows", "engagements"), args.since,
                              args.until)
    say(f"{len(fanout_parts):,} archive part(s) for timelines, {len(counter_parts):,} "
        "for counters")
    options = pipeline_options(parsed.beam_args)
    settings_json = settings.model_dump_json()
    pipeline = beam.Pipeline(options=options)
    rebuild_timelines.build(
        pipeline, fanout_parts, settings_json,
        rebuild_timelines.job_settings(parsed, workers=rebuild_timelines.worker_count(options)),
        label="Timelines")
    rebuild_counters.build(pipeline, counter_parts, settings_json,
                           rebuild_counters.job_settings(parsed), label="Counters")
    result = pipeline.run()
    result.wait_until_finish()
    finished = time.monotonic()
    print_metrics(result)
    say(f"rebuild all done: gate {gate_done - started:.1f} s, pipeline "
        f"{finished - gate_done:.1f} s, total {finished - started:.1f} s"
        + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0
