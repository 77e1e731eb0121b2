"""Monitoring pieces without services: the generated Prometheus configuration, the monitoring
services of the local stack, Flink's reporter, the exporter's metrics, the archiver's
metrics, and the API's count of requests failed by an unavailable dependency."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from feedline.archive.archiver import WrittenBatch
from feedline.settings import (
    REPO_ROOT,
    ApiSettings,
    BatchSettings,
    KafkaSettings,
    LocalStackSettings,
    MonitoringSettings,
    ServingSettings,
    StackSettings,
)
from feedline.stores.errors import StoreUnavailable
from jobs import exporter, freshness_probe
from jobs.lag import PartitionLag
from jobs.localstack import monitoring, restarts
from jobs.localstack.base import free_port
from jobs.localstack.flink import (
    FlinkJobManagerService,
    FlinkTaskManagerService,
    taskmanager_services,
)
from jobs.localstack.restarts import RestartRecord
from jobs.localstack.stack import services
from serving.observability import UNAVAILABLE
from serving.problems import install_handlers


@pytest.fixture
def settings(tmp_path: Path) -> StackSettings:
    return StackSettings(
        local=LocalStackSettings(state_dir=tmp_path),
        api=ApiSettings(port=8111),
        monitoring=MonitoringSettings(prometheus_port=9190, pushgateway_port=9191,
                                      flink_push_interval_s=7,
                                      redis_exporter_port=9221, kafka_exporter_port=9208,
                                      archiver_metrics_port=9209, freshness_probe_port=9210,
                                      verifier_port=9211,
                                      cassandra_metrics_port=9510,
                                      scrape_interval_s=5),
    )


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# --- the Prometheus configuration ------------------------------------------------------


def test_scrape_config_targets_come_from_the_settings(settings: StackSettings) -> None:
    config = monitoring.scrape_config(monitoring.local_targets(settings), 5)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "api", "cassandra", "pushgateway", "kafka", "archiver",
                         "freshness", "verify", "redis"}
    targets = {name: [t for static in job["static_configs"] for t in static["targets"]]
               for name, job in jobs.items()}
    assert targets["prometheus"] == ["127.0.0.1:9190"]
    assert targets["api"] == ["127.0.0.1:8111"]
    assert targets["cassandra"] == ["127.0.0.1:9510"]
    assert targets["pushgateway"] == ["127.0.0.1:9191"]
    # Flink's series keep the job/instance labels they were pushed with.
    assert jobs["pushgateway"]["honor_labels"] is True
    assert not any(job.get("honor_labels") for name, job in jobs.items() if name != "pushgateway")
    assert targets["kafka"] == ["127.0.0.1:9208"]
    assert targets["archiver"] == ["127.0.0.1:9209"]
    assert targets["freshness"] == ["127.0.0.1:9210"]
    assert targets["verify"] == ["127.0.0.1:9211"]
    assert targets["redis"] == ["redis://127.0.0.1:6379", "redis://127.0.0.1:6380"]
    assert [s["labels"]["server"] for s in jobs["redis"]["static_configs"]] == [
        "redis", "redis-guards"]
    assert {"target_label": "__address__", "replacement": "127.0.0.1:9221"} in (
        jobs["redis"]["relabel_configs"])
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == ["alerts.yml"]


def test_each_master_of_the_local_redis_cluster_is_scraped(settings: StackSettings) -> None:
    def servers(stack: StackSettings) -> dict[str, str]:
        return monitoring.local_targets(stack).redis

    port = settings.local.redis_cluster_port
    masters = {f"redis-cluster-{i + 1}": f"127.0.0.1:{port + i}" for i in range(3)}
    beside = settings.model_copy(update={"local": settings.local.model_copy(
        update={"redis_cluster": True})})
    assert servers(beside) == {"redis": "127.0.0.1:6379", **masters,
                               "redis-guards": "127.0.0.1:6380"}
    # The cluster as the cache: no single Redis runs; the exporter's own page reads a master.
    as_cache = settings.model_copy(update={"redis": settings.redis.model_copy(
        update={"cluster": True, "url": f"redis://127.0.0.1:{port + 1}/0"})})
    assert servers(as_cache) == {**masters, "redis-guards": "127.0.0.1:6380"}
    argv, _ = monitoring.RedisExporterService(as_cache).command()
    assert f"-redis.addr=redis://127.0.0.1:{port}" in argv


def test_prometheus_runs_on_loopback_with_its_data_and_rules_in_its_home(
        settings: StackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitoring, "_binary", lambda name: f"/usr/bin/{name}")
    svc = monitoring.PrometheusService(settings)
    svc.home.mkdir(parents=True)
    svc.prepare()
    written = yaml.safe_load((svc.home / "prometheus.yml").read_text())
    assert written == monitoring.scrape_config(monitoring.local_targets(settings), 5)
    assert (svc.home / "alerts.yml").read_text() == (
        REPO_ROOT / "infra" / "prometheus" / "alerts.yml").read_text()
    argv, _ = svc.command()
    assert "--web.listen-address=127.0.0.1:9190" in argv
    assert f"--storage.tsdb.path={svc.home / 'data'}" in argv
    assert "--storage.tsdb.retention.time=2d" in argv
    assert svc.marker() in " ".join(argv)


def test_the_monitoring_helpers_are_supervised_stack_services(
        settings: StackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitoring, "_binary", lambda name: f"/usr/bin/{name}")
    names = {"prometheus", "pushgateway", "redis-exporter", "exporter", "freshness-probe",
             "verifier"}
    helpers = {svc.name: svc for svc in services(settings) if svc.name in names}
    assert set(helpers) == names
    assert not any(svc.essential for svc in helpers.values())
    argvs = {name: " ".join(svc.command()[0]) for name, svc in helpers.items()}
    for name, svc in helpers.items():
        # Each one's pid check matches its own command line and no other helper's.
        assert [other for other, argv in argvs.items() if svc.marker() in argv] == [name]
    assert "-web.listen-address=127.0.0.1:9221" in argvs["redis-exporter"]
    # In memory: the Debian default file would be shared by every Pushgateway of the host.
    assert argvs["pushgateway"] == ("/usr/bin/prometheus-pushgateway "
                                    "--web.listen-address=127.0.0.1:9191 --persistence.file=")
    assert "-redis.addr=redis://127.0.0.1:6379" in argvs["redis-exporter"]
    # The exporter gets the stack's settings in its environment, whoever (re)starts it.
    _, env = helpers["exporter"].command()
    assert LocalStackSettings.model_validate_json(env["FEEDLINE_LOCAL"]) == settings.local
    assert MonitoringSettings.model_validate_json(env["FEEDLINE_MONITORING"]) == (
        settings.monitoring)
    # The verifier reads the stack's topics, stores and archive as a batch tool does.
    _, env = helpers["verifier"].command()
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("FEEDLINE_"):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        batch = BatchSettings()
    assert (batch.kafka, batch.cql, batch.redis, batch.storage, batch.feed) == (
        settings.kafka, settings.cql, settings.redis, settings.storage, settings.feed)
    assert "--port 9211 --interval 900.0 --sample 50" in argvs["verifier"]


def test_a_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitoring.shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(FileNotFoundError, match="Debian package prometheus-redis-exporter"):
        monitoring._binary("prometheus-redis-exporter")


def test_the_compose_prometheus_config_is_current() -> None:
    path = REPO_ROOT / "infra" / "prometheus" / "prometheus.compose.yml"
    expected = monitoring.COMPOSE_HEADER + yaml.safe_dump(
        monitoring.scrape_config(monitoring.compose_targets()), sort_keys=False)
    assert path.read_text() == expected, "python -m jobs.localstack.monitoring --compose"


def test_compose_runs_what_its_prometheus_scrapes() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services_ = compose["services"]
    targets = monitoring.compose_targets()
    for address in (targets.api, targets.exporter, targets.archiver, targets.redis_exporter,
                    targets.pushgateway, targets.freshness_probe, targets.verifier,
                    targets.cassandra,
                    *targets.redis.values()):
        assert address.split(":")[0] in services_, address
    flink = services_["flink-jobmanager"]["environment"]["FLINK_PROPERTIES"]
    assert f"metrics.reporter.prom.hostUrl: http://{targets.pushgateway}" in flink
    assert ("metrics.reporter.prom.factory.class: "
            "org.apache.flink.metrics.prometheus.PrometheusPushGatewayReporterFactory") in flink
    assert "metrics.reporter.prom.jobName: flink" in flink
    assert "metrics.reporter.prom.randomJobNameSuffix: false" in flink
    assert "metrics.reporter.prom.deleteOnShutdown: true" in flink
    assert "metrics.reporter.prom.port" not in flink
    keys = set()
    for name in ("flink-jobmanager", "flink-taskmanager"):
        command = services_[name]["command"]
        assert command[0] == name.removeprefix("flink-")
        key = command[command.index("-D") + 1].removeprefix("metrics.reporter.prom.groupingKey=")
        assert f"component={command[0]}" in key.split(";")
        keys.add(key)
    assert len(keys) == 2, "each Flink process pushes to its own group"
    port = targets.pushgateway.split(":")[1]
    assert services_["pushgateway"]["command"] == [f"--web.listen-address=:{port}"]
    assert "metrics.reporter.prom.filterLabelValueCharacters: false" in flink
    assert "metrics.job.status.enable: STATE;CURRENT_TIME" in flink
    archiver = services_["archiver"]["command"]
    assert archiver[archiver.index("--metrics-port") + 1] == targets.archiver.split(":")[1]
    for name, address in (("exporter", targets.exporter),
                          ("freshness-probe", targets.freshness_probe),
                          ("verifier", targets.verifier)):
        command = services_[name]["command"]
        assert command[command.index("--port") + 1] == address.split(":")[1]
    mounts = services_["prometheus"]["volumes"]
    assert "./infra/prometheus/prometheus.compose.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "./infra/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_cassandra_runs_the_jmx_exporter_agent_on_loopback(settings: StackSettings) -> None:
    from jobs.localstack.cassandra import JMX_EXPORTER_YML, CassandraService

    jars = settings.local.state_dir / "jars"
    for folder, name in (("cassandra", "jamm-0.4.0.jar"), ("cassandra", "cassandra-all.jar")):
        (jars / folder).mkdir(parents=True, exist_ok=True)
        (jars / folder / name).write_bytes(b"PK")
    svc = CassandraService(settings)
    with pytest.raises(FileNotFoundError, match="make jars"):
        svc.command()
    (jars / "jmx-exporter").mkdir()
    agent = jars / "jmx-exporter" / "jmx_prometheus_javaagent-1.0.1.jar"
    agent.write_bytes(b"PK")
    argv, _ = svc.command()
    assert f"-javaagent:{agent}=127.0.0.1:9510:{JMX_EXPORTER_YML}" in argv
    assert argv.index(f"-javaagent:{agent}=127.0.0.1:9510:{JMX_EXPORTER_YML}") < argv.index(
        "org.apache.cassandra.service.CassandraDaemon")
    config = yaml.safe_load(JMX_EXPORTER_YML.read_text())
    assert config["includeObjectNames"], "only the MBeans the rules use"


# --- Flink's reporter --------------------------------------------------------------------


def test_jobmanager_and_taskmanager_push_to_the_pushgateway_in_their_own_groups(
        settings: StackSettings) -> None:
    jar_dir = settings.local.state_dir / "jars" / "flink-metrics"
    jar_dir.mkdir(parents=True)
    (jar_dir / "flink-metrics-prometheus-2.2.1.jar").write_bytes(b"PK\x03\x04 jar")
    groups = {}
    for svc in (FlinkJobManagerService(settings), FlinkTaskManagerService(settings),
                FlinkTaskManagerService(settings, 2)):
        svc.home.mkdir(parents=True, exist_ok=True)
        svc.prepare()
        argv, env = svc.command()
        pairs = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-D")
        # Pushes to the Pushgateway: nothing of Flink's listens for a scrape.
        assert pairs["metrics.reporter.prom.factory.class"].endswith(
            ".PrometheusPushGatewayReporterFactory")
        assert "metrics.reporter.prom.port" not in pairs
        assert pairs["metrics.reporter.prom.hostUrl"] == "http://127.0.0.1:9191"
        assert pairs["metrics.reporter.prom.jobName"] == "flink"
        assert pairs["metrics.reporter.prom.randomJobNameSuffix"] == "false"
        # A clean stop removes the process's series (a dead TaskManager's do not linger).
        assert pairs["metrics.reporter.prom.deleteOnShutdown"] == "true"
        assert pairs["metrics.reporter.prom.interval"] == "7 SECONDS"
        # job_name="feedline-fanout" as the alert rules name it, not "feedline_fanout".
        assert pairs["metrics.reporter.prom.filterLabelValueCharacters"] == "false"
        assert "STATE" in pairs["metrics.job.status.enable"].split(";")
        groups[svc.name] = dict(kv.split("=", 1)
                                for kv in pairs["metrics.reporter.prom.groupingKey"].split(";"))
        plugin = Path(env["FLINK_PLUGINS_DIR"]) / "metrics-prometheus"
        assert [p.name for p in plugin.glob("*.jar")] == ["flink-metrics-prometheus-2.2.1.jar"]
    assert groups == {
        "flink-jobmanager": {"component": "jobmanager", "instance": "flink-jobmanager"},
        "flink-taskmanager": {"component": "taskmanager", "instance": "flink-taskmanager"},
        "flink-taskmanager-2": {"component": "taskmanager", "instance": "flink-taskmanager-2"}}
    # The `flink` client reads config.yaml: the reporter is not in it.
    conf = (settings.local.state_dir / "flink" / "conf" / "config.yaml").read_text()
    assert "prometheus" not in conf.lower()


def test_each_taskmanager_is_a_service_named_by_its_flink_resource_id(
        settings: StackSettings) -> None:
    names = [svc.name for svc in services(settings)]
    tms = taskmanager_services(settings)
    assert [svc.name for svc in tms] == ["flink-taskmanager", "flink-taskmanager-2"][
        :settings.local.flink_taskmanagers]
    assert all(name in names for name in (svc.name for svc in tms))
    assert len({svc.home for svc in tms}) == len(tms)  # own logs, pid file and marker
    for svc in tms:
        jar_dir = settings.local.state_dir / "jars" / "flink-metrics"
        jar_dir.mkdir(parents=True, exist_ok=True)
        (jar_dir / "flink-metrics-prometheus-2.2.1.jar").write_bytes(b"PK\x03\x04 jar")
        svc.home.mkdir(parents=True, exist_ok=True)
        svc.prepare()
        argv, _env = svc.command()
        pairs = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-D")
        assert pairs["taskmanager.resource-id"] == svc.name
    conf = (settings.local.state_dir / "flink" / "conf" / "config.yaml").read_text()
    assert "load-balance" in conf and "SLOTS" in conf


def test_flink_without_the_reporter_jar_says_how_to_fetch_it(settings: StackSettings) -> None:
    svc = FlinkJobManagerService(settings)
    svc.home.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="make jars"):
        svc.prepare()


# --- the exporter ------------------------------------------------------------------------


class _FakeKafka(exporter.KafkaCollector):
    def __init__(self, result: Any) -> None:
        super().__init__(KafkaSettings())
        self.result = result

    def read(self) -> Any:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_the_exporter_watches_each_job_and_the_archiver() -> None:
    assert exporter.consumers(KafkaSettings()) == {
        "fanout": ("feedline-fanout", ["uploads", "follows"]),
        "counters": ("feedline-counters", ["engagements", "follows", "uploads"]),
        "notifications": ("feedline-notifications", ["uploads", "engagements", "follows"]),
        "archiver": ("feedline-archiver", ["uploads", "follows", "engagements"]),
    }


def test_the_exporter_reports_lag_per_partition_and_dead_letters() -> None:
    registry = CollectorRegistry()
    registry.register(_FakeKafka((
        {"fanout": [PartitionLag("feedline-fanout", "uploads", 0, 40, 100),
                    PartitionLag("feedline-fanout", "uploads", 1, None, 7)]},
        {"uploads.dlq": (12, 5)},
    )))
    got = samples(registry)
    key = (("consumer", "fanout"), ("group", "feedline-fanout"), ("partition", "0"),
           ("topic", "uploads"))
    assert got[("feedline_kafka_consumer_lag", key)] == 60
    assert got[("feedline_kafka_consumer_committed_offset", key)] == 40
    never = (("consumer", "fanout"), ("group", "feedline-fanout"), ("partition", "1"),
             ("topic", "uploads"))
    assert got[("feedline_kafka_consumer_lag", never)] == 7
    assert got[("feedline_kafka_consumer_committed_offset", never)] == -1
    assert got[("feedline_dead_letters_total", (("topic", "uploads.dlq"),))] == 12
    assert got[("feedline_dead_letter_depth", (("topic", "uploads.dlq"),))] == 5
    assert got[("feedline_exporter_kafka_up", ())] == 1


def test_the_exporter_says_when_kafka_does_not_answer() -> None:
    registry = CollectorRegistry()
    registry.register(_FakeKafka(OSError("connection refused")))
    assert samples(registry) == {("feedline_exporter_kafka_up", ()): 0}


def test_the_exporter_reports_the_local_stacks_processes(settings: StackSettings) -> None:
    home = settings.local.state_dir / "kafka"
    home.mkdir(parents=True)
    record = RestartRecord()
    record.restarted(0.0)
    record.restarted(1.0)
    restarts.save(home, record)
    registry = CollectorRegistry()
    registry.register(exporter.LocalStackCollector(settings))
    got = samples(registry)
    assert got[("feedline_stack_service_restarts_total", (("service", "kafka"),))] == 2
    assert got[("feedline_stack_service_running", (("service", "kafka"),))] == 0
    assert got[("feedline_stack_filesystem_size_bytes",
                (("path", str(settings.local.state_dir)),))] > 0
    assert 0 < got[("feedline_host_memory_available_bytes", ())] <= (
        got[("feedline_host_memory_total_bytes", ())])


# --- the archiver's metrics --------------------------------------------------------------


def test_the_archiver_counts_what_it_writes() -> None:
    from jobs.feedctl.archive import _serve_metrics

    port = free_port()
    on_written = _serve_metrics("127.0.0.1", port)
    on_written(WrittenBatch("uploads", 0, 10, 19, ("a", "b")))
    on_written(WrittenBatch("uploads", 1, 0, 4, ("c",)))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    assert got[("feedline_archive_objects_total", (("topic", "uploads"),))] == 3
    assert got[("feedline_archive_records_total", (("topic", "uploads"),))] == 15
    assert got[("feedline_archive_last_write_timestamp_seconds", ())] > 0


def test_an_archiver_whose_metrics_port_is_taken_archives_anyway(
        caplog: pytest.LogCaptureFixture) -> None:
    from jobs.feedctl import archive

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.MonkeyPatch.context() as patch:
            # Fresh metric objects: the module-level names are registered once per process.
            patch.setattr("prometheus_client.Counter", lambda *a, **k: _Sink())
            patch.setattr("prometheus_client.Gauge", lambda *a, **k: _Sink())
            on_written = archive._serve_metrics("127.0.0.1", port)
        on_written(WrittenBatch("uploads", 0, 0, 0, ("a",)))
    assert "metrics not served" in caplog.text


class _Sink:
    def labels(self, *_: Any) -> _Sink:
        return self

    def inc(self, *_: Any) -> None:
        pass

    def set_to_current_time(self) -> None:
        pass


# --- the API counts requests failed by a dependency --------------------------------------


@pytest.fixture
def failing_app() -> Iterator[TestClient]:
    app = FastAPI()
    install_handlers(app)

    @app.get("/publish")
    async def publish() -> None:
        raise StoreUnavailable("kafka", "unreachable (failing fast after a recent error)")

    with TestClient(app) as client:
        yield client


def test_a_request_failed_by_a_dependency_is_counted(failing_app: TestClient) -> None:
    before = UNAVAILABLE.labels("kafka")._value.get()
    response = failing_app.get("/publish")
    assert response.status_code == 503
    assert response.json()["dependency"] == "kafka"
    assert UNAVAILABLE.labels("kafka")._value.get() == before + 1


# --- the freshness probe -----------------------------------------------------------------


class _FakeApi:
    """The API as the probe sees it: the post shows in the feed after ``visible_after`` polls."""

    def __init__(self, visible_after: int | None) -> None:
        self.visible_after = visible_after
        self.calls: list[tuple[str, str, str]] = []
        self.tokens: dict[str, str] = {}
        self.polls = 0

    def call(self, method: str, path: str, user: str, body: Any = None) -> Any:
        self.calls.append((method, path, user))
        if (method, path) == ("POST", "/v1/media"):
            assert body == {"content_type": "image/png", "bytes": len(freshness_probe.PROBE_PNG)}
            return {"media_id": "m1", "upload_url": "http://gcs/upload", "upload_headers": {}}
        if (method, path) == ("POST", "/v1/posts"):
            assert body["media_ids"] == ["m1"]
            return {"post_id": "p1"}
        if (method, path) == ("POST", "/v1/media/m1/complete"):
            raise freshness_probe.ProbeError("no such route", 404)  # an API without the step
        if method == "GET":
            self.polls += 1
            shown = self.visible_after is not None and self.polls > self.visible_after
            return {"items": [{"post_id": "p1"}] if shown else [{"post_id": "other"}]}
        return None

    def upload(self, url: str, headers: dict[str, str], payload: bytes) -> None:
        self.calls.append(("PUT", url, "upload"))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_probe_times_a_post_until_the_follower_sees_it_then_deletes_it() -> None:
    api, clock = _FakeApi(visible_after=3), _Clock()
    probe = freshness_probe.FreshnessProbe(api, timeout_s=60, poll_s=0.5,  # type: ignore[arg-type]
                                           clock=clock, sleep=clock.sleep)
    before = freshness_probe.FRESHNESS._sum.get()
    assert probe.once() == 1.5  # three polls without it, 0.5 s apart
    assert freshness_probe.FRESHNESS._sum.get() == before + 1.5
    assert api.calls[:4] == [("PUT", "/v1/users/probe-author/follow", "probe-follower"),
                             ("POST", "/v1/media", "probe-author"),
                             ("PUT", "http://gcs/upload", "upload"),
                             ("POST", "/v1/media/m1/complete", "probe-author")]
    assert ("POST", "/v1/posts", "probe-author") in api.calls
    assert api.calls[-1] == ("DELETE", "/v1/posts/p1", "probe-author")
    api.calls.clear()
    api.polls = 0
    assert probe.once() == 1.5
    assert ("POST", "/v1/media", "probe-author") not in api.calls  # uploaded once


def test_a_post_never_seen_is_a_timeout_and_is_still_deleted() -> None:
    api, clock = _FakeApi(visible_after=None), _Clock()
    probe = freshness_probe.FreshnessProbe(api, timeout_s=10, poll_s=1,  # type: ignore[arg-type]
                                           clock=clock, sleep=clock.sleep)
    timeouts = freshness_probe.FAILURES.labels("timeout")._value.get()
    assert probe.once() is None
    assert freshness_probe.FAILURES.labels("timeout")._value.get() == timeouts + 1
    assert api.calls[-1] == ("DELETE", "/v1/posts/p1", "probe-author")


def test_a_refused_request_is_an_api_failure() -> None:
    class Refusing(_FakeApi):
        def call(self, method: str, path: str, user: str, body: Any = None) -> Any:
            if (method, path) == ("POST", "/v1/posts"):
                raise freshness_probe.ProbeError("POST /v1/posts: 503")
            return super().call(method, path, user, body)

    probe = freshness_probe.FreshnessProbe(Refusing(1))  # type: ignore[arg-type]
    failures = freshness_probe.FAILURES.labels("api")._value.get()
    assert probe.once() is None
    assert freshness_probe.FAILURES.labels("api")._value.get() == failures + 1


def test_the_probe_signs_tokens_the_api_accepts() -> None:
    from serving.auth import token_policy, verify_token

    settings = ServingSettings(environment="dev")
    tokens = freshness_probe.probe_tokens(settings, 3600)
    for user, token in tokens.items():
        subject, _ = verify_token(settings.api.jwt_secret, token, token_policy(settings.api))
        assert subject == user
