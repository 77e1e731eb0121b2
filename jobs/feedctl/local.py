"""feedctl local — the process-based local stack (no Docker): up, down, status, logs."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from feedline.cli import iso_time, progress_bar, write_line
from feedline.settings import get_stack_settings
from jobs.feedctl.errors import Failed, UsageError
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
    _register_logs(verbs)


LOGS_HELP = """\
Every service's log, merged in time order, one entry a line. The Python services log JSON
lines; the others' formats (Flink, Kafka, Cassandra, Redis, Prometheus) are normalised
into the same fields: ts (UTC), level, service, logger, msg, and request_id / event_id /
media_id when known.

Follow one event: `feedctl local logs --grep REQUEST_OR_EVENT_ID` (a request id also
brings in the event id its write produced).

exit codes: 0 done (or Ctrl-C while following); 2 unknown service or bad flag."""


def _since(text: str) -> datetime:
    """``--since``: an ISO-8601 time with a timezone, or a duration ago (15m, 2h, 1d)."""
    relative = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if relative:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[relative[2]]
        return datetime.now(UTC) - timedelta(**{unit: float(relative[1])})
    try:
        return iso_time(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (or a duration such as 15m, 2h)") from None


def _register_logs(verbs: Any) -> None:
    logs = verbs.add_parser("logs", help="every service's log (JSON or text), merged in time "
                            "order; filter by service and id; -f follows",
                            description=LOGS_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    logs.add_argument("services", nargs="*", metavar="SERVICE",
                      help="only these services (default: all; names as `local status`)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines as they are written (Ctrl-C ends)")
    logs.add_argument("--since", type=_since, metavar="T",
                      help="only entries from T on: ISO-8601 with a timezone, or 15m, 2h, "
                      "1d ago (also reads the rotated files written since)")
    logs.add_argument("--tail", type=int, metavar="N",
                      help="start from the last N lines of each file")
    logs.add_argument("--grep", action="append", default=[], metavar="ID",
                      help="only entries mentioning ID (a request, event or media id; "
                      "repeatable)")
    form = logs.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON object a line")
    form.add_argument("--text", action="store_false", dest="json",
                      help="aligned text (the default)")
    logs.set_defaults(run=_logs)


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
            print(f"{'supervisor':<20} {'running':<10} pid {supervisor.pid:<8} "
                  "restarts crashed services")
        elif supervisor.pid:
            print(f"{'supervisor':<20} {'starting':<10} pid {supervisor.pid:<8} "
                  "no look at the services yet")
        else:
            print(f"{'supervisor':<20} {'stopped':<10} pid {'-':<8} crashed services are NOT "
                  "restarted (`feedctl local up` starts it)")
    return 0 if healthy else 1


def _logs(args: argparse.Namespace) -> int:
    from jobs.localstack import logs

    settings = get_stack_settings()
    known = logs.service_names(settings)
    unknown = [name for name in args.services if name not in known]
    if unknown:
        raise UsageError(f"unknown service {unknown[0]!r}; the services are {', '.join(known)}")
    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail needs 0 or more lines")
    services = args.services or known
    state_dir = settings.local.state_dir
    keep = logs.IdFilter(args.grep) if args.grep else (lambda _entry: True)
    readers = logs.readers_for(state_dir, services, tail=args.tail)
    render = (lambda e: e.json_line()) if args.json else (lambda e: e.text_line())
    out = sys.stdout
    for entry in logs.history(readers, state_dir, services, args.since, keep):
        out.write(render(entry) + "\n")
    out.flush()
    if not args.follow:
        return 0

    def emit(entry: Any) -> None:
        if args.since is None or entry.ts >= args.since:
            out.write(render(entry) + "\n")
            out.flush()

    try:
        logs.Follower(readers, state_dir, services, keep).run(emit)
    except KeyboardInterrupt:
        return 0
    return 0
