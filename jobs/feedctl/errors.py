"""feedctl's one error path: exit codes and the errors a command raises.

A command either returns its exit code or raises a `FeedctlError`; `jobs.feedctl.main`
prints the error as one line on stderr (``feedctl NOUN VERB: message``) and exits with the
error's code. Library exceptions that mean "a dependency did not answer" are turned into
`Unreachable` by `jobs.feedctl.deps`, the only place that knows the libraries' errors.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = 0
"""Done; healthy; no drift."""
FAILED = 1
"""The operation failed, something is unhealthy, or drift was found."""
USAGE = 2
"""A usage or configuration error: a bad flag, an unknown FEEDLINE_* key, an invalid value."""
UNREACHABLE = 3
"""Could not check or do it: a dependency (Kafka, CQL, Redis, storage, Flink, API) is down."""
INTERNAL = 4
"""An unexpected error (a bug): `feedctl --debug ...` shows the traceback."""
INTERRUPTED = 130
"""Interrupted (Ctrl-C)."""

EXIT_CODES = f"""\
exit codes:
  {OK}    done; healthy; no drift
  {FAILED}    failed; unhealthy; drift found (verify), lag left (archive status)
  {USAGE}    usage or configuration error (bad flag, unknown FEEDLINE_* key, invalid value)
  {UNREACHABLE}    could not check: a dependency (Kafka, CQL, Redis, storage, Flink, API) is
       unreachable; the one line on stderr names it and the setting that points at it
  {INTERNAL}    internal error (a bug): rerun with `feedctl --debug ...` for the traceback
  {INTERRUPTED}  interrupted (Ctrl-C)"""


class FeedctlError(Exception):
    """An error reported as one line on stderr; ``exit_code`` says which kind it is."""

    exit_code = FAILED


class Failed(FeedctlError):
    """The operation failed (exit 1)."""


class UsageError(FeedctlError):
    """The command line or the configuration is wrong (exit 2)."""

    exit_code = USAGE


@dataclass(frozen=True)
class Dependency:
    """A service a command needs, as the settings point at it."""

    name: str
    """What it is, for people: ``Kafka``, ``the CQL store``, ``Redis``, ..."""
    endpoint: str
    """Where the settings say it is."""
    variable: str
    """The FEEDLINE_* variable that moves it."""
    addresses: tuple[tuple[str, int], ...] = ()
    """TCP (host, port) pairs a quick probe may try; empty: no probe (e.g. real GCS)."""
    hint: str = ""
    """What to do, when the default (start the local stack or set ``variable``) is wrong."""

    def what_to_do(self) -> str:
        """The advice of the error line."""
        return self.hint or f"start the local stack (`feedctl local up`) or set {self.variable}"


class Unreachable(FeedctlError):
    """A dependency did not answer, so the command could not check or do its work (exit 3)."""

    exit_code = UNREACHABLE

    def __init__(self, dependency: Dependency, cause: str) -> None:
        self.dependency = dependency
        self.cause = cause
        super().__init__(f"{dependency.name} is unreachable at {dependency.endpoint} ({cause}); "
                         f"{dependency.what_to_do()}")


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."
