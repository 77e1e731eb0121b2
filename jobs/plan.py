"""What ``feedctl jobs apply`` would change for a spec, and whether the state carries over.

``read_current`` asks the Flink REST API what runs under the spec's job name (its job id,
parallelism, newest savepoint or checkpoint) and the history which version and spec that
deployment was; ``compare`` (pure: the unit tests call it with plain data) lists the
differences and checks the state: every operator uid holding state in the savepoint the
new version would start from must be a uid of the new version, or Flink refuses to start
it. New uids are fine (their operators start empty).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from feedline.settings import StackSettings
from jobs import flink_rest, history
from jobs.savepoint_meta import SavepointOperators, read_operators
from jobs.specs import JobSpec


@dataclass(frozen=True)
class Desired:
    """The spec to apply and the code version it would run."""

    version: str
    parallelism: int
    flags: tuple[str, ...]
    entry_point: str
    upgrade_mode: str
    operator_uids: tuple[str, ...]


@dataclass(frozen=True)
class Current:
    """What runs under the job's name."""

    job_id: str
    parallelism: int
    version: str | None
    """None: deployed without ``jobs apply`` (no history record for this job id)."""
    flags: tuple[str, ...] | None
    entry_point: str | None
    state: str | None
    """Its newest savepoint or checkpoint (None: none taken yet)."""


@dataclass(frozen=True)
class Change:
    """One field that differs."""

    field: str
    current: Any
    desired: Any


@dataclass
class Plan:
    """The outcome of comparing a spec with what runs."""

    job_name: str
    action: str
    """``start`` (not running), ``upgrade`` (running, something differs), ``none``."""
    running_job_id: str | None
    changes: list[Change]
    state_from: str | None
    """The savepoint or checkpoint the new deployment starts from, when one is known."""
    saved_uids: list[str] | None
    """The uids holding state in it (None: no state to carry)."""
    missing_uids: list[str]
    """Saved uids the new version lacks: its state would not be restored."""
    compatible: bool
    problems: list[str] = field(default_factory=list)
    """Why apply would fail (an empty list: it can go ahead)."""
    notes: list[str] = field(default_factory=list)
    stateless_uids: list[str] = field(default_factory=list)
    """Saved uids whose operators hold no state (the new version may drop them)."""

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return asdict(self)


def desired_of(spec: JobSpec, version: str) -> Desired:
    """The desired side of a spec."""
    return Desired(version, spec.parallelism, spec.flags, spec.entry_point, spec.upgrade_mode,
                   spec.operator_uids)


def compare(job_name: str, desired: Desired, current: Current | None,
            saved_uids: list[str] | None, free_slots: int | None,
            from_savepoint: str | None = None, *, stateless_uids: Sequence[str] = (),
            max_parallelism: int | None = None) -> Plan:
    """The plan for ``desired`` against ``current``, with the state's uids already read.

    ``saved_uids`` are those of the state the new deployment would start from: the running
    job's newest savepoint or checkpoint (a savepoint taken at the stop has the same
    operators), or ``from_savepoint`` when the job does not run; ``stateless_uids`` those
    of them whose operators hold no state, ``max_parallelism`` the smallest the state was
    taken with.
    """
    changes: list[Change] = []
    notes: list[str] = []
    problems: list[str] = []
    if current is None:
        action, state_from = "start", from_savepoint
    else:
        pairs = [("version", current.version, desired.version),
                 ("parallelism", current.parallelism, desired.parallelism),
                 ("flags", current.flags, desired.flags),
                 ("entry_point", current.entry_point, desired.entry_point)]
        changes = [Change(name, now, want) for name, now, want in pairs if _differs(now, want)]
        action = "upgrade" if changes else "none"
        if current.version is None:
            notes.append("deployed without `jobs apply`: its version and spec are unknown")
        state_from = current.state if desired.upgrade_mode != "stateless" else None
        if desired.upgrade_mode != "stateless" and current.state is None:
            notes.append("the running job has no savepoint or checkpoint yet")
    missing: list[str] = []
    if action != "none" and saved_uids is not None:
        dropped = [uid for uid in saved_uids if uid not in desired.operator_uids]
        missing = [uid for uid in dropped if uid not in stateless_uids]
        if missing:
            problems.append(
                f"the state holds operator uids the new version lacks: {', '.join(missing)} "
                "(Flink would refuse to restore it; keep those uids, or start without "
                "that state: upgrade_mode: stateless)")
        if len(missing) < len(dropped):
            notes.append("dropped operators without state (Flink skips them): "
                         + ", ".join(uid for uid in dropped if uid not in missing))
        if max_parallelism is not None and desired.parallelism > max_parallelism:
            problems.append(f"parallelism {desired.parallelism} is over the state's max "
                            f"parallelism {max_parallelism}")
        added = [uid for uid in desired.operator_uids if uid not in saved_uids]
        if added:
            notes.append(f"new operators start empty: {', '.join(added)}")
    if desired.upgrade_mode == "stateless" and current is not None and action != "none":
        notes.append("upgrade_mode stateless: the keyed state is dropped (Kafka offsets stay "
                     "with the consumer group)")
    if action != "none" and free_slots is not None:
        freed = current.parallelism if current is not None else 0
        if desired.parallelism > free_slots + freed:
            problems.append(f"parallelism {desired.parallelism} needs {desired.parallelism} "
                            f"task slots; {free_slots + freed} would be free")
    return Plan(job_name, action, current.job_id if current else None, changes, state_from,
                saved_uids, missing, not missing, problems, notes, list(stateless_uids))


def _differs(now: Any, want: Any) -> bool:
    if isinstance(now, list | tuple) and isinstance(want, list | tuple):
        return tuple(now) != tuple(want)
    return bool(now != want)


def read_current(stack: StackSettings, job_name: str) -> Current | None:
    """What runs under ``job_name`` (None: nothing), from Flink and the history."""
    url = stack.flink.rest_url
    jobs = flink_rest.running(url, job_name)
    if not jobs:
        return None
    job = jobs[0]
    record = history.current(stack, job_name, job.job_id)
    spec = record.spec if record else {}
    return Current(job.job_id, flink_rest.job_parallelism(url, job.job_id),
                   record.version if record else None,
                   tuple(spec.get("flags", ())) if record else None,
                   spec.get("entry_point") if record else None,
                   flink_rest.latest_state(url, job.job_id))


#: How long a running job's newest state may stay named while unreadable: Flink deletes a
#: checkpoint once a newer one completes, and its REST API caches checkpoint statistics for
#: a few seconds (``rest.cache.checkpoint-statistics.timeout``, 3 s by default), so with
#: checkpoints every second it can name one already deleted for that long.
STALE_STATE_S = 20.0


def running_state(url: str, job_id: str, newest: str | None = None, *,
                  stale_s: float = STALE_STATE_S,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> tuple[str, SavepointOperators]:
    """A running job's newest savepoint or checkpoint and its operators.

    Flink keeps only the newest checkpoint, so the one named newest can be gone by the
    time it is read: then the REST API is asked again (every half second, for at most
    ``stale_s``) until it names a newer one, which is read instead. Raises
    OSError/ValueError when the state cannot be read for another reason (the same one
    stays named that long), or when the job has none.
    """
    state = newest or flink_rest.latest_state(url, job_id)
    deadline = clock() + stale_s
    while True:
        if state is None:
            raise ValueError(f"job {job_id} has no savepoint or checkpoint yet")
        try:
            return state, read_operators(state)
        except (OSError, ValueError):
            failed = state
            while True:
                if clock() >= deadline:
                    raise
                state = flink_rest.latest_state(url, job_id)
                if state != failed:
                    break
                sleep(0.5)


def make_plan(stack: StackSettings, spec: JobSpec, version: str, suffix: str = "",
              from_savepoint: str | None = None) -> Plan:
    """Read what runs and the state's uids, then ``compare``."""
    job_name = spec.job_name(suffix)
    current = read_current(stack, job_name)
    desired = desired_of(spec, version)
    state = from_savepoint if current is None else current.state
    operators = None
    unreadable = None
    if state and (current is None or spec.upgrade_mode != "stateless"):
        try:
            if current is None:
                operators = read_operators(state)
            else:
                state, operators = running_state(stack.flink.rest_url, current.job_id, state)
                current = replace(current, state=state)
        except (OSError, ValueError) as err:
            unreadable = f"cannot read the state's operators at {state}: {err}"
    plan = compare(job_name, desired, current,
                   list(operators.uids) if operators else None,
                   flink_rest.free_slots(stack.flink.rest_url), from_savepoint,
                   stateless_uids=operators.stateless if operators else (),
                   max_parallelism=operators.max_parallelism if operators else None)
    if unreadable:
        plan.problems.append(unreadable)
        plan.compatible = False
    return plan
