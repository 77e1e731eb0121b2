"""feedctl db — the CQL schema: apply versioned migrations, show what is applied."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from feedline.settings import get_stack_settings
from feedline.stores.cql import (
    MigrationError,
    applied_migrations,
    check_keyspace_name,
    connect,
    load_migrations,
    migrate,
)
from jobs.feedctl import deps


def register(nouns: Any) -> None:
    """Add `db` and its verbs."""
    parser = nouns.add_parser("db", help="CQL schema migrations", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    mig = verbs.add_parser("migrate", help="create the keyspace and apply pending migrations")
    mig.add_argument("--keyspace", help="target keyspace (default: settings cql.keyspace)")
    mig.add_argument("--dry-run", action="store_true", help="list pending migrations only")
    mig.set_defaults(run=_migrate)
    st = verbs.add_parser("status", help="applied and pending migrations")
    st.add_argument("--keyspace", help="keyspace (default: settings cql.keyspace)")
    st.set_defaults(run=_status)


def _migrate(args: argparse.Namespace) -> int:
    settings = get_stack_settings().cql
    try:
        check_keyspace_name(args.keyspace or settings.keyspace)
    except ValueError as err:
        print(f"feedctl db migrate: {err}", file=sys.stderr)
        return 2
    deps.require(deps.cql(settings))
    try:
        applied = migrate(settings, keyspace=args.keyspace, dry_run=args.dry_run,
                          progress=lambda m: print(m, flush=True))
    except (MigrationError, ValueError) as err:
        print(f"feedctl db migrate: {err}", file=sys.stderr)
        return 1
    verb = "pending" if args.dry_run else "applied"
    print(f"{len(applied)} migration(s) {verb}; keyspace {args.keyspace or settings.keyspace}")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = get_stack_settings().cql
    try:
        keyspace = check_keyspace_name(args.keyspace or settings.keyspace)
    except ValueError as err:
        print(f"feedctl db status: {err}", file=sys.stderr)
        return 2
    deps.require(deps.cql(settings))
    cluster, session = connect(settings)
    try:
        applied = applied_migrations(session, keyspace)
    finally:
        cluster.shutdown()
    for m in load_migrations():
        state = "applied" if m.version in applied else "pending"
        if m.version in applied and applied[m.version][1] != m.checksum:
            state = "CHANGED"
        print(f"{m.version:04d}_{m.name:<30} {state}")
    return 0 if all(m.version in applied for m in load_migrations()) else 1
