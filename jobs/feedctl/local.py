"""feedctl local — the process-based local stack (no Docker): up, down, status."""

from __future__ import annotations

import argparse
from typing import Any

from feedline.cli import progress_bar, write_line
from feedline.settings import get_stack_settings
from jobs.feedctl.errors import Failed
from jobs.feedctl.output import add_json_flag, print_json
from jobs.localstack import stack
from jobs.localstack.supervise import SupervisorService


def register(nouns: Any) -> None:
    """Add `local` and its verbs."""
    parser = nouns.add_parser("local", help="start, stop and inspect the local stack",
                              description=__doc__)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start every service, wait until healthy, then start the "
                          "supervisor that restarts crashed ones (idempotent)")
    up.set_defaults(run=_up)
    down = verbs.add_parser("down", help="stop the supervisor, then exactly the processes "
                            "`up` started")
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
        for svc in [stack.supervisor_status(settings), *stack.status(settings)]:
            if svc.pid:
                print(f"would stop {svc.name} (pid {svc.pid})")
        return 0
    stack.down(settings, say=write_line)
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = get_stack_settings()
    rows = stack.status(settings)
    supervisor = stack.supervisor_status(settings)
    healthy = all(r.healthy for r in rows)
    if args.json:
        print_json({"healthy": healthy, "services": [
            {"name": r.name, "state": r.state, "healthy": r.healthy, "pid": r.pid,
             "endpoint": r.endpoint, "essential": r.essential,
             "restarts": r.restarts.restarts, "last_restart_at": r.restarts.last_restart_at,
             "last_restart_reason": r.restarts.last_reason} for r in rows],
            "supervisor": {"running": supervisor.healthy, "pid": supervisor.pid,
                           "log": str(SupervisorService(settings).process.log_file)}})
    else:
        for row in rows:
            print(row.line())
        if supervisor.healthy:
            print(f"{'supervisor':<18} {'running':<10} pid {supervisor.pid:<8} "
                  "restarts crashed services")
        elif supervisor.pid:
            print(f"{'supervisor':<18} {'starting':<10} pid {supervisor.pid:<8} "
                  "no look at the services yet")
        else:
            print(f"{'supervisor':<18} {'stopped':<10} pid {'-':<8} crashed services are NOT "
                  "restarted (`feedctl local up` starts it)")
    return 0 if healthy else 1
