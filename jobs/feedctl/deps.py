"""The services feedctl depends on: where the settings point, a quick probe, their errors.

`require(...)` opens a TCP connection to each dependency a command is about to use (a
few seconds at most) and raises `Unreachable` when none of its addresses answers, so a
command with a service down fails at once instead of after a client library's retries
(google-cloud-storage retries for 120 s, kafka-python bootstraps for 30 s).

`translate(error)` is the boundary for what gets past the probe (a service that dies
mid-command, a hung one): it turns the libraries' own exceptions into `Unreachable`
(exit 3) or `Failed` (exit 1) with one line naming the service and its endpoint.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

from feedline.settings import (
    ApiSettings,
    CqlSettings,
    FlinkSettings,
    KafkaSettings,
    RedisSettings,
    StackSettings,
    StorageSettings,
    get_stack_settings,
    redact_url,
)
from jobs.feedctl.errors import Dependency, Failed, FeedctlError, Unreachable, one_line

PROBE_TIMEOUT_S = 3.0


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as a pair."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.startswith("[")):
        return text.strip().strip("[]"), default_port
    return host.strip("[]"), int(port)


def _url_address(url: str, default_port: int) -> tuple[tuple[str, int], ...]:
    parts = urlsplit(url)
    if not parts.hostname:
        return ()
    try:
        port = parts.port or default_port
    except ValueError:
        return ()
    return ((parts.hostname, port),)


def kafka(settings: KafkaSettings) -> Dependency:
    """The Kafka brokers."""
    servers = [s for s in settings.bootstrap_servers.split(",") if s.strip()]
    return Dependency("Kafka", settings.bootstrap_servers, "FEEDLINE_KAFKA__BOOTSTRAP_SERVERS",
                      tuple(_host_port(s, 9092) for s in servers))


def cql(settings: CqlSettings) -> Dependency:
    """The CQL store's contact points."""
    points = ",".join(settings.contact_points)
    return Dependency("the CQL store", f"{points} port {settings.port}",
                      "FEEDLINE_CQL__CONTACT_POINTS / FEEDLINE_CQL__PORT",
                      tuple((host, settings.port) for host in settings.contact_points))


def redis(settings: RedisSettings) -> Dependency:
    """The Redis cache."""
    return Dependency("Redis", redact_url(settings.url), "FEEDLINE_REDIS__URL",
                      _url_address(settings.url, 6379))


def storage(settings: StorageSettings) -> Dependency:
    """Object storage: the GCS emulator, or Google Cloud Storage (not probed)."""
    if settings.emulator_host:
        return Dependency("object storage", settings.emulator_host,
                          "FEEDLINE_STORAGE__EMULATOR_HOST",
                          _url_address(settings.emulator_host, 80))
    return Dependency("object storage", "Google Cloud Storage", "FEEDLINE_STORAGE__EMULATOR_HOST",
                      hint="check the network and the Google credentials "
                      "(GOOGLE_APPLICATION_CREDENTIALS)")


def flink(settings: FlinkSettings) -> Dependency:
    """The Flink JobManager's REST endpoint."""
    return Dependency("Flink REST", settings.rest_url, "FEEDLINE_FLINK__REST_URL",
                      _url_address(settings.rest_url, 8081))


def api(settings: ApiSettings) -> Dependency:
    """The feed API."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return Dependency("the feed API", f"http://{host}:{settings.port}",
                      "FEEDLINE_API__HOST / FEEDLINE_API__PORT", ((host, settings.port),))


def _probe(address: tuple[str, int], timeout_s: float) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection(address, timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer in {timeout_s:g} s"
    except socket.gaierror:
        return f"unknown host {address[0]}"
    except OSError as err:
        return (err.strerror or str(err)).lower()


def require(*dependencies: Dependency, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise `Unreachable` for the first dependency none of whose addresses answers."""
    for dependency in dependencies:
        if not dependency.addresses:
            continue
        causes = [_probe(address, timeout_s) for address in dependency.addresses]
        if all(cause is not None for cause in causes):
            raise Unreachable(dependency, str(causes[-1]))


# --- library exceptions ------------------------------------------------------------------

#: (module, class names meaning "did not answer", class name meaning "answered: failed").
_FAMILIES: dict[str, list[tuple[str, tuple[str, ...], str | None]]] = {
    "kafka": [("kafka.errors", ("KafkaConnectionError", "KafkaTimeoutError",
                                "NodeNotReadyError", "RequestTimedOutError",
                                "BrokerNotAvailableError", "NoBrokersAvailable"),
               "KafkaError")],
    "flink": [("jobs.flink_rest", ("FlinkUnreachable",), "FlinkRestError")],
    "cql": [("cassandra.cluster", ("NoHostAvailable",), None),
            ("cassandra", ("OperationTimedOut", "Unavailable", "Timeout"), "DriverException")],
    "redis": [("redis.exceptions", ("ConnectionError", "TimeoutError", "BusyLoadingError"),
               "RedisError")],
    "storage": [("requests.exceptions", ("ConnectionError", "Timeout"), None),
                ("google.auth.exceptions", ("TransportError", "DefaultCredentialsError",
                                            "RefreshError"), None),
                ("google.api_core.exceptions", ("RetryError", "ServiceUnavailable",
                                                "GatewayTimeout", "DeadlineExceeded"),
                 "GoogleAPIError")],
}


def _classes(module: str, names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    # Only modules already imported: an exception cannot come from a library not loaded.
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, n) for n in names if loaded is not None and hasattr(loaded, n))


def _dependency(family: str, settings: StackSettings) -> Dependency:
    return {
        "kafka": lambda: kafka(settings.kafka), "flink": lambda: flink(settings.flink),
        "cql": lambda: cql(settings.cql), "redis": lambda: redis(settings.redis),
        "storage": lambda: storage(settings.storage),
    }[family]()


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps: causes, contexts, ``reason``/``cause``/``errors``."""
    seen: set[int] = set()
    todo = [error]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested: list[object] = [current.__cause__, current.__context__,
                                getattr(current, "reason", None), getattr(current, "cause", None)]
        errors = getattr(current, "errors", None)
        if isinstance(errors, dict):
            nested.extend(errors.values())
        nested.extend(current.args)
        todo.extend(e for e in nested if isinstance(e, BaseException))


def cause_of(error: BaseException) -> str:
    """A short reason: the innermost socket error's text if there is one, else the message."""
    for inner in reversed(list(_chain(error))):
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror.lower()
        if isinstance(inner, TimeoutError | socket.timeout):
            return "timed out"
    return one_line(error, 160) or type(error).__name__


def translate(error: BaseException) -> FeedctlError | None:
    """The feedctl error a library exception means, or None when it is not a known one."""
    if isinstance(error, FeedctlError):
        return error
    for family, groups in _FAMILIES.items():
        for module, unreachable, failed in groups:
            down = _classes(module, unreachable)
            other = _classes(module, (failed,)) if failed else ()
            if not (down and isinstance(error, down)) and not (other and isinstance(error, other)):
                continue
            try:
                dependency = _dependency(family, get_stack_settings())
            except Exception:  # the settings were read before; this only names the endpoint
                dependency = Dependency(family, "?", "its FEEDLINE_* setting")
            if down and isinstance(error, down):
                return Unreachable(dependency, cause_of(error))
            return Failed(f"{dependency.name} at {dependency.endpoint}: "
                          f"{type(error).__name__}: {one_line(error, 240)}")
    return None
