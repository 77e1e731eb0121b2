"""docker-compose.yml and its Dockerfiles agree with feedline.settings.

No Docker engine runs here, so the compose file is parsed, not started. Each check is a
function returning the problems it finds; the tests assert there are none, and a few
tests feed deliberately broken copies to show that the checks do catch breakage.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from feedline.settings import (
    REPO_ROOT,
    BatchSettings,
    KafkaSettings,
    ServingSettings,
    StackSettings,
    StorageSettings,
    StreamingSettings,
)

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
FLINK_DOCKERFILE = REPO_ROOT / "infra" / "docker" / "flink" / "Dockerfile"
API_DOCKERFILE = REPO_ROOT / "infra" / "docker" / "api" / "Dockerfile"
MAVEN_POM = REPO_ROOT / "infra" / "maven" / "pom.xml"

LONG_RUNNING = {"scylla", "kafka", "redis", "gcs", "flink-jobmanager", "flink-taskmanager", "api",
                "archiver"}
ONE_SHOT = {"kafka-init", "cql-migrate"}
#: Which settings model reads the FEEDLINE_* environment of each app container.
SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "api": ServingSettings,
    "archiver": BatchSettings,  # `feedctl archive run` reads the batch settings
    "cql-migrate": StackSettings,  # feedctl reads the stack settings
    "flink-jobmanager": StreamingSettings,
    "flink-taskmanager": StreamingSettings,
}
#: Registry host names that must never appear in the build files (images are named plainly).
REGISTRY_HOSTS = re.compile(
    r"maven\.org|maven\.apache|pypi\.org|pythonhosted|docker\.io|ghcr\.io|quay\.io|gcr\.io"
)

Compose = dict[str, Any]


# --- helpers -----------------------------------------------------------------------------


def load_compose() -> Compose:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as compose passes it: every value a string."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}


def feedline_environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in environment(service).items() if k.startswith("FEEDLINE_")}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port."""
    found = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            found.append((entry.get("host_ip", ""), int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        found.append((host_ip, int(parts[-2]), int(parts[-1])))
    return found


def container_ports(service: dict[str, Any]) -> set[int]:
    return {target for _, _, target in published_ports(service)}


def port_of(address: str) -> int | None:
    """Port of ``host:port`` or of a URL."""
    return urlsplit(address if "://" in address else f"//{address}").port


def host_of(address: str) -> str | None:
    return urlsplit(address if "://" in address else f"//{address}").hostname


def script(service: dict[str, Any]) -> str:
    """Entry point and command of a service as one string."""
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts.extend([value] if isinstance(value, str) else [str(v) for v in value])
    return "\n".join(parts)


def advertised_listeners(kafka: dict[str, Any]) -> dict[str, str]:
    """Listener name -> advertised host:port of the Kafka service."""
    raw = environment(kafka)["KAFKA_ADVERTISED_LISTENERS"]
    return dict(item.split("://", 1) for item in raw.split(","))


def flink_properties(service: dict[str, Any]) -> dict[str, str]:
    raw = environment(service).get("FLINK_PROPERTIES", "")
    pairs = (line.split(":", 1) for line in raw.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def dockerfile_arg(dockerfile: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile} declares no ARG {name} with a default"
    return match.group(1)


def clear_feedline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FEEDLINE_"):
            monkeypatch.delenv(name)


def settings_from(
    model: type[BaseSettings],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """Build ``model`` from exactly ``env`` (no ambient FEEDLINE_* values, no .env file)."""
    clear_feedline_environment(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return model(_env_file=None)


def setting_at(settings: Any, env_name: str) -> Any:
    """The settings value an env var such as FEEDLINE_KAFKA__BOOTSTRAP_SERVERS names."""
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
    if isinstance(value, bool):
        return str(value).lower() == raw.lower()
    return str(value) == raw


# --- checks ------------------------------------------------------------------------------


def service_problems(compose: Compose) -> list[str]:
    names = set(compose.get("services", {}))
    expected = LONG_RUNNING | ONE_SHOT
    return [f"missing service {n}" for n in sorted(expected - names)] + [
        f"unexpected service {n} (add it to the test's lists)" for n in sorted(names - expected)
    ]


def health_problems(compose: Compose) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        test = check.get("test")
        if name in ONE_SHOT:
            if service.get("restart") not in ("no", None):
                problems.append(f"{name}: a one-shot service must not restart")
            continue
        if check.get("disable") or not test or test in (["NONE"], "NONE"):
            problems.append(f"{name}: long-running service without a healthcheck")
            continue
        if isinstance(test, list) and test[0] == "CMD" and "-c" in test and "python" in test[1]:
            code = test[test.index("-c") + 1]
            try:
                compile(code, f"{name} healthcheck", "exec")
            except SyntaxError as exc:
                problems.append(f"{name}: healthcheck Python does not parse: {exc}")
    return problems


def dependency_problems(compose: Compose) -> list[str]:
    services = compose["services"]
    problems = []
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if not isinstance(depends_on, dict):
            problems.append(f"{name}: depends_on must be a mapping with conditions")
            continue
        for dependency, spec in depends_on.items():
            wanted = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            condition = (spec or {}).get("condition")
            if dependency not in services:
                problems.append(f"{name}: depends on unknown service {dependency}")
            elif condition != wanted:
                problems.append(f"{name}: {dependency} should be {wanted}, not {condition}")
            elif wanted == "service_healthy" and not services[dependency].get("healthcheck"):
                problems.append(f"{name}: waits for {dependency}, which has no healthcheck")
    return problems


def expected_host_ports(defaults: StackSettings) -> dict[str, int | None]:
    """The host port each service must publish: the settings' default endpoints."""
    return {
        "kafka": port_of(defaults.kafka.bootstrap_servers),
        "scylla": defaults.cql.port,
        "redis": port_of(defaults.redis.url),
        "gcs": port_of(defaults.storage.emulator_host or ""),
        "flink-jobmanager": port_of(defaults.flink.rest_url),
        "api": defaults.api.port,
    }


def port_problems(compose: Compose, defaults: StackSettings) -> list[str]:
    expected = expected_host_ports(defaults)
    problems = []
    for name, service in compose["services"].items():
        published = published_ports(service)
        want = expected.get(name)
        if want is None:
            if published:
                problems.append(f"{name}: publishes {published} but has no settings default")
            continue
        host_ports = {port for _, port, _ in published}
        if host_ports != {want}:
            problems.append(f"{name}: publishes {sorted(host_ports)}, settings say {want}")
        for host_ip, port, _ in published:
            if host_ip != "127.0.0.1":
                problems.append(f"{name}: port {port} is bound to {host_ip or 'all interfaces'}")
    return problems


def environment_problems(compose: Compose, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """FEEDLINE_* values of one container: accepted by its settings model and landed."""
    env = feedline_environment(compose["services"][name])
    if not env:
        return [f"{name}: no FEEDLINE_* environment"]
    model = SETTINGS_OF[name]
    try:
        settings = settings_from(model, env, monkeypatch)
    except ValidationError as exc:
        return [f"{name}: {model.__name__} rejects its environment: {exc}"]
    problems = []
    for env_name, raw in env.items():
        try:
            value = setting_at(settings, env_name)
        except LookupError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if not landed(value, raw):
            problems.append(f"{name}: {env_name}={raw!r} became {value!r}")
    return problems


def endpoint_problems(compose: Compose, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The container's endpoints name compose services and the ports they listen on."""
    services = compose["services"]
    settings = settings_from(SETTINGS_OF[name], feedline_environment(services[name]), monkeypatch)
    problems = []
    if settings.environment != "dev":
        problems.append(f"{name}: FEEDLINE_ENVIRONMENT is {settings.environment}, not dev")

    bootstrap = settings.kafka.bootstrap_servers
    if bootstrap not in advertised_listeners(services["kafka"]).values():
        problems.append(f"{name}: Kafka bootstrap {bootstrap} is not an advertised listener")
    if host_of(bootstrap) != "kafka":
        problems.append(f"{name}: Kafka bootstrap {bootstrap} is not the kafka service")

    if settings.cql.contact_points != ("scylla",):
        problems.append(f"{name}: CQL contact points {settings.cql.contact_points}")
    if settings.cql.port not in container_ports(services["scylla"]):
        problems.append(f"{name}: CQL port {settings.cql.port} is not scylla's")

    redis_url = settings.redis.url
    if host_of(redis_url) != "redis" or port_of(redis_url) not in container_ports(
        services["redis"]
    ):
        problems.append(f"{name}: Redis URL {redis_url} is not the redis service")

    emulator = settings.storage.emulator_host or ""
    gcs_port = int(environment(services["gcs"])["PORT"])
    if host_of(emulator) != "gcs" or port_of(emulator) != gcs_port:
        problems.append(f"{name}: emulator host {emulator!r} is not gcs:{gcs_port}")
    plain = environment(services[name]).get("STORAGE_EMULATOR_HOST")
    if plain is not None and plain != emulator:
        problems.append(f"{name}: STORAGE_EMULATOR_HOST {plain} != {emulator}")

    if isinstance(settings, StreamingSettings):
        rest = settings.flink.rest_url
        if host_of(rest) != "flink-jobmanager" or port_of(rest) not in container_ports(
            services["flink-jobmanager"]
        ):
            problems.append(f"{name}: Flink REST URL {rest} is not the JobManager")
        properties = flink_properties(services[name])
        if properties.get("taskmanager.numberOfTaskSlots") != str(settings.flink.task_slots):
            problems.append(f"{name}: task slots differ from FEEDLINE_FLINK__TASK_SLOTS")
        if properties.get("parallelism.default") != str(settings.flink.parallelism):
            problems.append(f"{name}: parallelism differs from FEEDLINE_FLINK__PARALLELISM")
    return problems


def topic_problems(compose: Compose, kafka: KafkaSettings) -> list[str]:
    init = compose["services"]["kafka-init"]
    env = environment(init)
    problems = []
    if env.get("EVENT_TOPICS", "").split() != list(kafka.event_topics):
        problems.append(f"event topics {env.get('EVENT_TOPICS')} != {kafka.event_topics}")
    dead_letters = [kafka.dlq_topic(t) for t in kafka.event_topics]
    if env.get("DLQ_TOPICS", "").split() != dead_letters:
        problems.append(f"dead-letter topics {env.get('DLQ_TOPICS')} != {dead_letters}")
    if env.get("EVENT_TOPIC_PARTITIONS") != str(kafka.partitions):
        problems.append(f"event topics get {env.get('EVENT_TOPIC_PARTITIONS')} partitions")
    if env.get("DLQ_TOPIC_PARTITIONS") != "1":
        problems.append(f"dead-letter topics get {env.get('DLQ_TOPIC_PARTITIONS')} partitions")
    if env.get("BOOTSTRAP") != advertised_listeners(compose["services"]["kafka"]).get("INTERNAL"):
        problems.append("kafka-init does not use the internal listener")
    commands = script(init)
    for variable in ("BOOTSTRAP", "EVENT_TOPICS", "DLQ_TOPICS", "EVENT_TOPIC_PARTITIONS"):
        if f"$${variable}" not in commands:
            problems.append(f"kafka-init's script ignores {variable}")
    if "--if-not-exists" not in commands:
        problems.append("kafka-init is not idempotent (--if-not-exists)")
    return problems


def bucket_problems(compose: Compose, storage: StorageSettings) -> list[str]:
    gcs = compose["services"]["gcs"]
    buckets = environment(gcs).get("BUCKETS", "").split()
    problems = []
    if buckets != [storage.media_bucket, storage.archive_bucket]:
        problems.append(f"buckets {buckets} != settings' media and archive buckets")
    commands = script(gcs)
    if "$$BUCKETS" not in commands or "create_bucket" not in commands:
        problems.append("gcs does not create the BUCKETS it lists")
    return problems


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> StackSettings:
    """StackSettings exactly as declared: no FEEDLINE_* env, no .env file."""
    return settings_from(StackSettings, {}, monkeypatch)


@pytest.fixture
def broken(compose: Compose) -> Iterator[Compose]:
    """A copy of the compose file that a test may break."""
    yield copy.deepcopy(compose)


# --- tests: the compose file -------------------------------------------------------------


def test_the_expected_services_exist(compose: Compose) -> None:
    assert service_problems(compose) == []


def test_every_long_running_service_has_a_healthcheck(compose: Compose) -> None:
    assert health_problems(compose) == []


def test_dependencies_wait_for_health_or_completion(compose: Compose) -> None:
    assert dependency_problems(compose) == []


def test_published_ports_are_the_settings_defaults_on_loopback(
    compose: Compose, defaults: StackSettings
) -> None:
    assert port_problems(compose, defaults) == []


def test_every_container_with_feedline_environment_is_checked(compose: Compose) -> None:
    with_env = {n for n, s in compose["services"].items() if feedline_environment(s)}
    assert with_env == set(SETTINGS_OF)


@pytest.mark.parametrize("name", sorted(SETTINGS_OF))
def test_feedline_environment_is_accepted_and_lands(
    compose: Compose, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert environment_problems(compose, name, monkeypatch) == []


@pytest.mark.parametrize("name", sorted(SETTINGS_OF))
def test_feedline_endpoints_name_compose_services(
    compose: Compose, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert endpoint_problems(compose, name, monkeypatch) == []


def test_api_settings_landed(
    compose: Compose, defaults: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = feedline_environment(compose["services"]["api"])
    settings = settings_from(ServingSettings, env, monkeypatch)
    assert (
        settings.kafka.bootstrap_servers
        == advertised_listeners(compose["services"]["kafka"])["INTERNAL"]
    )
    assert settings.cql.contact_points == ("scylla",)
    assert settings.redis.url.startswith("redis://redis:")
    assert settings.storage.emulator_host == "http://gcs:9023"
    assert settings.api.port == defaults.api.port


def test_kafka_advertises_the_settings_default_to_the_host(
    compose: Compose, defaults: StackSettings
) -> None:
    kafka = compose["services"]["kafka"]
    advertised = advertised_listeners(kafka)
    assert defaults.kafka.bootstrap_servers in advertised.values()
    listening = {
        port_of(item.split("://", 1)[1])
        for item in environment(kafka)["KAFKA_LISTENERS"].split(",")
    }
    assert {port_of(address) for address in advertised.values()} <= listening


def test_kafka_init_creates_the_settings_topics(compose: Compose, defaults: StackSettings) -> None:
    assert topic_problems(compose, defaults.kafka) == []


def test_gcs_creates_the_settings_buckets(compose: Compose, defaults: StackSettings) -> None:
    assert bucket_problems(compose, defaults.storage) == []


def test_redis_is_an_lru_cache_without_persistence(
    compose: Compose, defaults: StackSettings
) -> None:
    command = compose["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--maxmemory"] == defaults.local.redis_maxmemory
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert options["--save"] == ""
    assert options["--appendonly"] == "no"


def test_images_are_pinned(compose: Compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        image = service.get("image", "")
        if "build" in service:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: unpinned image {image!r}"
    assert services["scylla"]["image"].startswith("scylladb/scylla:")
    assert services["kafka"]["image"].startswith("apache/kafka:4.1.")
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-\w+)?", services["redis"]["image"])
    assert services["gcs"]["image"].startswith("oittaa/gcp-storage-emulator:")
    scylla = str(services["scylla"]["command"])
    for flag in ("--smp 1", "--memory 1G", "--developer-mode 1"):
        assert flag in scylla


# --- tests: the Dockerfiles --------------------------------------------------------------


def test_built_services_use_the_repo_dockerfiles(compose: Compose) -> None:
    services = compose["services"]
    built = {n: s["build"] for n, s in services.items() if "build" in s}
    assert set(built) == {"api", "cql-migrate", "flink-jobmanager", "flink-taskmanager"}
    for name, build in built.items():
        assert build["context"] == "."
        assert (REPO_ROOT / build["dockerfile"]).is_file(), name
    assert REPO_ROOT / built["api"]["dockerfile"] == API_DOCKERFILE
    assert REPO_ROOT / built["cql-migrate"]["dockerfile"] == API_DOCKERFILE
    assert REPO_ROOT / built["flink-jobmanager"]["dockerfile"] == FLINK_DOCKERFILE


def test_cql_migrate_runs_the_feedctl_migration(compose: Compose) -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "feedctl" in scripts
    assert compose["services"]["cql-migrate"]["command"] == ["feedctl", "db", "migrate"]


def test_dockerfiles_name_no_urls_or_registries() -> None:
    for dockerfile in (FLINK_DOCKERFILE, API_DOCKERFILE):
        text = dockerfile.read_text()
        assert "://" not in text, dockerfile
        assert not REGISTRY_HOSTS.search(text), dockerfile


def test_flink_image_matches_the_python_and_maven_pins() -> None:
    assert re.fullmatch(r"flink:2\.2\.\d+-java17", dockerfile_arg(FLINK_DOCKERFILE, "FLINK_IMAGE"))
    assert dockerfile_arg(FLINK_DOCKERFILE, "PYTHON_IMAGE").startswith("python:3.11")
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    flink_pin = next(d for d in dependencies if d.startswith("apache-flink"))
    assert f"pip install -c constraints.txt {flink_pin}" in FLINK_DOCKERFILE.read_text()
    connector = dockerfile_arg(FLINK_DOCKERFILE, "KAFKA_CONNECTOR_VERSION")
    pom = re.search(r"<flink\.kafka\.connector\.version>([^<]+)<", MAVEN_POM.read_text())
    assert pom, "infra/maven/pom.xml lost flink.kafka.connector.version"
    assert connector == pom.group(1)
    assert "flink-sql-connector-kafka:${KAFKA_CONNECTOR_VERSION}" in FLINK_DOCKERFILE.read_text()


def test_flink_jobs_find_the_connector_where_the_image_puts_it(compose: Compose) -> None:
    copied = re.search(
        r"^COPY --from=kafka-connector .*/connectors/ (\S+)$",
        FLINK_DOCKERFILE.read_text(),
        re.MULTILINE,
    )
    assert copied, "the Flink image does not copy the connector"
    for name in ("flink-jobmanager", "flink-taskmanager"):
        jars_dir = environment(compose["services"][name]).get("FEEDLINE_FLINK__JARS_DIR")
        assert jars_dir and copied.group(1).rstrip("/") == jars_dir.rstrip("/"), name


def test_api_image_serves_on_the_published_port(compose: Compose, defaults: StackSettings) -> None:
    assert dockerfile_arg(API_DOCKERFILE, "PYTHON_IMAGE").startswith("python:3.11")
    text = API_DOCKERFILE.read_text()
    assert "pip install -c constraints.txt" in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd, "the API Dockerfile has no exec-form CMD"
    argv = json.loads(cmd.group(1))
    assert argv[:2] == ["uvicorn", "serving.main:app"]
    port = int(argv[argv.index("--port") + 1])
    assert port == defaults.api.port
    assert port in container_ports(compose["services"]["api"])


# --- tests: the checks catch breakage ----------------------------------------------------


def test_checks_catch_a_missing_healthcheck(broken: Compose) -> None:
    del broken["services"]["redis"]["healthcheck"]
    assert health_problems(broken)


def test_checks_catch_a_list_style_depends_on(broken: Compose) -> None:
    broken["services"]["api"]["depends_on"] = ["redis"]
    assert dependency_problems(broken)


def test_checks_catch_a_wrong_dependency_condition(broken: Compose) -> None:
    broken["services"]["api"]["depends_on"]["kafka-init"]["condition"] = "service_started"
    assert dependency_problems(broken)


def test_checks_catch_a_moved_or_exposed_port(broken: Compose, defaults: StackSettings) -> None:
    broken["services"]["redis"]["ports"] = ["6380:6379"]
    problems = port_problems(broken, defaults)
    assert any("6380" in p for p in problems)
    assert any("all interfaces" in p for p in problems)


def test_checks_catch_an_unknown_nested_variable(
    broken: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings themselves reject it (extra="forbid" on each block).
    broken["services"]["api"]["environment"]["FEEDLINE_REDIS__ADDRESS"] = "redis:6379"
    problems = environment_problems(broken, "api", monkeypatch)
    assert any("rejects" in p and "address" in p for p in problems)


def test_checks_catch_an_unknown_top_level_variable(
    broken: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pydantic-settings ignores unknown top-level names; the check must not.
    broken["services"]["api"]["environment"]["FEEDLINE_CACHE_URL"] = "redis://redis:6379/0"
    problems = environment_problems(broken, "api", monkeypatch)
    assert any("FEEDLINE_CACHE_URL" in p for p in problems)


def test_checks_catch_an_endpoint_on_the_wrong_port(
    broken: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken["services"]["flink-taskmanager"]["environment"]["FEEDLINE_REDIS__URL"] = (
        "redis://redis:6380/0"
    )
    assert endpoint_problems(broken, "flink-taskmanager", monkeypatch)


def test_checks_catch_a_renamed_topic(broken: Compose, defaults: StackSettings) -> None:
    broken["services"]["kafka-init"]["environment"]["DLQ_TOPICS"] = "uploads.dlq follows.dlq"
    assert topic_problems(broken, defaults.kafka)


def test_checks_catch_a_renamed_bucket(broken: Compose, defaults: StackSettings) -> None:
    broken["services"]["gcs"]["environment"]["BUCKETS"] = "feedline-media media-archive"
    assert bucket_problems(broken, defaults.storage)
