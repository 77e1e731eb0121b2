"""The CQL store (ScyllaDB; Cassandra 5 locally): sessions and versioned migrations.

Migrations are the files ``schemas/cql/NNNN_name.cql``, applied in order inside the
configured keyspace and recorded with a checksum in ``schema_migrations``. Applying is
idempotent: applied versions are skipped, and an applied file whose text changed is an
error (write a new migration instead). DDL runs as simple statements; every data
statement, including the migration bookkeeping, is prepared. A migration is re-run whole
when it was interrupted, so each statement must be idempotent: ``CREATE … IF NOT EXISTS``,
and ``ALTER TYPE t ADD f …`` is skipped when ``t`` has the field already (ScyllaDB has no
``ADD IF NOT EXISTS``).
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)

from feedline.settings import CqlSettings
from schemas.cql_statements import MIGRATION_RECORD, applied_migrations_query

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.cql$")
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_ADD_FIELD = re.compile(r"^ALTER\s+TYPE\s+(\w+)\s+ADD\s+(\w+)\s", re.IGNORECASE)


def security_options(settings: CqlSettings) -> dict[str, Any]:
    """The driver's authentication and TLS options for the settings (none when unset)."""
    options: dict[str, Any] = {}
    if settings.username:
        from cassandra.auth import PlainTextAuthProvider

        options["auth_provider"] = PlainTextAuthProvider(settings.username, settings.password)
    if settings.tls_ca_file:
        import ssl

        # Certificates verified, names checked: against each node's address, or the name set.
        options["ssl_context"] = ssl.create_default_context(cafile=settings.tls_ca_file)
        if settings.tls_server_hostname:
            options["ssl_options"] = {"server_hostname": settings.tls_server_hostname}
    return options


def connect(
    settings: CqlSettings, *, keyspace: str | None = None, timeout_s: float = 10.0,
    as_role: tuple[str, str] | None = None,
) -> tuple[Cluster, Session]:
    """Open a cluster connection (protocol v4) and a session, optionally on a keyspace.

    ``as_role`` (name, password) logs in as another role than the settings' (the local
    stack creates the settings' role as the default superuser).
    """
    if as_role is not None:
        settings = settings.model_copy(update={"username": as_role[0],
                                               "password": as_role[1]})
    security = security_options(settings)
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        request_timeout=max(timeout_s, 10.0),
    )
    cluster = Cluster(
        contact_points=list(settings.contact_points),
        port=settings.port,
        protocol_version=settings.protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=timeout_s,
        control_connection_timeout=timeout_s,
        reconnection_policy=ExponentialReconnectionPolicy(
            base_delay=min(0.5, settings.reconnect_max_delay_s),
            max_delay=settings.reconnect_max_delay_s),
        **security,
    )
    try:
        session = cluster.connect(keyspace)
    except Exception:
        cluster.shutdown()
        raise
    return cluster, session


def execute_all(session: Session, statements: Iterable[tuple[Any, Any]], *,
                concurrency: int = 16) -> list[Any]:
    """Run (statement, parameters) pairs, at most ``concurrency`` in flight; their results.

    The results come in the pairs' order; the first error is raised (requests still in
    flight are left to finish on their own: callers retry whole, idempotent batches).
    Unlike the driver's ``execute_concurrent``, which sends its requests with no client
    timeout, each request has the session profile's ``request_timeout``: a response lost
    to a frozen or half-dead node raises ``OperationTimedOut`` instead of leaving the
    caller waiting for ever (a streaming writer waited so, after a Cassandra freeze, with
    its job running and writing nothing).
    """
    in_flight: deque[Any] = deque()
    results: list[Any] = []
    for statement, parameters in statements:
        if len(in_flight) >= concurrency:
            results.append(in_flight.popleft().result())
        in_flight.append(session.execute_async(statement, parameters))
    while in_flight:
        results.append(in_flight.popleft().result())
    return results


@dataclass(frozen=True)
class Migration:
    """One versioned CQL migration file."""

    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """sha256 of the file text; an applied migration must never change."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self) -> Iterator[str]:
        """The statements of the file, comments stripped."""
        body = "\n".join(
            line for line in self.text.splitlines() if not line.strip().startswith("--")
        )
        for statement in body.split(";"):
            if statement.strip():
                yield statement.strip()


def load_migrations() -> list[Migration]:
    """Every migration shipped in ``schemas/cql``, in version order."""
    found: list[Migration] = []
    for entry in resources.files("schemas").joinpath("cql").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in schemas/cql: {versions}")
    return found


class MigrationError(RuntimeError):
    """The keyspace's recorded migrations disagree with the shipped files."""


def check_keyspace_name(keyspace: str) -> str:
    """Refuse keyspace names that are not plain CQL identifiers."""
    if not _IDENT.match(keyspace):
        raise ValueError(f"invalid keyspace name {keyspace!r}: use [a-z][a-z0-9_]{{0,47}}")
    return keyspace


def applied_migrations(session: Session, keyspace: str) -> dict[int, tuple[str, str]]:
    """Map version -> (name, checksum) recorded in the keyspace (empty when none)."""
    meta = session.cluster.metadata.keyspaces.get(keyspace)
    if meta is None or "schema_migrations" not in meta.tables:
        return {}
    # keyspace is a checked identifier (check_keyspace_name), never user text.
    stmt = session.prepare(applied_migrations_query(keyspace))
    return {row.version: (row.name, row.checksum) for row in session.execute(stmt)}


def pending_migrations(session: Session, keyspace: str) -> list[Migration]:
    """Shipped migrations not yet applied; raises MigrationError on an edited one."""
    applied = applied_migrations(session, keyspace)
    pending = []
    for migration in load_migrations():
        recorded = applied.get(migration.version)
        if recorded is None:
            pending.append(migration)
        elif recorded[1] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was applied with checksum "
                f"{recorded[1][:12]} but the file now has {migration.checksum[:12]}; "
                "never edit an applied migration, add a new one"
            )
    return pending


def migrate(
    settings: CqlSettings,
    *,
    keyspace: str | None = None,
    dry_run: bool = False,
    progress: Callable[[str], Any] | None = None,
) -> list[Migration]:
    """Create the keyspace if needed and apply pending migrations; returns them."""
    keyspace = check_keyspace_name(keyspace or settings.keyspace)
    say = progress or (lambda _msg: None)
    cluster, session = connect(settings)
    try:
        if dry_run:
            pending = pending_migrations(session, keyspace)
            for m in pending:
                say(f"would apply {m.version:04d}_{m.name} ({len(list(m.statements()))} stmts)")
            return pending
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {settings.replication_factor}}}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations ("
            "version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
        )
        cluster.refresh_schema_metadata()
        pending = pending_migrations(session, keyspace)
        session.set_keyspace(keyspace)
        record = session.prepare(MIGRATION_RECORD)
        for migration in pending:
            say(f"applying {migration.version:04d}_{migration.name}")
            for statement in migration.statements():
                if not _field_exists(cluster, keyspace, statement):
                    session.execute(statement, timeout=60)
            session.execute(
                record,
                (migration.version, migration.name, migration.checksum, datetime.now(UTC)),
            )
        return pending
    finally:
        cluster.shutdown()


def added_field(statement: str) -> tuple[str, str] | None:
    """``(type, field)`` of an ``ALTER TYPE type ADD field …`` statement, else None."""
    match = _ADD_FIELD.match(statement)
    return None if match is None else (match[1].lower(), match[2].lower())


def _field_exists(cluster: Cluster, keyspace: str, statement: str) -> bool:
    """True for an ``ALTER TYPE t ADD f …`` whose type has ``f`` (an interrupted run added it)."""
    added = added_field(statement)
    if added is None:
        return False
    cluster.refresh_user_type_metadata(keyspace, added[0])
    found = cluster.metadata.keyspaces[keyspace].user_types.get(added[0])
    return found is not None and added[1] in found.field_names


def drop_keyspace(settings: CqlSettings, keyspace: str) -> None:
    """Drop a keyspace (tests clean up their uuid-named keyspaces with this)."""
    cluster, session = connect(settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {check_keyspace_name(keyspace)}", timeout=60)
    finally:
        cluster.shutdown()
