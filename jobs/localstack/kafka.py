"""Single-broker Kafka in KRaft mode (broker and controller in one JVM)."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from feedline.settings import REPO_ROOT
from jobs.localstack.base import JAVA, Service, port_open


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0]
    parts = urlsplit(f"//{first}")
    return parts.hostname or "127.0.0.1", parts.port or 9092


class KafkaService(Service):
    """Kafka broker from Maven Central jars, with the feed topics and their DLQs."""

    name = "kafka"

    def endpoint(self) -> str:
        """Bootstrap servers."""
        return self.settings.kafka.bootstrap_servers

    def prepare(self) -> None:
        """Write server.properties and format the KRaft log directory once."""
        host, port = _host_port(self.settings.kafka.bootstrap_servers)
        ctl = self.settings.local.kafka_controller_port
        data = self.home / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{ctl}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(self.settings.kafka.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.retention.hours": "168",
        }
        conf = self.home / "server.properties"
        conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if not (data / "meta.properties").exists():
            cluster_id = new_cluster_id()
            fmt = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(conf)),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            JAVA,
            f"-Xmx{self.settings.local.kafka_heap}",
            f"-Xms{self.settings.local.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            f"-Dlog4j2.configurationFile={REPO_ROOT / 'infra' / 'local' / 'kafka-log4j2.xml'}",
            f"-Dfeedline.home={self.home}",
            "-cp",
            self.jars("kafka"),
            main,
            *args,
        ]

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """Run the broker in the foreground."""
        return self._java("kafka.Kafka", str(self.home / "server.properties")), {}

    def healthy(self) -> bool:
        """The broker answers a metadata request."""
        host, port = _host_port(self.settings.kafka.bootstrap_servers)
        if not port_open(host, port):
            return False
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                request_timeout_ms=3000,
                client_id="feedline-health",
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()

    def after_healthy(self) -> None:
        """Create the three event topics, the media topic and their dead-letter topics."""
        ensure_topics(self.settings.kafka.bootstrap_servers, self.wanted_topics())

    def wanted_topics(self) -> dict[str, int]:
        """Topic name -> partitions, from settings."""
        k = self.settings.kafka
        topics = {t: k.partitions for t in k.event_topics}
        topics.update({k.dlq_topic(t): 1 for t in k.event_topics})
        topics.update({k.media_topic: k.partitions, k.dlq_topic(k.media_topic): 1})
        return topics


#: Every topic the project creates: its records carry the broker's append time, which never
#: decreases within a partition, whatever time a producer set (the arrival time of the
#: retention rule: ``feedline.rules.retention``).
TOPIC_CONFIGS: Mapping[str, str] = {"message.timestamp.type": "LogAppendTime"}


def ensure_topics(bootstrap: str, topics: Mapping[str, int]) -> list[str]:
    """Create the missing topics (partitions as given); returns the ones created.

    Every topic of ``topics`` ends with ``TOPIC_CONFIGS``: new ones are created with them,
    existing ones (made before them, or by hand) are altered where a value differs.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="feedline-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=parts, replication_factor=1,
                     topic_configs=dict(TOPIC_CONFIGS))
            for name, parts in topics.items()
            if name not in existing
        ]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        older = [name for name in topics if name in existing]
        if older:
            _configure(admin, older)
        return [t.name for t in missing]
    finally:
        admin.close()


def _configure(admin: KafkaAdminClient, names: list[str]) -> None:
    """Set ``TOPIC_CONFIGS`` on the topics ``names`` where a value differs.

    Incrementally: their other settings stay.
    """
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, list(TOPIC_CONFIGS)) for name in names],
        config_filter="all")
    current = described.get("topic", {})
    stale = [name for name in names
             if any(current.get(name, {}).get(key, {}).get("value") != value
                    for key, value in TOPIC_CONFIGS.items())]
    if stale:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict(TOPIC_CONFIGS))
                             for name in stale], incremental=True)


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 url-safe base64 characters) that cannot start with '-'.

    One id in 64 would, and the storage tool then reads it as an option and refuses to
    format (seen: `make run` failing with the tool's usage text). Kafka's own generator
    skips such ids too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
