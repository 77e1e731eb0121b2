"""A streaming job whose store stays unreachable keeps restarting, and recovers by itself.

The jobs restart with an exponential delay and no limit on attempts
(``pipelines.streaming.job_graph.restart_options``): the former fixed delay gave up after
1,000 attempts over a job's life, leaving it FAILED with nothing to start it again. Here a
sandbox's fan-out and counters jobs reach Cassandra through a Toxiproxy proxy of their own,
with short waits between restarts (0.2 s doubling up to 2 s). The proxy is disabled (every
connection closed, new ones refused) while the rest of the workload arrives:

(a) the jobs run with the exponential-delay strategy and the waits the settings gave them;
(b) each job fails and restarts again and again while Cassandra is unreachable, never FAILED,
    and its failures name Cassandra;
(c) once the proxy is enabled again, with no manual step, the stores equal the reference from
    every event: nothing lost, nothing applied twice.

Only this sandbox's jobs go through the proxy: the stack's Cassandra and everyone else's
connections to it are never touched.
"""

from __future__ import annotations

import time

import pytest

from feedline.settings import CqlSettings, FeedSettings, StackSettings
from feedline.workload import Workload, WorkloadSpec
from jobs import flink_rest
from jobs.load import produce
from jobs.sandbox import open_sandbox
from tests.support.notification_workload import python_errors
from tests.support.pipeline import events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.toxiproxy import Toxiproxy
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

FEED = FeedSettings(celebrity_threshold=15, follow_merge_limit=4, timeline_cap=12)
SPEC = WorkloadSpec(users=60, posts=60, mean_followers=5, max_followers=20,
                    likes_per_post=2, comments_per_post=1, post_delete_share=0.1, seed=5)
#: Restarts each job must make while Cassandra is unreachable: more than one wait apart.
RESTARTS = 3
#: Hang guard for those restarts (each starts the job's Python worker again).
RESTARTS_BOUND_S = 600.0
JOBS = ("fanout", "counters")


def _restarts(rest: str, job_id: str) -> int:
    found = flink_rest.call(rest, "GET", f"/jobs/{job_id}/metrics?get=numRestarts")
    return int(float(found[0]["value"])) if found else 0


def test_a_job_whose_store_stays_unreachable_restarts_until_it_is_back(
        stack: StackSettings, toxiproxy: Toxiproxy) -> None:
    proxy = toxiproxy.proxy("cassandra-jobs",
                            f"{stack.cql.contact_points[0]}:{stack.cql.port}")
    flink = stack.flink.model_copy(update={
        "checkpoint_interval_ms": 1000, "restart_initial_backoff_ms": 200,
        "restart_max_backoff_ms": 2000})
    sandbox = open_sandbox(stack, FEED, flink)
    rest = stack.flink.rest_url
    try:
        cql = CqlSettings(**{**sandbox.streaming.cql.model_dump(),
                             "contact_points": ("127.0.0.1",), "port": proxy.port})
        sandbox.streaming = sandbox.streaming.model_copy(update={"cql": cql})
        ids = sandbox.deploy_all(JOBS)
        for job_id in ids.values():  # (a)
            strategy = flink_rest.call(rest, "GET", f"/jobs/{job_id}/config")[
                "execution-config"]["restart-strategy"]
            assert "exponential delay" in strategy and "PT2S" in strategy, strategy

        produced = list(Workload(SPEC).events())
        half = len(produced) // 2
        kafka = sandbox.streaming.kafka
        produce(kafka, produced[:half])
        eventually(lambda: sandbox.session.execute(
            "SELECT count(*) FROM followers").one()[0] > 0, "the first writes")

        before = {name: _restarts(rest, job_id) for name, job_id in ids.items()}
        states: dict[str, set[str]] = {name: set() for name in ids}
        proxy.enable(False)
        cut = time.monotonic()
        try:
            produce(kafka, produced[half:])

            def restarted_enough() -> bool:
                done = True
                for name, job_id in ids.items():
                    states[name].add(flink_rest.job_state(rest, job_id))
                    assert not states[name] & flink_rest.TERMINAL, (name, states[name])
                    done &= _restarts(rest, job_id) - before[name] >= RESTARTS
                return done

            eventually(restarted_enough, f"{RESTARTS} restarts of each job while Cassandra "
                       "is unreachable", timeout_s=RESTARTS_BOUND_S, every_s=0.5)
            down_s = time.monotonic() - cut
            for name, job_id in ids.items():  # (b)
                causes = python_errors(rest, job_id)
                assert any("NoHostAvailable" in cause or "cassandra" in cause.lower()
                           for cause in causes), f"{name}: failures do not name Cassandra: {causes}"
        finally:
            proxy.enable(True)
        back = time.monotonic()
        expected = reference_for(events_of(produced), FEED)
        assert expected.celebrities and expected.deleted_posts
        assert wait_converged(sandbox, expected) == []  # (c)
        print(f"Cassandra unreachable {down_s:.1f} s: restarts "
              f"{ {n: _restarts(rest, j) - before[n] for n, j in ids.items()} }, states seen "
              f"{ {n: sorted(s) for n, s in states.items()} }; stores equal the reference "
              f"{time.monotonic() - back:.1f} s after it was back")
    finally:
        sandbox.close()
