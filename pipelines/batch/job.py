"""The one ``run`` of every rebuild job: flags, the quality gate, the pipeline, the report.

A job module declares what is its own in a ``RebuildJob`` (its extra flags, the topics it
reads, its graph) and hands its ``run(argv)`` to ``run_job``:

    parse flags ─▶ quality gate over the job's topics (unless --no-gate) ─▶ list the
    archive parts ─▶ read them (``ReadArchive``) ─▶ the job's own graph from the parts
    read to the stores ─▶ run ─▶ metrics and timings
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import apache_beam as beam

from feedline.settings import BatchSettings
from pipelines.batch.options import (
    RebuildOptions,
    job_parser,
    parse_job_args,
    pipeline_options,
    worker_count,
)
from pipelines.batch.report import PipelineProgress, print_metrics, say
from pipelines.batch.transforms import CountSteps, PartName, ReadArchive


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


def part_list(settings: BatchSettings, roles: Sequence[str], since: datetime | None,
              until: datetime | None) -> list[PartName]:
    """(role, object name) of every archive part to read."""
    from feedline.archive.store import Archive
    from feedline.rebuild.source import list_parts

    archive = Archive.open(settings.storage, settings.archive_prefix)
    topic_roles = {t: r for t, r in settings.kafka.topic_roles().items() if r in roles}
    return [(p.role, p.object_name) for p in list_parts(archive, topic_roles, since, until)]


def no_flags(_parser: argparse.ArgumentParser) -> None:
    """A job with only the flags every job takes."""


#: Builds a job's own graph: from the archive parts read (``(role, object name, lines)``,
#: a ``PCollection``) to the stores.
GraphBuilder = Callable[[Any, RebuildOptions], None]


@dataclass(frozen=True)
class RebuildJob:
    """What tells one rebuild job from another; ``run_job`` does the rest."""

    name: str
    """What it rebuilds (``timelines``): its progress lines and bar say ``rebuild NAME``."""
    description: str | None
    """Its ``--help`` text (the module's docstring)."""
    roles: tuple[str, ...]
    """The topic roles it reads (``uploads``, ...): the gate checks them, the job reads them."""
    build: GraphBuilder
    """Its graph from the parts read."""
    steps_per_shard: int
    """Progress steps it counts per shard (a step is also counted per archive part read)."""
    add_flags: Callable[[argparse.ArgumentParser], None] = no_flags
    """Adds its own flags to the common ones."""
    everyone: str = ""
    """What its opening line says when no --users narrows it."""


def read_archive(pipeline: beam.Pipeline, parts: list[PartName],
                 options: RebuildOptions) -> Any:
    """The first steps of every job: the listed parts read, a progress step each."""
    read = (
        pipeline
        | "ListedParts" >> beam.Create(parts)
        | "ReadArchive" >> ReadArchive(options)
    )
    _ = read | "PartsRead" >> CountSteps(options.progress_file)
    return read


def job_gate(job: RebuildJob, settings: BatchSettings, args: Any) -> bool:
    """The quality gate over the job's topics (skipped with ``--no-gate``): True to go on."""
    if args.no_gate:
        say("quality gate skipped (--no-gate)")
        return True
    topics = [t for t, role in settings.kafka.topic_roles().items() if role in job.roles]
    return quality_gate(settings, topics, args.since, args.until, quarantine=args.quarantine)


def run_job(job: RebuildJob, argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the gate, run the pipeline; returns the exit code."""
    parser = job_parser(f"rebuild_{job.name}", job.description)
    job.add_flags(parser)
    parsed = parse_job_args(parser, argv)
    settings, args = parsed.settings, parsed.args
    started = time.monotonic()
    say(f"rebuild {job.name}: archive gs://{settings.storage.archive_bucket}/"
        f"{settings.archive_prefix} window [{args.since or '-inf'}, {args.until or '+inf'}), "
        f"keyspace {settings.cql.keyspace}, redis prefix {settings.redis.key_prefix}"
        + (f", {len(parsed.users):,} user(s)" if parsed.users is not None else job.everyone)
        + (" (dry run)" if args.dry_run else ""))
    if not job_gate(job, settings, args):
        return 1
    gate_done = time.monotonic()
    parts = part_list(settings, job.roles, args.since, args.until)
    say(f"{len(parts):,} archive part(s) to read")
    beam_options = pipeline_options(parsed.beam_args)
    steps = len(parts) + job.steps_per_shard * args.shards
    with PipelineProgress(f"rebuild {job.name}", steps, beam_options) as progress_file:
        options = RebuildOptions.from_job_args(parsed, workers=worker_count(beam_options),
                                               progress_file=progress_file)
        pipeline = beam.Pipeline(options=beam_options)
        job.build(read_archive(pipeline, parts, options), options)
        result = pipeline.run()
        result.wait_until_finish()
    finished = time.monotonic()
    print_metrics(result)
    say(f"rebuild {job.name} done: gate {gate_done - started:.1f} s, pipeline "
        f"{finished - gate_done:.1f} s, total {finished - started:.1f} s"
        + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0
