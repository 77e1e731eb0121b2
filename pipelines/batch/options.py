"""The rebuild jobs' flags, and the options their transforms are built with.

A job's flags are parsed once, on the machine that launches it (``parse_job_args``); what
the transforms need of them is one frozen ``RebuildOptions``, plain picklable values that
the runner copies to every worker. Unknown flags are Beam pipeline options
(``pipeline_options``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from feedline.cli import iso_time
from feedline.rules.fanout import RulesConfig
from feedline.settings import BatchSettings, get_batch_settings


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
                        "(`feedctl rebuild all` runs it once for every job)")
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


def worker_count(options: PipelineOptions) -> int:
    """How many workers share the writes (for the per-worker rate).

    The DirectRunner's processes, or a portable runner's parallelism (``--runner flink``).
    """
    values = options.get_all_options()
    if str(options.view_as(StandardOptions).runner).endswith("PortableRunner"):
        return max(1, int(values.get("parallelism") or 1))
    return int(values.get("direct_num_workers") or 1)


@dataclass(frozen=True)
class RebuildOptions:
    """What the transforms of a rebuild job are built with.

    The derive steps need only ``rules`` and ``shards`` (and the window and users that
    narrow them); the archive read and the sinks also need ``settings_json``, the job's
    ``BatchSettings`` as JSON, which each worker parses back when it connects.
    """

    rules: RulesConfig
    """The feed rules' knobs, from the settings' ``feed`` block."""
    shards: int = 16
    """Key groups the work is split into."""
    settings_json: str = ""
    """The stores and the archive (``BatchSettings`` as JSON)."""
    since: datetime | None = None
    """First event time taken (inclusive); None: unbounded."""
    until: datetime | None = None
    """End of the window (exclusive); None: unbounded."""
    users: frozenset[str] | None = None
    """Write (or compare) only these users' timelines and user counters; None: everyone."""
    dry_run: bool = False
    """Compare with the stores and report; write nothing."""
    all_tables: bool = False
    """Timelines job: also rewrite posts, user_posts, followers and following."""
    rate: float | None = None
    """Timelines job: at most this many timelines written per second, all workers together."""
    checkpoint: str | None = None
    """Timelines job: file of users done, appended as written and skipped on a rerun."""
    workers: int = 1
    """Worker processes sharing the writes (``rate`` is split between them)."""
    write_time_us: int = 0
    """The one write time (µs) of every replacement the job writes."""
    progress_file: str | None = None
    """File the progress steps append a byte to (``report.PipelineProgress``); None: no bar."""

    @classmethod
    def from_job_args(cls, parsed: JobArgs, *, workers: int,
                      progress_file: str | None) -> RebuildOptions:
        """The options of a job run from its parsed flags, written now."""
        from feedline.rebuild.writer import rebuild_write_time

        args = parsed.args
        return cls(rules=RulesConfig.from_settings(parsed.settings.feed), shards=args.shards,
                   settings_json=parsed.settings.model_dump_json(), since=args.since,
                   until=args.until, users=parsed.users, dry_run=args.dry_run,
                   all_tables=getattr(args, "all_tables", False),
                   rate=getattr(args, "rate", None), checkpoint=getattr(args, "checkpoint", None),
                   workers=workers, write_time_us=rebuild_write_time(),
                   progress_file=progress_file)

    def settings(self) -> BatchSettings:
        """The job's settings (parsed again: call it once, in a DoFn's ``setup``)."""
        return BatchSettings.model_validate_json(self.settings_json)
