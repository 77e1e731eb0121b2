"""feedctl jobs — the streaming jobs on Flink: deploy, list, cancel, savepoint, and more.

From their spec files (jobs/specs/*.yaml): plan, apply, upgrade, rollback, history; `new`
scaffolds a job. Jobs: fanout (uploads + follows -> timelines), counters (engagements -> counters),
notifications (likes, comments, follows, mentions -> each recipient's groups).
Settings (endpoints, topics, knobs) come from FEEDLINE_* at deploy time.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from feedline.settings import get_stack_settings, get_streaming_settings
from jobs import flink_rest, keeper
from jobs.deploy import DeployError, deploy
from jobs.feedctl import deps, job_specs
from jobs.feedctl.errors import UsageError
from jobs.feedctl.output import add_json_flag, print_json
from jobs.flink_submit import savepoint_target
from jobs.lag import group_lag
from jobs.specs import JOBS, SPEC_ERRORS


def register(nouns: Any) -> None:
    """Add `jobs` and its verbs."""
    parser = nouns.add_parser("jobs", help="deploy and manage the streaming jobs",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    dep = verbs.add_parser("deploy", help="submit a job (waits until its tasks run)")
    dep.add_argument("name", choices=[*sorted(JOBS), "all"])
    dep.add_argument("--from-savepoint", metavar="PATH", help="restore state from a savepoint")
    dep.add_argument("--dry-run", action="store_true", help="show what would be submitted")
    dep.add_argument("--if-not-running", action="store_true",
                     help="leave a job that already runs alone (exit 0)")
    dep.set_defaults(run=_deploy)
    wait = verbs.add_parser("wait", help="wait until the jobs have consumed every event")
    wait.add_argument("--timeout", type=float, default=600, help="seconds (exit 1 after)")
    wait.set_defaults(run=_wait)
    lst = verbs.add_parser("list", help="jobs on the cluster")
    lst.add_argument("--all", action="store_true", help="include ended jobs")
    add_json_flag(lst)
    lst.set_defaults(run=_list)
    can = verbs.add_parser("cancel", help="stop a running job")
    can.add_argument("name", choices=sorted(JOBS))
    can.add_argument("--savepoint", action="store_true",
                     help="stop with a savepoint (prints its path) instead of cancelling")
    can.add_argument("--dry-run", action="store_true", help="show what would be stopped")
    can.set_defaults(run=_cancel)
    sav = verbs.add_parser("savepoint", help="take a savepoint of a running job")
    sav.add_argument("name", choices=sorted(JOBS))
    sav.set_defaults(run=_savepoint)
    res = verbs.add_parser(
        "resume", help="start again, from their newest checkpoints, the deployed jobs the "
        "cluster lost (a JobManager restart does this by itself)")
    res.add_argument("--dry-run", action="store_true", help="show what would be resumed")
    add_json_flag(res)
    res.set_defaults(run=_resume)
    job_specs.register(verbs)


def _deploy(args: argparse.Namespace) -> int:
    if SPEC_ERRORS:  # a job whose spec is invalid would be left out of `all`
        raise UsageError(SPEC_ERRORS[0])
    stack, streaming = get_stack_settings(), get_streaming_settings()
    names = sorted(JOBS) if args.name == "all" else [args.name]
    if not args.dry_run:
        deps.require(deps.flink(stack.flink))
    for name in names:
        spec = JOBS[name]
        if args.dry_run:
            print(f"would submit {spec.job_name()} ({spec.script.name}) to {stack.flink.rest_url}"
                  f" group {spec.group_id()}" +
                  (f" from {args.from_savepoint}" if args.from_savepoint else ""))
            continue
        if args.if_not_running and flink_rest.running(stack.flink.rest_url, spec.job_name()):
            print(f"{spec.job_name()} already running")
            continue
        print(f"deploying {spec.job_name()} ...", flush=True)
        try:
            job_id = deploy(stack, streaming, name, from_savepoint=args.from_savepoint, keep=True)
        except flink_rest.FlinkUnreachable:
            raise
        except (DeployError, flink_rest.FlinkRestError) as err:
            print(f"feedctl jobs deploy: {err}", file=sys.stderr)
            return 1
        print(f"{spec.job_name()} running as {job_id}")
    return 0


def _wait(args: argparse.Namespace) -> int:
    streaming = get_streaming_settings()
    kafka = streaming.kafka
    deps.require(deps.kafka(kafka))
    topics = {name: spec.topics(kafka) for name, spec in sorted(JOBS.items())}
    deadline = time.monotonic() + args.timeout
    live = sys.stdout.isatty()  # one line redrawn on a terminal; a line per 10 s in a log
    last_line = 0.0
    while True:
        lags = {name: group_lag(kafka, JOBS[name].group_id(), t) for name, t in topics.items()}
        line = "  ".join(f"{n} lag {lag:>8,}" for n, lag in lags.items())
        done = not any(lags.values())
        if live:
            print("\r" + line, end="", flush=True)
        elif done or time.monotonic() - last_line >= 10:
            print(line, flush=True)
            last_line = time.monotonic()
        if done:
            print("\nall events consumed" if live else "all events consumed")
            return 0
        if time.monotonic() > deadline:
            print(("\n" if live else "") +
                  f"feedctl jobs wait: still behind after {args.timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(1)


def _list(args: argparse.Namespace) -> int:
    settings = get_stack_settings().flink
    deps.require(deps.flink(settings))
    jobs = [job for job in flink_rest.list_jobs(settings.rest_url)
            if args.all or job.state not in flink_rest.TERMINAL]
    if args.json:
        print_json({"rest_url": settings.rest_url, "jobs": [
            {"job_id": job.job_id, "name": job.name, "state": job.state,
             "start_time_ms": job.start_time_ms} for job in jobs]})
        return 0
    for job in jobs:
        print(f"{job.job_id}  {job.state:<10} {job.name}")
    return 0


def _one_running(name: str) -> flink_rest.JobInfo | None:
    settings = get_stack_settings().flink
    deps.require(deps.flink(settings))
    jobs = flink_rest.running(settings.rest_url, JOBS[name].job_name())
    if not jobs:
        print(f"{JOBS[name].job_name()} is not running", file=sys.stderr)
        return None
    return jobs[0]


def _cancel(args: argparse.Namespace) -> int:
    stack = get_stack_settings()
    job = _one_running(args.name)
    if job is None:
        return 1
    if args.dry_run:
        how = "stop with a savepoint" if args.savepoint else "cancel"
        print(f"would {how} {job.name} ({job.job_id})")
        return 0
    if args.savepoint:
        target = savepoint_target(stack)
        print(flink_rest.stop_with_savepoint(stack.flink.rest_url, job.job_id, target))
    else:
        flink_rest.cancel(stack.flink.rest_url, job.job_id)
        print(f"cancelled {job.name} ({job.job_id})")
    keeper.forget(stack, job.name)  # stopped on purpose: not to be resumed
    return 0


def _savepoint(args: argparse.Namespace) -> int:
    stack = get_stack_settings()
    job = _one_running(args.name)
    if job is None:
        return 1
    target = savepoint_target(stack)
    print(flink_rest.savepoint(stack.flink.rest_url, job.job_id, target))
    return 0


def _resume(args: argparse.Namespace) -> int:
    stack = get_stack_settings()
    deps.require(deps.flink(stack.flink))
    messages: list[str] = []
    resumed = keeper.resume_lost(stack, messages.append if args.json else print,
                                 dry_run=args.dry_run)
    still_lost = [] if args.dry_run else [job.job_name for job in keeper.lost(stack)]
    if args.json:
        print_json({"dry_run": args.dry_run, "resumed": resumed, "still_lost": still_lost,
                    "messages": messages})
    elif not resumed and not still_lost:
        print("every deployed job is running")
    return 1 if still_lost else 0
