"""docker-compose.yml is valid Compose and agrees with the settings, the CLI and the images.

No Docker engine runs here. The file is validated against the Compose Specification schema
that check-jsonschema ships, and by `docker compose config` where a Compose CLI is installed
(it parses, merges and checks references without an engine). The checks below add what a
schema cannot know: the containers' settings, ports, topics and buckets agree with
feedline.settings, the streaming jobs are deployed with container-side paths, and the API
image serves on the published port (test_images.py checks what the images install).
Each check returns the problems it finds; the tests assert there are none, and broken
copies show that the checks catch what they are for.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from feedline.settings import (
    REPO_ROOT,
    BatchSettings,
    ServingSettings,
    SettingsError,
    StackSettings,
    StreamingSettings,
)
from jobs.feedctl.main import build_parser
from jobs.flink_submit import flink_run_argv, savepoint_target
from jobs.localstack.kafka import TOPIC_CONFIGS
from jobs.specs import JOBS

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

ONE_SHOT = {"kafka-init", "cql-migrate", "flink-jobs"}
FLINK = {"flink-jobmanager", "flink-taskmanager", "flink-jobs"}
#: Which settings model each app container's FEEDLINE_* environment is read by.
SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "api": ServingSettings,
    "archiver": BatchSettings,  # `feedctl archive run`
    "media-worker": BatchSettings,  # `feedctl media run`
    "cql-migrate": StackSettings,  # `feedctl db migrate`
    "flink-jobmanager": StreamingSettings,
    "flink-taskmanager": StreamingSettings,
    "flink-jobs": StackSettings,  # `feedctl jobs deploy`; the jobs get StreamingSettings
    "exporter": StackSettings,  # python -m jobs.exporter
    "freshness-probe": ServingSettings,  # python -m jobs.freshness_probe
    "verifier": BatchSettings,  # python -m jobs.verifier
}
#: Where the official Flink image keeps the configuration its entrypoint writes.
FLINK_IMAGE_CONF_DIR = "/opt/flink/conf"

Compose = dict[str, Any]


# --- helpers -----------------------------------------------------------------------------


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as compose passes it: every value a string."""
    env = service.get("environment") or {}
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}


def feedline_environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in environment(service).items() if k.startswith("FEEDLINE_")}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each short-syntax published port."""
    split = [str(entry).split(":") for entry in service.get("ports") or []]
    return [(p[0] if len(p) == 3 else "", int(p[-2]), int(p[-1])) for p in split]


def url_part(address: str, part: str) -> Any:
    """``hostname`` or ``port`` of ``host:port`` or of a URL."""
    return getattr(urlsplit(address if "://" in address else f"//{address}"), part)


def flink_properties(service: dict[str, Any]) -> dict[str, str]:
    raw = environment(service).get("FLINK_PROPERTIES", "")
    pairs = (line.split(":", 1) for line in raw.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def settings_from(model: type[BaseSettings], env: dict[str, str], monkeypatch: Any) -> Any:
    """Build ``model`` from exactly ``env`` (no ambient FEEDLINE_* values, no .env file)."""
    monkeypatch.chdir(REPO_ROOT / "tests")  # no .env there
    for name in [n for n in os.environ if n.startswith("FEEDLINE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return model(_env_file=None)


def setting_at(settings: Any, env_name: str) -> Any:
    """The value an env var such as FEEDLINE_KAFKA__BOOTSTRAP_SERVERS names."""
    value = settings
    for part in env_name.removeprefix("FEEDLINE_").lower().split("__"):
        if part not in type(value).model_fields:
            raise LookupError(f"{env_name}: {type(value).__name__} has no field {part!r}")
        value = getattr(value, part)
    return value


def landed(value: Any, raw: str) -> bool:
    """Whether a parsed setting equals the env string it was read from."""
    if isinstance(value, tuple | list):
        return list(value) == json.loads(raw)
    return str(value).lower() == raw.lower() if isinstance(value, bool) else str(value) == raw


def compose_cli() -> list[str] | None:
    """`docker compose` or a standalone `docker-compose` v2, when one is installed."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) and subprocess.run(
            [*argv, "version"], capture_output=True, check=False
        ).returncode == 0:
            return argv
    return None


# --- checks ------------------------------------------------------------------------------


def schema_problems(path: Path) -> list[str]:
    """check-jsonschema against its vendored Compose Specification schema."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)], capture_output=True, text=True, check=False,
    )
    return [] if result.returncode == 0 else [result.stdout + result.stderr]


def lifecycle_problems(compose: Compose) -> list[str]:
    """One-shots never restart; everything else restarts and has a health check; every
    dependency waits for completion (one-shots) or health."""
    services, problems = compose["services"], []
    for name, service in services.items():
        if (service.get("restart") == "no") != (name in ONE_SHOT):
            problems.append(f"{name}: restart {service.get('restart')!r}")
        if name not in ONE_SHOT and not (service.get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: long-running service without a healthcheck")
        for dependency, spec in (service.get("depends_on") or {}).items():
            wanted = ("service_completed_successfully" if dependency in ONE_SHOT
                      else "service_healthy")
            if dependency not in services or (spec or {}).get("condition") != wanted:
                problems.append(f"{name}: {dependency} should be a service, {wanted}")
    return problems


def port_problems(compose: Compose, defaults: StackSettings) -> list[str]:
    """Published ports are the settings' default endpoints, on loopback only."""
    expected = {
        "kafka": url_part(defaults.kafka.bootstrap_servers, "port"),
        "scylla": defaults.cql.port,
        "redis": url_part(defaults.redis.url, "port"),
        "gcs": url_part(defaults.storage.emulator_host or "", "port"),
        "flink-jobmanager": url_part(defaults.flink.rest_url, "port"),
        "api": defaults.api.port,
        "prometheus": defaults.monitoring.prometheus_port,
    }
    problems = []
    for name, service in compose["services"].items():
        published = published_ports(service)
        if {port for _, port, _ in published} != ({expected[name]} if name in expected else set()):
            problems.append(f"{name}: publishes {published}, settings say {expected.get(name)}")
        problems += [f"{name}: port {port} bound to {ip or 'all interfaces'}"
                     for ip, port, _ in published if ip != "127.0.0.1"]
    return problems


def environment_problems(compose: Compose, name: str, monkeypatch: Any) -> list[str]:
    """FEEDLINE_* values of one container: accepted by its settings model and landed."""
    env = feedline_environment(compose["services"][name])
    try:
        settings = settings_from(SETTINGS_OF[name], env, monkeypatch)
    except SettingsError as exc:
        return [f"{name}: {SETTINGS_OF[name].__name__} rejects its environment: {exc}"]
    problems = []
    for env_name, raw in env.items():
        try:
            if not landed(value := setting_at(settings, env_name), raw):
                problems.append(f"{name}: {env_name}={raw!r} became {value!r}")
        except LookupError as exc:
            problems.append(f"{name}: {exc}")
    return problems


def endpoint_problems(compose: Compose, name: str, monkeypatch: Any) -> list[str]:
    """The endpoints the container's processes (for Flink: the jobs) read name compose
    services and ports they listen on inside the network."""
    services = compose["services"]
    model = StreamingSettings if name in FLINK else SETTINGS_OF[name]
    env = {k: v for k, v in feedline_environment(services[name]).items()
           if k.removeprefix("FEEDLINE_").split("__")[0].lower() in model.model_fields}
    settings = settings_from(model, env, monkeypatch)
    kafka = environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    problems = [] if f"INTERNAL://{settings.kafka.bootstrap_servers}" in kafka.split(",") else [
        f"{name}: Kafka bootstrap {settings.kafka.bootstrap_servers} is not the INTERNAL listener"]
    endpoints = {
        "scylla": f"{settings.cql.contact_points[0]}:{settings.cql.port}",
        "redis": settings.redis.url,
        "gcs": settings.storage.emulator_host or "",
        **({"flink-jobmanager": settings.flink.rest_url} if name in FLINK else {}),
    }
    for service, address in endpoints.items():
        listening = {target for _, _, target in published_ports(services[service])}
        if (url_part(address, "hostname"), url_part(address, "port") in listening) != (
                service, True):
            problems.append(f"{name}: {address} is not the {service} service")
    plain = environment(services[name]).get("STORAGE_EMULATOR_HOST", endpoints["gcs"])
    if plain != endpoints["gcs"]:
        problems.append(f"{name}: STORAGE_EMULATOR_HOST {plain} != {endpoints['gcs']}")
    return problems


def flink_problems(compose: Compose, monkeypatch: Any) -> list[str]:
    """Every Flink container: FLINK_PROPERTIES agree with the settings; checkpoints and
    savepoints are on the volume every Flink container shares."""
    services, problems = compose["services"], []
    for name in sorted(FLINK):
        service, properties = services[name], flink_properties(services[name])
        settings = settings_from(StackSettings, feedline_environment(service), monkeypatch)
        pairs = [
            ("taskmanager.numberOfTaskSlots", str(settings.flink.task_slots)),
            ("parallelism.default", str(settings.flink.parallelism)),
            ("execution.checkpointing.savepoint-dir", savepoint_target(settings)),
        ]
        problems += [f"{name}: {key} is {properties.get(key)!r}, settings say {want!r}"
                     for key, want in pairs if properties.get(key) != want]
        mounts = [v.split(":")[1] for v in service.get("volumes") or []]
        for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
            path = urlsplit(properties.get(key, "")).path
            if not any(path.startswith(f"{mount}/") for mount in mounts):
                problems.append(f"{name}: {key} {path!r} is not on a shared volume")
    return problems


def deploy_problems(compose: Compose, monkeypatch: Any) -> list[str]:
    """flink-jobs runs a `feedctl jobs deploy` the CLI accepts, in the Flink image, after
    the TaskManager, and hands the cluster container-side paths only."""
    services, problems = compose["services"], []
    service = services["flink-jobs"]
    args = build_parser().parse_args(service["command"][1:])
    if service["command"][0] != "feedctl" or (args.noun, args.verb, args.name) != (
            "jobs", "deploy", "all") or not args.if_not_running:
        problems.append(f"flink-jobs runs {service['command']}")
    if service.get("image") != services["flink-taskmanager"]["image"]:
        problems.append("flink-jobs does not run the Flink image")
    if "flink-taskmanager" not in (service.get("depends_on") or {}):
        problems.append("flink-jobs does not wait for a TaskManager")
    # The image's entrypoint writes FLINK_PROPERTIES into the client's configuration.
    if "entrypoint" in service or flink_properties(service) != flink_properties(
            services["flink-jobmanager"]):
        problems.append("flink-jobs' client configuration is not the cluster's")
    settings = settings_from(StackSettings, feedline_environment(service), monkeypatch)
    if str(settings.flink.client_conf_dir) != FLINK_IMAGE_CONF_DIR:
        problems.append(f"flink-jobs' client reads {settings.flink.client_conf_dir}")
    argv = flink_run_argv(settings, JOBS["fanout"].script, [], from_savepoint=None)
    pyexec = argv[argv.index("-pyexec") + 1]
    if pyexec != settings.flink.python_executable or pyexec == sys.executable:
        problems.append(f"flink-jobs gives the workers -pyexec {pyexec}")
    if not savepoint_target(settings).startswith("file:///flink-state/"):
        problems.append(f"flink-jobs' savepoints go to {savepoint_target(settings)}")
    return problems


def kafka_and_bucket_problems(compose: Compose, defaults: StackSettings) -> list[str]:
    """kafka-init creates the settings' topics and dead-letter topics; gcs the buckets."""
    init = environment(compose["services"]["kafka-init"])
    kafka, storage = defaults.kafka, defaults.storage
    found = {
        "EVENT_TOPICS": (init.get("EVENT_TOPICS", "").split(), list(kafka.event_topics)),
        "DLQ_TOPICS": (init.get("DLQ_TOPICS", "").split(),
                       [kafka.dlq_topic(t) for t in kafka.event_topics]),
        "EVENT_TOPIC_PARTITIONS": (init.get("EVENT_TOPIC_PARTITIONS"), str(kafka.partitions)),
        "MEDIA_TOPIC": (init.get("MEDIA_TOPIC"), kafka.media_topic),
        "MEDIA_DLQ_TOPIC": (init.get("MEDIA_DLQ_TOPIC"), kafka.dlq_topic(kafka.media_topic)),
        "BUCKETS": (environment(compose["services"]["gcs"]).get("BUCKETS", "").split(),
                    [storage.media_bucket, storage.archive_bucket]),
    }
    problems = [f"{key} is {have}, settings say {want}" for key, (have, want) in found.items()
                if have != want]
    script = "\n".join(compose["services"]["kafka-init"].get("command", []))
    problems += [f"kafka-init does not create topics with {key}={value}"
                 for key, value in TOPIC_CONFIGS.items()
                 if f"--config {key}={value}" not in script]
    return problems


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Compose:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> StackSettings:
    """StackSettings exactly as declared: no FEEDLINE_* env, no .env file."""
    return settings_from(StackSettings, {}, monkeypatch)


@pytest.fixture
def broken(compose: Compose) -> Compose:
    """A copy of the compose file that a test may break."""
    return copy.deepcopy(compose)


def write(compose: Compose, folder: Path) -> Path:
    path = folder / "docker-compose.yml"
    path.write_text(yaml.safe_dump(compose))
    return path


# --- tests: the file is valid Compose ----------------------------------------------------


def test_the_file_matches_the_compose_specification_schema(tmp_path: Path) -> None:
    assert schema_problems(COMPOSE_FILE) == []


def test_the_schema_check_rejects_an_invalid_file(broken: Compose, tmp_path: Path) -> None:
    broken["services"]["flink-jobs"]["restart"] = "sometimes"
    broken["services"]["api"]["depends_on"]["redis"]["condition"] = "service_ready"
    assert schema_problems(write(broken, tmp_path))


def test_docker_compose_config_accepts_the_file(broken: Compose, tmp_path: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose CLI installed")
    ok = subprocess.run([*cli, "-f", str(COMPOSE_FILE), "config", "-q"],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    # It also checks what the schema cannot: references between services.
    broken["services"]["flink-jobs"]["depends_on"]["flink-taskmgr"] = {
        "condition": "service_healthy"}
    bad = subprocess.run([*cli, "-f", str(write(broken, tmp_path)), "config", "-q"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "flink-taskmgr" in bad.stderr


# --- tests: the stack agrees with the settings -------------------------------------------


def test_one_shots_finish_and_services_wait_for_health(compose: Compose) -> None:
    assert lifecycle_problems(compose) == []


def test_published_ports_are_the_settings_defaults_on_loopback(
    compose: Compose, defaults: StackSettings
) -> None:
    assert port_problems(compose, defaults) == []


def test_every_container_with_feedline_environment_is_checked(compose: Compose) -> None:
    assert {n for n, s in compose["services"].items() if feedline_environment(s)} == set(
        SETTINGS_OF)


@pytest.mark.parametrize("name", sorted(SETTINGS_OF))
def test_settings_are_accepted_land_and_name_compose_services(
    compose: Compose, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert environment_problems(compose, name, monkeypatch) == []
    assert endpoint_problems(compose, name, monkeypatch) == []


def test_topics_and_buckets_are_the_settings(compose: Compose, defaults: StackSettings) -> None:
    assert kafka_and_bucket_problems(compose, defaults) == []


def test_flink_containers_agree_with_the_settings_and_the_image(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert flink_problems(compose, monkeypatch) == []


def test_the_jobs_are_deployed_with_container_side_paths(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert deploy_problems(compose, monkeypatch) == []


def test_local_submissions_keep_this_interpreter_and_state_dir(defaults: StackSettings) -> None:
    argv = flink_run_argv(defaults, JOBS["counters"].script, ["--job-name", "x"], detached=True,
                          from_savepoint="file:///sp/1")
    assert argv[argv.index("-pyexec") + 1] == argv[argv.index("-pyclientexec") + 1] == (
        sys.executable)
    assert argv[argv.index("-s") + 1] == "file:///sp/1" and "-d" in argv
    assert argv[-2:] == ["--job-name", "x"]
    assert savepoint_target(defaults) == (defaults.local.state_dir / "flink" / "savepoints"
                                          ).resolve().as_uri()


# --- tests: the checks catch breakage ----------------------------------------------------


def test_checks_catch_a_restarting_one_shot_and_a_wrong_condition(broken: Compose) -> None:
    broken["services"]["flink-jobs"]["restart"] = "on-failure"
    broken["services"]["api"]["depends_on"]["kafka-init"]["condition"] = "service_started"
    assert len(lifecycle_problems(broken)) == 2


def test_checks_catch_an_exposed_port(broken: Compose, defaults: StackSettings) -> None:
    broken["services"]["redis"]["ports"] = ["6380:6379"]
    assert len(port_problems(broken, defaults)) == 2


def test_checks_catch_an_unknown_variable(broken: Compose, monkeypatch: Any) -> None:
    broken["services"]["api"]["environment"]["FEEDLINE_REDIS__ADDRESS"] = "redis:6379"
    assert environment_problems(broken, "api", monkeypatch)


def test_checks_catch_an_endpoint_on_the_wrong_port(broken: Compose, monkeypatch: Any) -> None:
    broken["services"]["flink-jobs"]["environment"]["FEEDLINE_REDIS__URL"] = "redis://redis:1/0"
    assert endpoint_problems(broken, "flink-jobs", monkeypatch)


def test_checks_catch_host_paths_handed_to_the_cluster(broken: Compose, monkeypatch: Any) -> None:
    env = broken["services"]["flink-jobs"]["environment"]
    del env["FEEDLINE_FLINK__PYTHON_EXECUTABLE"], env["FEEDLINE_FLINK__SAVEPOINT_DIR"]
    assert len(deploy_problems(broken, monkeypatch)) == 2


def test_checks_catch_a_savepoint_dir_off_the_volume(broken: Compose, monkeypatch: Any) -> None:
    broken["services"]["flink-taskmanager"]["volumes"] = []
    assert flink_problems(broken, monkeypatch)


def test_checks_catch_a_renamed_topic(broken: Compose, defaults: StackSettings) -> None:
    broken["services"]["kafka-init"]["environment"]["DLQ_TOPICS"] = "uploads.dlq follows.dlq"
    assert kafka_and_bucket_problems(broken, defaults)
