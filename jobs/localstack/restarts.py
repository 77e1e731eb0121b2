"""Restart bookkeeping of a local-stack service: counts, last reason, and crash-loop backoff.

Each service's folder holds ``restarts.json``, written by the supervisor (and by
`feedctl local up` when it finds a service of its own dead) and read by `feedctl local
status`. The functions here are pure over a record and a clock, so the backoff is
unit-tested without processes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

RESTARTS_FILE = "restarts.json"


@dataclass(frozen=True)
class Backoff:
    """Crash-loop backoff: the n-th crash in a row waits ``first_s * 2**(n-1)``, capped.

    Like Docker's restart policy and Kubernetes' CrashLoopBackOff, the streak resets once
    the service has stayed healthy for ``stable_s``.
    """

    first_s: float = 1.0
    """Wait before restarting after a first crash."""
    cap_s: float = 60.0
    """Longest wait between restarts of a service that keeps crashing."""
    stable_s: float = 30.0
    """Healthy this long after a restart, a service's crash streak is forgotten."""

    def delay_s(self, crashes_in_a_row: int) -> float:
        """Seconds to wait before restarting after the ``crashes_in_a_row``-th crash."""
        exponent = max(crashes_in_a_row - 1, 0)
        if exponent >= 64:  # 2**64 seconds is past any cap; avoid a huge float
            return self.cap_s
        return float(min(self.first_s * 2**exponent, self.cap_s))


@dataclass
class RestartRecord:
    """What is known about one service's restarts."""

    restarts: int = 0
    """Restarts since the service was last started by `feedctl local up` (or ever)."""
    last_restart_at: str | None = None
    """ISO-8601 UTC time of the last restart."""
    last_reason: str | None = None
    """Why the process was restarted (its exit status when known)."""
    crashes_in_a_row: int = 0
    """Crashes since the service was last healthy for ``Backoff.stable_s``."""
    restart_due_at: float | None = None
    """Epoch seconds at which a pending restart may run; None when none is pending."""
    healthy_since: float | None = None
    """Epoch seconds since which the service has been seen healthy without a break."""

    def crashed(self, now: float, reason: str, backoff: Backoff) -> float:
        """Note a crash (once per death) and schedule the restart; returns the delay."""
        if self.restart_due_at is not None:  # this death was already noted
            return max(self.restart_due_at - now, 0.0)
        self.crashes_in_a_row += 1
        delay = backoff.delay_s(self.crashes_in_a_row)
        self.restart_due_at = now + delay
        self.last_reason = reason
        self.healthy_since = None
        return delay

    def restart_due(self, now: float) -> bool:
        """True when a restart is pending and its backoff has passed."""
        return self.restart_due_at is not None and now >= self.restart_due_at

    def restarted(self, now: float) -> None:
        """Note that the service was started again."""
        self.restarts += 1
        self.last_restart_at = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        self.restart_due_at = None

    def observed(self, now: float, healthy: bool, backoff: Backoff) -> None:
        """Note a health check of a running service; a long healthy run ends the streak."""
        if not healthy:
            self.healthy_since = None
            return
        if self.healthy_since is None:
            self.healthy_since = now
        if now - self.healthy_since >= backoff.stable_s:
            self.crashes_in_a_row = 0


def load(home: Path) -> RestartRecord:
    """The record in a service's folder (an empty one when there is none or it is unreadable)."""
    try:
        raw = json.loads((home / RESTARTS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return RestartRecord()
    known = {f.name for f in fields(RestartRecord)}
    if not isinstance(raw, dict):
        return RestartRecord()
    try:
        return RestartRecord(**{k: v for k, v in raw.items() if k in known})
    except TypeError:
        return RestartRecord()


def save(home: Path, record: RestartRecord) -> None:
    """Write the record atomically (a reader never sees half a file)."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{RESTARTS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(record), indent=1) + "\n")
    os.replace(tmp, home / RESTARTS_FILE)


def forget(home: Path) -> None:
    """Remove the record (a service stopped on purpose starts counting afresh)."""
    (home / RESTARTS_FILE).unlink(missing_ok=True)
