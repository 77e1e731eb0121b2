"""feedctl rebuild — rebuild derived data from the event archive with the Beam jobs.

    feedctl rebuild all         [--since T] [--until T] [--quarantine] [--dry-run] [beam flags]
    feedctl rebuild timelines   [...] [--users U,V | --users-file F] [--all-tables]
    feedctl rebuild counters    [...] [--users U,V | --users-file F]
    feedctl rebuild notifications [...] [--users U,V | --users-file F]

`all` runs the quality gate once over every event topic, then the timelines job, the
counters job and the notifications job: after Redis and the timeline, counter and
notification tables were wiped, it puts back exactly what streaming had built. Every
other flag is the jobs' own (see `python -m pipelines.batch.rebuild_timelines --help`);
unknown flags are Beam pipeline options (`--runner=DataflowRunner --project P --region R`).
`--runner flink` runs the jobs on Beam's Flink runner (an embedded Flink behind Beam's job
server, both local; `make beam-runner` installs them): see pipelines/batch/flink_runner.py.
Exit codes: 0 done, 1 the quality gate or a job failed, 2 usage error, 3 a store
(object storage, the CQL store, Redis) is unreachable.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from feedline.settings import get_batch_settings
from jobs.feedctl import deps
from jobs.feedctl.errors import UsageError

if TYPE_CHECKING:
    from feedline.settings import BeamFlinkSettings


def register(nouns: Any) -> None:
    """Add `rebuild`."""
    parser = nouns.add_parser("rebuild", description=__doc__, add_help=False,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              help="rebuild timelines, counters and notifications from the archive")
    parser.add_argument("job", nargs="?", choices=["all", "timelines", "counters",
                                                      "notifications"])
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    parser.add_argument("rest", nargs=argparse.REMAINDER,
                        help="the job's flags and Beam pipeline options")
    parser.set_defaults(run=lambda args: _rebuild(args, parser))


def _rebuild(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    rest: list[str] = list(args.rest)
    if args.job is None:
        parser.print_help()
        return 0 if args.help else 2
    if args.help:
        rest.append("--help")
    elif args.job != "all":
        from pipelines.batch.options import job_parser

        # Usage errors (exit 2) before the stores are probed (exit 3).
        job_parser(f"feedctl rebuild {args.job}", None).parse_known_args(rest)
        require_stores(rest)
    try:
        if args.job == "all":
            return rebuild_all(rest)
        if args.help or not on_flink(rest):
            return job_module(args.job).run(rest)
        return rebuild_job(args.job, rest)
    except ValueError as err:
        if "validations errors" in str(err):  # Beam refused the pipeline options
            raise UsageError(f"Beam pipeline options: {err}") from err
        raise


def _flag(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` in ``argv`` (the last one), or None."""
    value = None
    for n, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        elif arg == name and n + 1 < len(argv):
            value = argv[n + 1]
    return value


def require_stores(argv: Sequence[str]) -> None:
    """Fail fast (exit 3) when a store the job uses from this machine is down.

    The archive is read here by the quality gate and the part listing; the CQL store and
    Redis are written from here with the DirectRunner and the local Flink runner (a
    remote runner's workers connect
    from elsewhere, so they are not probed then). Endpoints come from --settings-json
    when it is given, as the job's do.
    """
    from pydantic import ValidationError

    from feedline.settings import BatchSettings

    text = _flag(argv, "--settings-json")
    try:
        settings = BatchSettings.model_validate_json(text) if text else get_batch_settings()
    except ValidationError:
        return  # the job reports it
    needed = [deps.storage(settings.storage)]
    runner = _flag(argv, "--runner")
    if runner is None or runner.endswith("DirectRunner") or on_flink(argv):
        needed += [deps.cql(settings.cql), deps.redis(settings.redis)]
    deps.require(*needed)


def rebuild_all(rest: list[str]) -> int:
    """Gate once over every topic, then the timelines, counters and notifications jobs.

    Pipelines one after the other: the timelines and counters graphs in one DirectRunner
    pipeline measured slower (pipeline 94-99 s against 61-66 s for the two, same workload,
    same machine).
    """
    from pipelines.batch import rebuild_counters, rebuild_notifications, rebuild_timelines
    from pipelines.batch.job import quality_gate
    from pipelines.batch.options import job_parser, parse_job_args
    from pipelines.batch.report import say

    if any(a.startswith(("--users", "--all-tables", "--rate", "--checkpoint")) for a in rest):
        say("feedctl rebuild all: --users/--all-tables/--rate/--checkpoint belong to "
            "`rebuild timelines`, `rebuild counters`, `rebuild notifications` or `backfill`")
        return 2
    parsed = parse_job_args(job_parser("feedctl rebuild all", __doc__), rest)
    args, settings = parsed.args, parsed.settings
    require_stores(rest)
    if args.no_gate:
        say("quality gate skipped (--no-gate)")
    elif not quality_gate(settings, list(settings.kafka.event_topics), args.since,
                          args.until, quarantine=args.quarantine):
        return 1
    rest = [a for a in rest if a not in ("--quarantine", "--no-gate")] + ["--no-gate"]
    if on_flink(rest):
        return run_on_flink(["timelines", "counters", "notifications"], rest,
                            settings.beam_flink)
    for job in (rebuild_timelines, rebuild_counters, rebuild_notifications):
        code = job.run(rest)
        if code != 0:
            return code
    return 0


def job_module(name: str) -> Any:
    """The rebuild job's module (``timelines``, ``counters``, ``notifications``)."""
    from pipelines.batch import rebuild_counters, rebuild_notifications, rebuild_timelines

    return {"timelines": rebuild_timelines, "counters": rebuild_counters,
            "notifications": rebuild_notifications}[name]


def on_flink(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for the local Flink runner (``--runner flink``)."""
    from pipelines.batch.flink_runner import FLINK_RUNNER

    return _flag(argv, "--runner") == FLINK_RUNNER


def rebuild_job(name: str, rest: list[str]) -> int:
    """One job on the Flink runner: the quality gate here, then the pipeline."""
    from pipelines.batch.job import job_gate
    from pipelines.batch.options import job_parser, parse_job_args

    job = job_module(name).JOB
    parser = job_parser(f"feedctl rebuild {name}", None)
    job.add_flags(parser)
    parsed = parse_job_args(parser, rest)
    if not job_gate(job, parsed.settings, parsed.args):
        return 1
    rest = [a for a in rest if a not in ("--quarantine", "--no-gate")]
    return run_on_flink([name], rest, parsed.settings.beam_flink)


def run_on_flink(names: Sequence[str], rest: list[str], settings: BeamFlinkSettings) -> int:
    """The named jobs one after the other on one Beam Flink job server (started here)."""
    from pipelines.batch import flink_runner
    from pipelines.batch.report import say

    started = time.monotonic()
    try:
        server = flink_runner.JobServer(settings)
        with server:
            say(f"Beam Flink job server on {server.endpoint} (embedded Flink, parallelism "
                f"{settings.parallelism}) up in {time.monotonic() - started:.1f} s")
            for name in names:
                code = flink_runner.run_job(f"pipelines.batch.rebuild_{name}", rest,
                                            settings, server)
                if code != 0:
                    return code
    except flink_runner.BeamRunnerMissing as err:
        raise UsageError(str(err)) from err
    return 0
