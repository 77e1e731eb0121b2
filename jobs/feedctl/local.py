"""feedctl local — the process-based local stack (no Docker): up, down, status."""

from __future__ import annotations

import argparse
from typing import Any

from feedline.cli import progress_bar, write_line
from feedline.settings import get_stack_settings
from jobs.feedctl.errors import Failed
from jobs.feedctl.output import add_json_flag, print_json
from jobs.localstack import stack


def register(nouns: Any) -> None:
    """Add `local` and its verbs."""
    parser = nouns.add_parser("local", help="start, stop and inspect the local stack",
                              description=__doc__)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start every service and wait until healthy (idempotent)")
    up.set_defaults(run=_up)
    down = verbs.add_parser("down", help="stop exactly the processes `up` started")
    down.add_argument("--dry-run", action="store_true", help="list what would be stopped")
    down.set_defaults(run=_down)
    st = verbs.add_parser("status", help="health of each service; exit 1 unless all healthy")
    add_json_flag(st)
    st.set_defaults(run=_status)


def _up(_args: argparse.Namespace) -> int:
    settings = get_stack_settings()
    total = len(stack.services(settings))
    with progress_bar("stack up", total, "service", leave=False) as bar:
        try:
            stack.up(settings, say=write_line, on_ready=lambda name: bar.update())
        except stack.StackError as err:
            # The first line names the service and its log; the rest is the log's tail.
            raise Failed(str(err).splitlines()[0].rstrip(":")) from err
    return _status(argparse.Namespace(json=False))


def _down(args: argparse.Namespace) -> int:
    settings = get_stack_settings()
    if args.dry_run:
        for svc in stack.status(settings):
            if svc.pid:
                print(f"would stop {svc.name} (pid {svc.pid})")
        return 0
    stack.down(settings, say=write_line)
    return 0


def _status(args: argparse.Namespace) -> int:
    rows = stack.status(get_stack_settings())
    healthy = all(r.healthy for r in rows)
    if args.json:
        print_json({"healthy": healthy, "services": [
            {"name": r.name, "state": _state(r), "healthy": r.healthy, "pid": r.pid,
             "endpoint": r.endpoint, "essential": r.essential} for r in rows]})
    else:
        for row in rows:
            print(row.line())
    return 0 if healthy else 1


def _state(row: stack.ServiceStatus) -> str:
    """The state word of `ServiceStatus.line`: healthy, UNHEALTHY (running) or stopped."""
    return "healthy" if row.healthy else ("UNHEALTHY" if row.pid else "stopped")
