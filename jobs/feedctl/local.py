"""feedctl local — the process-based local stack (no Docker): up, down, status."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from feedline.settings import get_stack_settings
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
    st.set_defaults(run=_status)


def _up(_args: argparse.Namespace) -> int:
    try:
        stack.up(get_stack_settings(), say=_say)
    except stack.StackError as err:
        print(f"feedctl local up: {err}", file=sys.stderr)
        return 1
    return _status(_args)


def _down(args: argparse.Namespace) -> int:
    settings = get_stack_settings()
    if args.dry_run:
        for svc in stack.status(settings):
            if svc.pid:
                print(f"would stop {svc.name} (pid {svc.pid})")
        return 0
    stack.down(settings, say=_say)
    return 0


def _status(_args: argparse.Namespace) -> int:
    rows = stack.status(get_stack_settings())
    for row in rows:
        print(row.line())
    return 0 if all(r.healthy for r in rows) else 1


def _say(message: str) -> None:
    print(message, flush=True)
