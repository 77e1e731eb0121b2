"""Errors the stores raise when a backing service cannot answer."""

from __future__ import annotations

import time


class StoreUnavailable(RuntimeError):
    """A backing service (``cql``, ``redis``, ``kafka``, ``storage``) cannot answer.

    It is unreachable or timed out; callers answer 503 with Retry-After or fall back to
    another store.
    """

    def __init__(self, store: str, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__(f"{store}: {detail}")
        self.store = store
        self.detail = detail
        self.retry_after_s = retry_after_s


class Breaker:
    """Skips a dependency for ``open_s`` seconds after it failed (a circuit breaker).

    Spares every request the connect timeout of a dependency that is known to be down; the
    first call after the pause tries it again.
    """

    def __init__(self, open_s: float) -> None:
        self.open_s = open_s
        self._open_until = 0.0

    def allows(self) -> bool:
        """True when the dependency may be tried."""
        return time.monotonic() >= self._open_until

    def trip(self) -> None:
        """The dependency just failed: skip it for ``open_s`` seconds."""
        self._open_until = time.monotonic() + self.open_s

    def remaining_s(self) -> float:
        """Seconds until the dependency is tried again (0 when it may be now)."""
        return max(0.0, self._open_until - time.monotonic())
