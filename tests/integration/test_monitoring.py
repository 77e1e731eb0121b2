"""Prometheus on the real local stack: every target up, the rules loaded, every query runs.

The monitoring helpers (Prometheus, the Redis exporter, the feedline exporter) are not
essential services, so the session's stack fixture does not wait for them: the module
fixture runs `feedctl local up`'s start (idempotent) and then waits for the first scrape
of every target. On a stack started before monitoring existed, Cassandra, the archiver and
the Flink processes (they push to the Pushgateway) serve no metrics until they are restarted
(`feedctl local down`, `up`).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import pytest
import yaml

from feedline.settings import REPO_ROOT, StackSettings
from jobs.localstack import stack as local_stack
from jobs.localstack.monitoring import PrometheusService
from jobs.specs import JOBS
from tests.support.waiting import eventually


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def prometheus(stack: StackSettings) -> str:
    """The base URL of the stack's Prometheus, once each target was scraped."""
    if not all(s.healthy for s in local_stack.status(stack)):
        local_stack.up(stack, say=lambda m: print(f"[stack] {m}", flush=True))
    base = PrometheusService(stack).endpoint()

    def scraped() -> bool:
        targets = api(base, "/api/v1/targets")["activeTargets"]
        return bool(targets) and all(t["health"] != "unknown" for t in targets)

    # Each target's first scrape decides up or down; a slow machine only takes longer.
    eventually(scraped, "a first scrape of every target")
    return base


def test_every_scrape_target_is_up(prometheus: str) -> None:
    targets = api(prometheus, "/api/v1/targets")["activeTargets"]
    jobs = {t["labels"]["job"] for t in targets}
    assert jobs == {"prometheus", "api", "cassandra", "pushgateway", "kafka", "archiver",
                    "freshness", "verify", "redis"}
    down = {f"{t['labels']['job']} {t['scrapeUrl']}": t["lastError"] for t in targets
            if t["health"] != "up"}
    assert down == {}


def test_the_alert_rules_are_loaded(prometheus: str) -> None:
    groups = api(prometheus, "/api/v1/rules")["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    rules = yaml.safe_load((REPO_ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    assert loaded == {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), [
        (rule["name"], rule.get("lastError")) for group in groups for rule in group["rules"]
        if rule["health"] != "ok"]


def test_every_rule_and_dashboard_query_runs(prometheus: str) -> None:
    rules = yaml.safe_load((REPO_ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    queries = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for path in sorted((REPO_ROOT / "infra" / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        queries += [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    failed = {}
    for query in queries:
        try:
            api(prometheus, "/api/v1/query", query=query)
        except (AssertionError, OSError) as error:
            failed[query] = str(error)
    assert failed == {}


def test_lag_and_dead_letters_are_exported_for_every_consumer(prometheus: str) -> None:
    result = api(prometheus, "/api/v1/query",
                 query="count by (consumer) (feedline_kafka_consumer_lag)")["result"]
    assert {r["metric"]["consumer"] for r in result} == {*JOBS, "archiver"}
    dead = api(prometheus, "/api/v1/query", query="feedline_dead_letters_total")["result"]
    assert {r["metric"]["topic"] for r in dead} == {"uploads.dlq", "follows.dlq",
                                                   "engagements.dlq"}
    # Every Redis Prometheus scrapes is up: the cache and the guards, and the local Redis
    # Cluster's masters when the stack runs them (the tests' stack does).
    scraped = {t["labels"]["server"] for t in api(prometheus, "/api/v1/targets")[
        "activeTargets"] if t["labels"]["job"] == "redis"}
    assert {"redis", "redis-guards"} <= scraped
    redis = api(prometheus, "/api/v1/query", query="redis_up")["result"]
    assert {r["metric"]["server"]: r["value"][1] for r in redis} == dict.fromkeys(scraped, "1")
