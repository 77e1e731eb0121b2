"""The scheduled verifier: a live `feedctl verify` every few minutes, its result exported.

``python -m jobs.verifier --port P`` checks ``--sample`` random users every ``--interval``
seconds with ``jobs.verifying.check(live=True)`` — users the events past the consumers'
Kafka commits may have changed are skipped, the others must match the recomputation from
the archive exactly. Users that drift are checked again after ``--confirm-after`` seconds
(with a fresh tail); only drift found twice is reported, so a store write landing between
two reads cannot raise an alert. Each confirmed user is logged (JSON line, ``user``,
``problems``) and counted in:

- ``feedline_verify_users{state="checked|skipped|drifted"}`` — the last round;
- ``feedline_verify_runs_total{result="ok|drift|unchecked|bad_archive"}`` (rounds skip the
  quality gate, which reads the whole archive; a record the rules cannot read is
  ``bad_archive``);
- ``feedline_verify_last_checked_timestamp_seconds`` — the end of the last round that
  compared users (result ok or drift, not every sampled user skipped), the process's start
  before the first;
- ``feedline_verify_interval_seconds``, ``feedline_verify_duration_seconds`` (last round).

The alerts ``VerifyDriftFound`` and ``VerifyNotChecking`` (infra/prometheus/alerts.yml) read
them. Settings come from the environment like every batch tool's (``FEEDLINE_*``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, start_http_server

from feedline.cli import stop_on_signals
from feedline.logs import configure_logging
from feedline.settings import BatchSettings, settings_errors_exit
from jobs.verifying import BadArchive, Report, check

log = logging.getLogger(__name__)

USERS = Gauge("feedline_verify_users", "Users of the last verify round, by state",
              ["state"])
RUNS = Counter("feedline_verify_runs", "Verify rounds, by result", ["result"])
LAST_CHECKED = Gauge("feedline_verify_last_checked_timestamp_seconds",
                     "End of the last round that compared users (start of the process before)")
INTERVAL = Gauge("feedline_verify_interval_seconds", "Seconds between two verify rounds")
DURATION = Gauge("feedline_verify_duration_seconds", "Seconds the last verify round took")

Check = Callable[..., Report]


def one_round(settings: BatchSettings, *, sample: int, confirm_after_s: float,
              wait: Callable[[float], Any], run: Check = check) -> str:
    """One round: check, confirm any drift, export; returns the result label."""
    began = time.monotonic()
    try:
        # No quality gate each round (it reads every record of the archive through Great
        # Expectations): a record the rules cannot read still ends the round (bad_archive).
        first = run(settings, sample=sample, live=True, gate=False, progress=log.info)
        confirmed: list[str] = []
        report = first
        if first.drifted:
            log.warning("%d user(s) drifted; checking them again in %.0f s",
                        len(first.drifted), confirm_after_s)
            wait(confirm_after_s)
            report = run(settings, users=first.drifted, live=True, gate=False,
                         progress=log.info)
            confirmed = report.drifted  # the second look checks only those users
        result = "drift" if confirmed else "ok"
    except BadArchive as err:
        log.error("the archive holds a bad record: %s", err)
        result = "bad_archive"
    except Exception as err:  # a store down: nothing compared, the round counts as unchecked
        log.error("could not check: %s: %s", type(err).__name__, err)
        result = "unchecked"
    RUNS.labels(result).inc()
    DURATION.set(time.monotonic() - began)
    if result in ("ok", "drift"):
        problems = {row.user: row.problems for row in report.users}
        for user in confirmed:
            log.error("verify drift", extra={"user": user, "problems": problems.get(user, [])})
        USERS.labels("checked").set(first.checked)
        USERS.labels("skipped").set(len(first.skipped))
        USERS.labels("drifted").set(len(confirmed))
        if first.checked or not first.skipped:  # a round that skipped everyone checked nothing
            LAST_CHECKED.set_to_current_time()
        log.info("verify round: %d checked, %d skipped, %d drifted (confirmed)",
                 first.checked, len(first.skipped), len(confirmed))
    return result


def run(argv: Sequence[str] | None = None) -> int:
    """Verify every ``--interval`` seconds until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m jobs.verifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=900.0,
                        help="seconds between two rounds (default 900)")
    parser.add_argument("--first-after", type=float, default=None,
                        help="seconds before the first round (default: the interval)")
    parser.add_argument("--sample", type=int, default=50, help="users per round (default 50)")
    parser.add_argument("--confirm-after", type=float, default=30.0,
                        help="seconds before drifted users are checked again (default 30)")
    parser.add_argument("--host", default="127.0.0.1", help="address of /metrics")
    parser.add_argument("--port", type=int, required=True, help="port of /metrics")
    args = parser.parse_args(argv)
    if args.sample < 1 or args.interval <= 0:
        parser.error("--sample must be at least 1 and --interval positive")
    configure_logging("verifier")
    with settings_errors_exit("python -m jobs.verifier"):
        settings = BatchSettings()
    INTERVAL.set(args.interval)
    LAST_CHECKED.set_to_current_time()
    for state in ("checked", "skipped", "drifted"):
        USERS.labels(state).set(0)
    start_http_server(args.port, addr=args.host)
    stopping = stop_on_signals()
    log.info("verifying %d users every %.0f s; /metrics on %s:%d", args.sample,
             args.interval, args.host, args.port)
    first = args.interval if args.first_after is None else args.first_after
    stopping.wait(first)
    while not stopping.is_set():
        one_round(settings, sample=args.sample, confirm_after_s=args.confirm_after,
                  wait=stopping.wait)
        stopping.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(run())
