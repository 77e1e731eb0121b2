"""feedctl jobs plan/apply/upgrade/rollback/history/new — jobs from their spec files.

A JOB argument is a job name (its spec is ``jobs/specs/NAME.yaml``) or the path of a spec
file. ``plan`` exits 0 when the change can be applied and 1 when it cannot (the state's
operator uids missing from the new version, too few task slots); ``apply``/``upgrade``/
``rollback`` exit 1 when they refuse or fail, 2 for an invalid spec, 3 when Flink is down.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from feedline.settings import get_stack_settings, get_streaming_settings
from jobs import history, rollout
from jobs.feedctl import deps
from jobs.feedctl.errors import Failed, UsageError
from jobs.feedctl.output import add_json_flag, print_json
from jobs.plan import Plan, make_plan
from jobs.releases import code_version
from jobs.scaffold import ScaffoldError, scaffold
from jobs.spec_model import SpecError, is_spec_path
from jobs.specs import ALL_SPECS, JOBS, SPEC_DIR, SPEC_ERRORS, JobSpec, read_spec


def register(verbs: Any) -> None:
    """Add the spec-driven verbs to `feedctl jobs`."""
    plan = verbs.add_parser("plan", help="what `jobs apply` would change, and whether the "
                            "running job's state carries over (exit 1: it would not)")
    plan.add_argument("jobs", nargs="*", metavar="JOB", help="names or spec files "
                      "(default: every streaming job)")
    plan.add_argument("--from-savepoint", metavar="PATH",
                      help="check a savepoint a job that does not run would start from")
    _isolated(plan)
    add_json_flag(plan)
    plan.set_defaults(run=_plan)
    for verb, text in (("apply", "make a job run as its spec says: start it, or upgrade it "
                        "when its version, parallelism, flags or entry point differ"),
                       ("upgrade", "replace a running job by its spec's version (as its "
                        "upgrade_mode says) and record it")):
        parser = verbs.add_parser(verb, help=text, description=text)
        parser.add_argument("job", metavar="JOB", help="a name or a spec file")
        if verb == "apply":
            parser.add_argument("--from-savepoint", metavar="PATH",
                                help="start a job that does not run from this savepoint")
        parser.add_argument("--dry-run", action="store_true", help="print the plan only")
        _isolated(parser)
        add_json_flag(parser)
        parser.set_defaults(run=_apply)
    back = verbs.add_parser("rollback", help="start the previous deployment's version and "
                            "spec again, from the savepoint it was stopped with")
    back.add_argument("job", metavar="NAME")
    back.add_argument("--dry-run", action="store_true", help="say what it would deploy")
    _isolated(back)
    add_json_flag(back)
    back.set_defaults(run=_rollback)
    hist = verbs.add_parser("history", help="the recorded deployments of a job, oldest first")
    hist.add_argument("job", metavar="NAME")
    _isolated(hist)
    add_json_flag(hist)
    hist.set_defaults(run=_history)
    new = verbs.add_parser("new", help="scaffold a streaming job: module, spec, unit test "
                           "and integration twin")
    new.add_argument("name", metavar="NAME", help="lower_case job name")
    new.add_argument("--reads", default="uploads,engagements",
                     help="comma-separated topic roles (uploads, follows, engagements)")
    new.add_argument("--root", type=Path, default=None,
                     help="the checkout to write into (default: this one)")
    new.add_argument("--dry-run", action="store_true", help="list the files it would write")
    new.set_defaults(run=_new)


def _isolated(parser: argparse.ArgumentParser) -> None:
    # The job-name suffix of an isolated copy (the tests' sandboxes); not for people.
    parser.add_argument("--suffix", default="", help=argparse.SUPPRESS)


def _specs_valid() -> None:
    """Refuse to work while a spec of ``jobs/specs/`` is invalid (its job would be missed)."""
    if SPEC_ERRORS:
        more = f" (and {len(SPEC_ERRORS) - 1} more)" if len(SPEC_ERRORS) > 1 else ""
        raise UsageError(SPEC_ERRORS[0] + more)


def _spec(target: str) -> JobSpec:
    _specs_valid()
    try:
        if is_spec_path(target):
            return read_spec(Path(target))
    except SpecError as err:
        raise UsageError(str(err)) from None
    if target in ALL_SPECS:
        return ALL_SPECS[target]
    raise UsageError(f"no job {target!r}: one of {', '.join(sorted(ALL_SPECS))}, or a spec "
                     f"file path (the specs are in {SPEC_DIR})")


def _show_plan(plan: Plan, version: str) -> None:
    running = f"running as {plan.running_job_id}" if plan.running_job_id else "not running"
    action = "in sync with its spec" if plan.action == "none" else f"would {plan.action}"
    print(f"{plan.job_name}: {running}; {action} (version {version})")
    for change in plan.changes:
        print(f"  {change.field:<12} {_shown(change.current)} -> {_shown(change.desired)}")
    if plan.state_from:
        print(f"  state from   {plan.state_from}")
    if plan.saved_uids is not None:
        verdict = "compatible" if plan.compatible else "INCOMPATIBLE"
        held = [uid for uid in plan.saved_uids if uid not in plan.stateless_uids]
        print(f"  state uids   {', '.join(held) or '(none)'} -> {verdict}")
    for note in plan.notes:
        print(f"  note: {note}")
    for problem in plan.problems:
        print(f"  PROBLEM: {problem}")


def _shown(value: object) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) or "(none)"
    return str(value)


def _plan(args: argparse.Namespace) -> int:
    _specs_valid()
    specs = [_spec(target) for target in args.jobs] or list(JOBS.values())
    batch = [spec.name for spec in specs if spec.kind != "streaming"]
    if batch:
        raise UsageError(f"{', '.join(batch)}: batch jobs are run with `feedctl rebuild`, "
                         "not planned")
    stack = get_stack_settings()
    deps.require(deps.flink(stack.flink))
    version = code_version()
    plans = [make_plan(stack, spec, version, args.suffix, args.from_savepoint)
             for spec in specs]
    if args.json:
        print_json({"version": version, "plans": [plan.to_json() for plan in plans]})
    else:
        for plan in plans:
            _show_plan(plan, version)
    return 1 if any(plan.problems for plan in plans) else 0


def _apply(args: argparse.Namespace) -> int:
    spec = _spec(args.job)
    stack, streaming = get_stack_settings(), get_streaming_settings()
    deps.require(deps.flink(stack.flink))
    say = (lambda _line: None) if args.json else print
    try:
        outcome = rollout.apply(stack, streaming, spec, suffix=args.suffix,
                                from_savepoint=getattr(args, "from_savepoint", None),
                                require_running=args.verb == "upgrade", dry_run=args.dry_run,
                                say=say)
    except rollout.RolloutError as err:
        raise Failed(str(err)) from None
    if args.json:
        print_json({"dry_run": args.dry_run, "plan": outcome.plan.to_json(),
                    "deployed": asdict(outcome.record) if outcome.record else None})
    elif outcome.record is None:
        _show_plan(outcome.plan, code_version())
        if outcome.plan.action == "none":
            print(f"{outcome.plan.job_name} already runs as its spec says")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    _specs_valid()
    stack, streaming = get_stack_settings(), get_streaming_settings()
    deps.require(deps.flink(stack.flink))
    say = (lambda _line: None) if args.json else print
    try:
        plan = rollout.rollback(stack, streaming, args.job, suffix=args.suffix,
                                dry_run=args.dry_run, say=say)
    except rollout.RolloutError as err:
        raise Failed(str(err)) from None
    except (OSError, ValueError) as err:
        raise Failed(f"cannot read the savepoint to roll back from: {err}") from None
    if args.json:
        print_json({"dry_run": args.dry_run, **plan.to_json()})
    elif args.dry_run:
        print(f"would stop {plan.job_name} (revision {plan.current.revision}, version "
              f"{plan.current.version}) and start revision {plan.target.revision} (version "
              f"{plan.target.version}) from {plan.start_from or 'a fresh savepoint'}")
    return 0


def _history(args: argparse.Namespace) -> int:
    stack = get_stack_settings()
    job_name = f"feedline-{args.job}{args.suffix}"
    records = history.read(stack, job_name)
    if args.json:
        print_json({"job_name": job_name, "deployments": [asdict(r) for r in records]})
        return 0
    if not records:
        print(f"{job_name}: no deployments recorded (`feedctl jobs apply {args.job}`)")
    for r in records:
        print(f"{r.revision:>3}  {r.at}  {r.action:<8} {r.version}  p={r.parallelism}  "
              f"{r.job_id}  from {r.started_from or 'empty state'}  by {r.by}")
    return 0


def _new(args: argparse.Namespace) -> int:
    reads = [role.strip() for role in args.reads.split(",") if role.strip()]
    try:
        written = scaffold(args.name, reads, args.root, dry_run=args.dry_run)
    except ScaffoldError as err:
        raise UsageError(str(err)) from None
    for path in written:
        print(("would write " if args.dry_run else "wrote ") + str(path))
    if not args.dry_run:
        print(f"next: edit the module, run its unit test, then `feedctl jobs plan {args.name}`"
              " and `feedctl jobs apply` (docs/JOBS.md)")
    return 0
