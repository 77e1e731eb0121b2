"""What every local-stack service provides: start, health, and set-up once healthy."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

from feedline.settings import StackSettings
from jobs.localstack.process import ManagedProcess

JAVA = "java"


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on now on 127.0.0.1 (the kernel's pick; free until used)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service(ABC):
    """A server of the local stack, run as a process the stack owns."""

    name: str = ""
    """Short name, also the folder name under the state directory."""
    essential: bool = True
    """False for helpers (the archiver) that tests and the serving path do not need."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home: Path = settings.local.state_dir / self.name
        self.process = ManagedProcess(self.name, self.home, self.marker())

    def marker(self) -> str:
        """A string unique to this server's command line (its home folder by default)."""
        return str(self.home)

    @abstractmethod
    def endpoint(self) -> str:
        """Where clients reach the service, for status output."""

    @abstractmethod
    def prepare(self) -> None:
        """Write configuration and initialise storage; safe to repeat."""

    @abstractmethod
    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """The argv and extra environment that start the server in the foreground."""

    @abstractmethod
    def healthy(self) -> bool:
        """A quick, real check through the service's own protocol."""

    def after_healthy(self) -> None:  # noqa: B027 (optional hook, empty by default)
        """Idempotent set-up once healthy (topics, keyspace, buckets)."""

    def start(self) -> int:
        """Prepare and start the server; returns its pid."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv, env = self.command()
        return self.process.start(argv, env=env, cwd=self.home)

    def jars(self, component: str) -> str:
        """Classpath of a component's jars fetched by infra/maven."""
        folder = self.settings.local.state_dir / "jars" / component
        if not any(folder.glob("*.jar")):
            raise FileNotFoundError(
                f"no jars in {folder}; run `make jars` (mvn -f infra/maven/pom.xml package)"
            )
        return f"{folder}/*"
