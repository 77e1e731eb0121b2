"""The feedline exporter: what Prometheus cannot ask Kafka or the local stack for itself.

``python -m jobs.exporter`` serves ``/metrics`` (prometheus-client). Each scrape reads,
at that moment:

- ``feedline_kafka_consumer_lag`` and ``feedline_kafka_consumer_committed_offset`` per
  consumer (each streaming job of ``jobs.specs``, and the archiver), topic and partition:
  the group's committed offset against the partition's end (`jobs.lag`). Flink commits its
  offsets on checkpoints, so a job's lag includes up to one checkpoint interval of records;
- ``feedline_dead_letters_total`` (every dead letter ever written: the end offsets) and
  ``feedline_dead_letter_depth`` (those still retained) per dead-letter topic;
- ``feedline_exporter_kafka_up``: 1 when Kafka answered this scrape;
- with ``--local-stack``: each local-stack service's process (running, resident memory,
  restarts by the supervisor), the state directory's filesystem and the host's memory.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from feedline.cli import stop_on_signals
from feedline.logs import configure_logging
from feedline.settings import KafkaSettings, StackSettings, get_stack_settings, settings_errors_exit
from jobs.lag import PartitionLag, job_topics, partition_lags
from jobs.specs import JOBS

log = logging.getLogger(__name__)

#: The archiver's consumer group (`feedctl archive run`'s default).
ARCHIVER_GROUP = "feedline-archiver"
#: Milliseconds a Kafka bootstrap or request of one scrape may take.
KAFKA_TIMEOUT_MS = 4000


def consumers(kafka: KafkaSettings) -> dict[str, tuple[str, list[str]]]:
    """Each consumer watched: its name mapped to its group and topics."""
    watched = {name: (JOBS[name].group_id(), topics)
               for name, topics in job_topics(kafka).items() if name in JOBS}
    watched["archiver"] = (ARCHIVER_GROUP, list(kafka.event_topics))
    return watched


class KafkaCollector(Collector):
    """Consumer lag and dead letters, read from Kafka at each scrape."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._clients: tuple[Any, Any] | None = None
        self._lock = threading.Lock()  # one scrape at a time shares the clients

    def describe(self) -> list[Any]:
        """No names up front: registering must not wait for Kafka (collect reads it)."""
        return []

    def _open(self) -> tuple[Any, Any]:
        from kafka import KafkaAdminClient, KafkaConsumer

        if self._clients is None:
            servers = self.kafka.client_options()
            # Fail within a scrape's timeout (10 s): Kafka down is feedline_exporter_kafka_up
            # 0, not a scrape that times out.
            admin = KafkaAdminClient(**servers, client_id="feedline-exporter",
                                     request_timeout_ms=KAFKA_TIMEOUT_MS,
                                     bootstrap_timeout_ms=KAFKA_TIMEOUT_MS)
            consumer = KafkaConsumer(**servers, client_id="feedline-exporter",
                                     request_timeout_ms=KAFKA_TIMEOUT_MS + 1000,
                                     bootstrap_timeout_ms=KAFKA_TIMEOUT_MS)
            self._clients = (admin, consumer)
        return self._clients

    def _close(self) -> None:
        if self._clients is not None:
            for client in reversed(self._clients):
                try:
                    client.close()
                except Exception:  # closing a broken client must not fail the scrape
                    log.debug("closing a Kafka client failed", exc_info=True)
        self._clients = None

    def read(self) -> tuple[dict[str, list[PartitionLag]], dict[str, tuple[int, int]]]:
        """Lag rows per consumer, and (written, retained) per dead-letter topic."""
        from kafka import TopicPartition

        admin, consumer = self._open()
        lags = {name: partition_lags(admin, consumer, group, topics)
                for name, (group, topics) in consumers(self.kafka).items()}
        dead: dict[str, tuple[int, int]] = {}
        for topic in (self.kafka.dlq_topic(t) for t in self.kafka.event_topics):
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                            or ())]
            if not tps:
                continue
            ends, starts = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
            dead[topic] = (sum(ends.values()),
                           sum(max(0, ends[tp] - starts[tp]) for tp in tps))
        return lags, dead

    def collect(self) -> Iterator[Any]:
        """The families of one scrape; only ``feedline_exporter_kafka_up`` when Kafka is down."""
        up = GaugeMetricFamily("feedline_exporter_kafka_up",
                               "1 when Kafka answered the exporter's last scrape.")
        with self._lock:
            try:
                lags, dead = self.read()
            except Exception as error:  # Kafka down or slow: say so, reconnect next time
                log.warning("Kafka did not answer: %s: %s", type(error).__name__, error)
                self._close()
                up.add_metric([], 0)
                yield up
                return
        up.add_metric([], 1)
        yield up
        labels = ["consumer", "group", "topic", "partition"]
        lag = GaugeMetricFamily("feedline_kafka_consumer_lag",
                                "Records of a partition the consumer group has not committed.",
                                labels=labels)
        committed = GaugeMetricFamily("feedline_kafka_consumer_committed_offset",
                                      "The group's committed offset (-1: never committed).",
                                      labels=labels)
        for name, rows in lags.items():
            for row in rows:
                values = [name, row.group, row.topic, str(row.partition)]
                lag.add_metric(values, row.lag)
                committed.add_metric(values, -1 if row.committed is None else row.committed)
        yield lag
        yield committed
        written = CounterMetricFamily("feedline_dead_letters",
                                      "Dead letters ever written to the topic (its end offsets).",
                                      labels=["topic"])
        depth = GaugeMetricFamily("feedline_dead_letter_depth",
                                  "Dead letters the topic still retains.", labels=["topic"])
        for topic, (total, retained) in dead.items():
            written.add_metric([topic], total)
            depth.add_metric([topic], retained)
        yield written
        yield depth


def _resident_bytes(pid: int) -> int | None:
    """The resident memory (VmRSS) of one process, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None
    return None


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ValueError, IndexError):
        return {}
    return values


class LocalStackCollector(Collector):
    """The local stack's processes, its state directory's disk and the host's memory."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    def describe(self) -> list[Any]:
        """No names up front: collect reads the state directory each time."""
        return []

    def collect(self) -> Iterator[Any]:
        """Read the pid files, ``restarts.json`` files, statvfs and /proc/meminfo."""
        from jobs.localstack import restarts
        from jobs.localstack.stack import services

        running = GaugeMetricFamily("feedline_stack_service_running",
                                    "1 while the service's recorded process runs.",
                                    labels=["service"])
        resident = GaugeMetricFamily("feedline_stack_process_resident_bytes",
                                     "Resident memory of the service's process.",
                                     labels=["service"])
        restarted = CounterMetricFamily("feedline_stack_service_restarts",
                                        "Restarts of the service by the supervisor (or `up`) "
                                        "since `feedctl local up` first started it.",
                                        labels=["service"])
        for svc in services(self.settings):
            pid = svc.process.pid()
            running.add_metric([svc.name], 0 if pid is None else 1)
            rss = _resident_bytes(pid) if pid is not None else None
            if rss is not None:
                resident.add_metric([svc.name], rss)
            restarted.add_metric([svc.name], restarts.load(svc.home).restarts)
        yield running
        yield resident
        yield restarted
        state = self.settings.local.state_dir
        if state.exists():
            usage = shutil.disk_usage(state)
            labels = ["path"]
            size = GaugeMetricFamily("feedline_stack_filesystem_size_bytes",
                                     "Size of the filesystem holding the stack's data.",
                                     labels=labels)
            avail = GaugeMetricFamily("feedline_stack_filesystem_avail_bytes",
                                      "Free space left on the filesystem holding the stack's data.",
                                      labels=labels)
            size.add_metric([str(state)], usage.total)
            avail.add_metric([str(state)], usage.free)
            yield size
            yield avail
        memory = _meminfo()
        if "MemTotal" in memory and "MemAvailable" in memory:
            yield GaugeMetricFamily("feedline_host_memory_total_bytes",
                                    "Memory of the host the stack runs on.",
                                    value=memory["MemTotal"])
            yield GaugeMetricFamily("feedline_host_memory_available_bytes",
                                    "Memory the host can still give without swapping.",
                                    value=memory["MemAvailable"])


def run(argv: Sequence[str] | None = None) -> int:
    """Serve ``/metrics`` until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m jobs.exporter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, help="port (default: monitoring.kafka_exporter_port)")
    parser.add_argument("--local-stack", action="store_true",
                        help="also export the local stack's processes, disk and memory")
    args = parser.parse_args(argv)
    configure_logging("exporter")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # one warning per failed scrape
    with settings_errors_exit("python -m jobs.exporter"):
        settings = get_stack_settings()
    REGISTRY.register(KafkaCollector(settings.kafka))
    if args.local_stack:
        REGISTRY.register(LocalStackCollector(settings))
    port = args.port or settings.monitoring.kafka_exporter_port
    server, thread = start_http_server(port, addr=args.host)
    log.info("serving /metrics on %s:%d (pid %d)", args.host, port, os.getpid())
    stopping = stop_on_signals()
    while not stopping.wait(1.0):
        pass
    server.shutdown()
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(run())
