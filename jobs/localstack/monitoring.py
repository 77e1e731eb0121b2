"""Monitoring on the local stack: Prometheus and the exporters it scrapes.

Six helpers of the stack (not *essential*: the tests and the serving path run without
them), started by `feedctl local up` once the servers are healthy and supervised like them:

- ``prometheus``: the Debian ``prometheus`` server on ``monitoring.prometheus_port``, its
  samples under ``<state dir>/prometheus/data`` (small retention), the alert rules of
  ``infra/prometheus/alerts.yml``, the scrape configuration generated from the settings
  (`scrape_config`);
- ``pushgateway``: the Debian ``prometheus-pushgateway`` on ``monitoring.pushgateway_port``;
  the Flink JobManager and TaskManager push their metrics to it (Flink's scraped reporter
  cannot listen on loopback only), Prometheus scrapes it with ``honor_labels``;
- ``redis-exporter``: the Debian ``prometheus-redis-exporter``; Prometheus asks it for each
  Redis server in turn (its ``/scrape?target=`` endpoint), the cache and the guards;
- ``exporter``: ``python -m jobs.exporter --local-stack``, consumer lag per job and
  partition, dead-letter topics, the stack's processes, disk and memory;
- ``freshness-probe``: ``python -m jobs.freshness_probe``, post -> visible in a follower's
  feed through the API (``feedline_freshness_seconds``);
- ``verifier``: ``python -m jobs.verifier``, a live verify of a sample of users every
  ``monitoring.verifier_interval_s`` (``feedline_verify_users{state="drifted"}``).

The API (every uvicorn worker: they share a multi-process metrics folder), the archiver and
Cassandra (the JMX exporter agent) serve their own. Every listener is on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel

from feedline.settings import REPO_ROOT, StackSettings
from jobs.localstack.base import Service
from jobs.localstack.redis_cluster import cluster_runs, cluster_urls
from jobs.localstack.redis_server import guards_url

#: The alert rules (and their promtool unit tests beside them).
RULES_DIR = REPO_ROOT / "infra" / "prometheus"
RULES_FILE = "alerts.yml"


@dataclass(frozen=True)
class Targets:
    """Where each scrape target listens (``host:port``), as Prometheus reaches it."""

    prometheus: str
    api: str
    cassandra: str
    pushgateway: str
    exporter: str
    archiver: str
    redis_exporter: str
    freshness_probe: str
    verifier: str
    redis: dict[str, str] = field(default_factory=dict)
    """Each Redis server's name mapped to the address the exporter connects to."""


def local_targets(settings: StackSettings) -> Targets:
    """The local stack's targets, all on loopback, from the settings."""
    mon = settings.monitoring

    def address(url: str, default_port: int) -> str:
        parts = urlsplit(url)
        return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"

    return Targets(
        prometheus=f"127.0.0.1:{mon.prometheus_port}",
        api=f"{settings.api.host}:{settings.api.port}",
        cassandra=f"127.0.0.1:{mon.cassandra_metrics_port}",
        pushgateway=f"127.0.0.1:{mon.pushgateway_port}",
        exporter=f"127.0.0.1:{mon.kafka_exporter_port}",
        archiver=f"127.0.0.1:{mon.archiver_metrics_port}",
        redis_exporter=f"127.0.0.1:{mon.redis_exporter_port}",
        freshness_probe=f"127.0.0.1:{mon.freshness_probe_port}",
        verifier=f"127.0.0.1:{mon.verifier_port}",
        redis=_redis_targets(settings, address),
    )


def _redis_targets(settings: StackSettings, address: Callable[[str, int], str]) \
        -> dict[str, str]:
    """The stack's Redis servers by name, the cache first.

    The cache is the single one, or each master of the local cluster when it runs
    (``redis.cluster`` or ``local.redis_cluster``); then the guards.
    """
    targets: dict[str, str] = {}
    if not settings.redis.cluster:
        targets["redis"] = address(settings.redis.url, 6379)
    if cluster_runs(settings):
        targets.update({f"redis-cluster-{i + 1}": address(url, 6379)
                        for i, url in enumerate(cluster_urls(settings))})
    targets["redis-guards"] = address(guards_url(settings), 6380)
    return targets


def scrape_config(targets: Targets, scrape_interval_s: int = 15) -> dict[str, Any]:
    """prometheus.yml: every target, one scrape job each, and the alert rules."""

    def job(name: str, *addresses: str, **labels: str) -> dict[str, Any]:
        static: dict[str, Any] = {"targets": list(addresses)}
        if labels:
            static["labels"] = labels
        return {"job_name": name, "static_configs": [static]}

    # Flink's series keep the labels they were pushed with: job="flink", and the grouping
    # key of the process that pushed them (component, instance), not the Pushgateway's.
    pushgateway = {**job("pushgateway", targets.pushgateway), "honor_labels": True}
    redis = {
        "job_name": "redis",
        "metrics_path": "/scrape",
        "static_configs": [{"targets": [f"redis://{address}"], "labels": {"server": name}}
                           for name, address in targets.redis.items()],
        # The exporter scrapes the server named by ?target=; the series keep the server's
        # address as their instance.
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": targets.redis_exporter},
        ],
    }
    return {
        "global": {"scrape_interval": f"{scrape_interval_s}s",
                   "evaluation_interval": f"{scrape_interval_s}s",
                   "external_labels": {"stack": "feedline"}},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            job("prometheus", targets.prometheus),
            job("api", targets.api),
            job("cassandra", targets.cassandra),
            pushgateway,
            job("kafka", targets.exporter),
            job("archiver", targets.archiver),
            job("freshness", targets.freshness_probe),
            job("verify", targets.verifier),
            redis,
        ],
    }


def compose_targets() -> Targets:
    """The targets inside docker-compose.yml's network (service names, container ports)."""
    return Targets(prometheus="localhost:9090", api="api:8000", cassandra="scylla:9180",
                   pushgateway="pushgateway:9091", exporter="exporter:9108",
                   archiver="archiver:9109", redis_exporter="redis-exporter:9121",
                   freshness_probe="freshness-probe:9110", verifier="verifier:9111",
                   redis={"redis": "redis:6379", "redis-guards": "redis-guards:6379"})


def _http_ok(url: str, timeout_s: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if found is None:
        raise FileNotFoundError(f"{name} is not installed; `make deps` installs the Debian "
                                f"package {name}")
    return found


class PrometheusService(Service):
    """The Prometheus server: scrapes every target, evaluates the alert rules."""

    name = "prometheus"
    essential = False

    def endpoint(self) -> str:
        """The web UI and query API."""
        return f"http://127.0.0.1:{self.settings.monitoring.prometheus_port}"

    def prepare(self) -> None:
        """Write prometheus.yml from the settings; copy the alert rules beside it."""
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        config = scrape_config(local_targets(self.settings),
                               self.settings.monitoring.scrape_interval_s)
        (self.home / "prometheus.yml").write_text(
            "# Generated by feedctl local up (jobs/localstack/monitoring.py); edits are lost.\n"
            + yaml.safe_dump(config, sort_keys=False))
        shutil.copyfile(RULES_DIR / RULES_FILE, self.home / RULES_FILE)

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """The server on loopback with a small retention; its home on the command line."""
        mon = self.settings.monitoring
        return [
            _binary("prometheus"),
            f"--config.file={self.home / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--storage.tsdb.retention.time={mon.prometheus_retention}",
            f"--storage.tsdb.retention.size={mon.prometheus_retention_size}",
            f"--web.listen-address=127.0.0.1:{mon.prometheus_port}",
            "--web.enable-lifecycle",  # POST /-/reload after editing the rules
        ], {}

    def healthy(self) -> bool:
        """``/-/ready`` answers 200 (the storage is open, the rules are loaded)."""
        return _http_ok(f"{self.endpoint()}/-/ready")


class PushgatewayService(Service):
    """prometheus-pushgateway: holds the metrics the Flink processes push, for Prometheus."""

    name = "pushgateway"
    essential = False

    def _listen(self) -> str:
        return f"127.0.0.1:{self.settings.monitoring.pushgateway_port}"

    def endpoint(self) -> str:
        """Its ``/metrics`` (every pushed group) and push API."""
        return f"http://{self._listen()}"

    def marker(self) -> str:
        """Its listen address on the command line."""
        return f"--web.listen-address={self._listen()}"

    def prepare(self) -> None:
        """Nothing to write: flags only."""

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """In memory only: after a restart each Flink process pushes its group again.

        The Debian build persists to a file in /var/lib by default: one file for every
        Pushgateway of the machine, and a restart would bring back a dead process's group.
        """
        return [_binary("prometheus-pushgateway"), self.marker(), "--persistence.file="], {}

    def healthy(self) -> bool:
        """``/-/ready`` answers 200."""
        return _http_ok(f"{self.endpoint()}/-/ready")


class RedisExporterService(Service):
    """prometheus-redis-exporter: Redis INFO (memory, evictions, clients) as metrics."""

    name = "redis-exporter"
    essential = False

    def _listen(self) -> str:
        return f"127.0.0.1:{self.settings.monitoring.redis_exporter_port}"

    def endpoint(self) -> str:
        """Its own page; Prometheus asks it for ``/scrape?target=redis://…``."""
        return f"http://{self._listen()}"

    def marker(self) -> str:
        """Its listen address on the command line."""
        return f"-web.listen-address={self._listen()}"

    def prepare(self) -> None:
        """Nothing to write: flags only."""

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """``/metrics`` reads the cache; ``/scrape?target=`` any server."""
        from jobs.localstack.redis_server import EXPORTER_USER, exporter_password

        cache = next(iter(local_targets(self.settings).redis.values()))  # the cache first
        # Its own read-only ACL user, in the environment (not on the command line); the
        # servers only know it when the stack's Redis URL carries credentials.
        env = ({"REDIS_USER": EXPORTER_USER, "REDIS_PASSWORD": exporter_password(self.settings)}
               if urlsplit(self.settings.redis.url).password else {})
        return [_binary("prometheus-redis-exporter"), self.marker(),
                f"-redis.addr=redis://{cache}"], env

    def healthy(self) -> bool:
        """Its landing page answers."""
        return _http_ok(self.endpoint())


class _PythonHelper(Service):
    """A ``python -m MODULE --port P`` helper of the stack serving ``/metrics`` on loopback."""

    essential = False
    module = ""
    """The module run with ``python -m``."""
    health_timeout_s = 3.0

    def _port(self) -> int:
        raise NotImplementedError

    def _args(self) -> list[str]:
        """Flags after ``--port P``."""
        return []

    def _env(self) -> dict[str, str]:
        """Its settings, as ``FEEDLINE_*`` variables."""
        return {}

    def endpoint(self) -> str:
        """Its ``/metrics``."""
        return f"http://127.0.0.1:{self._port()}/metrics"

    def marker(self) -> str:
        """Module and port on the command line."""
        return f"{self.module} --port {self._port()}"

    def prepare(self) -> None:
        """Nothing to write: the settings are passed in the environment."""

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """The stack's interpreter, the module, its flags and settings."""
        argv = [sys.executable, "-m", self.module, "--port", str(self._port()), *self._args()]
        return argv, {"PYTHONPATH": str(REPO_ROOT), "MALLOC_ARENA_MAX": "2", **self._env()}

    def healthy(self) -> bool:
        """``/metrics`` answers 200 (what it measures shows in a metric, not here)."""
        return _http_ok(self.endpoint(), timeout_s=self.health_timeout_s)


class ExporterService(_PythonHelper):
    """``python -m jobs.exporter --local-stack``: lag, dead letters, the stack's processes."""

    name = "exporter"
    module = "jobs.exporter"
    health_timeout_s = 10.0

    def _port(self) -> int:
        return self.settings.monitoring.kafka_exporter_port

    def _args(self) -> list[str]:
        return ["--local-stack"]

    def _env(self) -> dict[str, str]:
        """Every settings block as JSON (it reads the pid files)."""
        env: dict[str, str] = {"FEEDLINE_ENVIRONMENT": self.settings.environment}
        for name in type(self.settings).model_fields:
            value = getattr(self.settings, name)
            if isinstance(value, BaseModel):
                env[f"FEEDLINE_{name.upper()}"] = value.model_dump_json()
        return env


class FreshnessProbeService(_PythonHelper):
    """``python -m jobs.freshness_probe``: post -> visible in a follower's feed, timed."""

    name = "freshness-probe"
    module = "jobs.freshness_probe"

    def _port(self) -> int:
        return self.settings.monitoring.freshness_probe_port

    def _args(self) -> list[str]:
        return ["--interval", str(self.settings.monitoring.freshness_probe_interval_s)]

    def _env(self) -> dict[str, str]:
        """The stack's API and secret (to sign the probe's tokens)."""
        return {"FEEDLINE_ENVIRONMENT": self.settings.environment,
                "FEEDLINE_API": self.settings.api.model_dump_json()}


class VerifierService(_PythonHelper):
    """``python -m jobs.verifier``: a live verify of a sample of users, every few minutes."""

    name = "verifier"
    module = "jobs.verifier"

    def _port(self) -> int:
        return self.settings.monitoring.verifier_port

    def _args(self) -> list[str]:
        mon = self.settings.monitoring
        return ["--interval", str(mon.verifier_interval_s), "--sample", str(mon.verifier_sample)]

    def _env(self) -> dict[str, str]:
        """The stores, topics and archive it checks."""
        s = self.settings
        blocks = {"KAFKA": s.kafka, "CQL": s.cql, "REDIS": s.redis, "STORAGE": s.storage,
                  "FEED": s.feed}
        return {f"FEEDLINE_{name}": block.model_dump_json() for name, block in blocks.items()}


def monitoring_services(settings: StackSettings) -> list[Service]:
    """The monitoring helpers, in start order: the exporters and the probes, then Prometheus."""
    return [PushgatewayService(settings), ExporterService(settings),
            RedisExporterService(settings), FreshnessProbeService(settings),
            VerifierService(settings), PrometheusService(settings)]


def main() -> int:
    """Print the scrape configuration docker-compose.yml mounts (``--compose``)."""
    if sys.argv[1:] != ["--compose"]:
        print("usage: python -m jobs.localstack.monitoring --compose", file=sys.stderr)
        return 2
    print(COMPOSE_HEADER + yaml.safe_dump(scrape_config(compose_targets()), sort_keys=False),
          end="")
    return 0


COMPOSE_HEADER = ("# Prometheus of docker-compose.yml. Generated by\n"
                  "#   python -m jobs.localstack.monitoring --compose > "
                  "infra/prometheus/prometheus.compose.yml\n"
                  "# (tests/unit/test_monitoring.py checks that it is current).\n")


if __name__ == "__main__":
    sys.exit(main())
