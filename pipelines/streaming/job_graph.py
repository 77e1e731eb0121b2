"""The job graph pieces both streaming jobs are built from: flags, environment, sources, sinks.

Sources go through the Table API's Kafka connector with ``raw`` format so each record
keeps its original bytes plus its partition and offset (the Python DataStream Kafka
source exposes values only); from there the jobs continue in the DataStream API.
Configuration reaches the jobs as one JSON flag (a ``StreamingSettings`` dump): the
Python workers run on TaskManagers and do not share the submitter's environment.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from feedline.logs import LogBudget
from feedline.rules.keys import Job
from feedline.rules.retention import bound_ms
from feedline.settings import (
    FlinkSettings,
    KafkaSettings,
    StreamingSettings,
    get_streaming_settings,
)
from pipelines.streaming.parse import arrival_ms, dead_letter_line, parse_or_dead_letter

#: In Flink, the Python worker's log handler sends these lines to the TaskManager's log.
log = logging.getLogger("feedline.streaming")

#: Side output of the parse steps: JSON dead-letter records.
DLQ_TAG_NAME = "dead-letters"


def parse_job_args(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags every streaming job takes."""
    parser = argparse.ArgumentParser(prog=prog)
    given = parser.add_mutually_exclusive_group()
    given.add_argument(
        "--settings-json",
        help="StreamingSettings as JSON (default: read FEEDLINE_* from the environment)",
    )
    given.add_argument(
        "--settings-file",
        help="a file holding StreamingSettings as JSON: keeps the store credentials out of "
             "the process list (what `feedctl jobs deploy` passes)",
    )
    parser.add_argument("--group-id", required=True, help="Kafka consumer group of the job")
    parser.add_argument("--job-name", required=True, help="name shown by Flink")
    parser.add_argument("--jars", default="", help="comma-separated file:// URLs to add")
    parser.add_argument(
        "--dedup-window-s", type=int, default=3600,
        help="event-time window in which a repeated event_id is skipped as a duplicate",
    )
    args = parser.parse_args(argv)
    if args.settings_file:
        with open(args.settings_file, encoding="utf-8") as file:
            settings = StreamingSettings.model_validate_json(file.read())
    elif args.settings_json:
        settings = StreamingSettings.model_validate_json(args.settings_json)
    else:
        settings = get_streaming_settings()
    args.settings = settings
    return args


#: The project's top-level packages a streaming job imports.
JOB_PACKAGES = ("feedline", "pipelines", "schemas")


def source_roots() -> list[str]:
    """Folders holding the project's packages as this interpreter imports them.

    An editable install puts them on the path through an import hook its ``.pth`` file
    installs; the interpreter embedded in a TaskManager reads no ``.pth`` file, so it gets
    the folders themselves (site-packages itself for a regular install).
    """
    roots = []
    for name in JOB_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            roots.append(str(Path(spec.origin).resolve().parent.parent))
    return list(dict.fromkeys(roots))


def python_options(flink: FlinkSettings) -> dict[str, str]:
    """The PyFlink runtime options of the streaming jobs (``FlinkSettings``)."""
    options = {
        "python.execution-mode": flink.python_execution_mode,
        "python.fn-execution.bundle.time": str(flink.python_bundle_time_ms),
        "python.fn-execution.bundle.size": str(flink.python_bundle_size),
        # Keep keyed states as Python objects in the worker: a miss is a gRPC round trip.
        "python.state.cache-size": "50000",
    }
    if flink.python_execution_mode == "thread":
        paths = flink.python_thread_paths
        if paths is None:
            found = sysconfig.get_paths()
            paths = list(dict.fromkeys([found["purelib"], found["platlib"], *source_roots()]))
        options["python.pythonpath"] = os.pathsep.join(paths)
    return options


#: Flink's "no limit" for the restart attempts (``Integer.MAX_VALUE``).
UNLIMITED_ATTEMPTS = 2**31 - 1

#: A job that ran this long without a failure starts again from the initial backoff.
RESET_BACKOFF_AFTER = "1 min"


def restart_options(flink: FlinkSettings) -> dict[str, str]:
    """How a failed streaming job restarts: exponential delay, never giving up.

    A dependency that stays down (Cassandra, Redis, Kafka) fails the writers or the sources
    at every restart. A limited number of attempts (the former fixed delay: 1,000 attempts
    2 s apart, counted over the job's whole life) would end in a job FAILED for good, which
    nothing restarts by itself; instead the wait doubles from
    ``restart_initial_backoff_ms`` to ``restart_max_backoff_ms`` and the job restarts within
    that long of the dependency's return. A minute without a failure resets the wait. On-call
    sees the restarts (``StreamingJobRestartStorm``).
    """
    return {
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff":
            f"{flink.restart_initial_backoff_ms} ms",
        "restart-strategy.exponential-delay.max-backoff":
            f"{max(flink.restart_max_backoff_ms, flink.restart_initial_backoff_ms)} ms",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.reset-backoff-threshold": RESET_BACKOFF_AFTER,
        "restart-strategy.exponential-delay.jitter-factor": "0.1",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff":
            str(UNLIMITED_ATTEMPTS),
    }


def state_options(flink: FlinkSettings) -> dict[str, str]:
    """The keyed state backend of the streaming jobs (``FlinkSettings.state_backend``).

    RocksDB checkpoints incrementally (only the files written since the last checkpoint);
    the heap backend writes its whole state each time.
    """
    options: dict[str, str] = {"state.backend.type": flink.state_backend}
    if flink.state_backend == "rocksdb":
        options["execution.checkpointing.incremental"] = "true"
    return options


def build_environment(args: argparse.Namespace) -> tuple[Any, Any]:
    """Stream and table environments with checkpointing, restarts and connector jars."""
    from pyflink.common import Configuration
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    settings: StreamingSettings = args.settings
    config = Configuration()
    config.set_string("execution.checkpointing.externalized-checkpoint-retention",
                      "RETAIN_ON_CANCELLATION")
    for key, value in {**restart_options(settings.flink), **state_options(settings.flink),
                       **python_options(settings.flink)}.items():
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(settings.flink.parallelism)
    env.enable_checkpointing(settings.flink.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    jars = [j for j in args.jars.split(",") if j]
    if jars:
        env.add_jars(*jars)
    t_env = StreamTableEnvironment.create(env)
    return env, t_env


def kafka_rows(t_env: Any, settings: StreamingSettings, topic: str, group_id: str) -> Any:
    """A DataStream of Row(payload, src_partition, src_offset, src_timestamp) for a topic.

    ``src_timestamp`` is the record's Kafka timestamp (the broker's append time), which
    ``parse.arrival_ms`` reads. With a lateness bound (``feed.lateness_bound_s``) it is
    also the stream's event time, and the source's watermark is the smallest of its
    partitions' newest append times (no idleness: an idle partition holds it back), which
    the fan-out's pruning timers wait on (``operators.FanoutOperator``).

    Starts from the group's committed offsets (earliest for a new group); the offsets
    live in Flink checkpoints, so a restore resumes exactly where the state was taken.
    """
    table = f"src_{topic.replace('.', '_').replace('-', '_')}"
    watermark = ("" if settings.feed.lateness_bound_s is None else
                 ",\n            WATERMARK FOR `src_timestamp` AS `src_timestamp`")
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE IF NOT EXISTS `{table}` (
            `payload` BYTES,
            `src_partition` INT METADATA FROM 'partition' VIRTUAL,
            `src_offset` BIGINT METADATA FROM 'offset' VIRTUAL,
            `src_timestamp` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL{watermark}
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{topic}',
            {kafka_table_options(settings.kafka)}
            'properties.group.id' = '{group_id}',
            'properties.auto.offset.reset' = 'earliest',
            'scan.startup.mode' = 'group-offsets',
            'format' = 'raw'
        )
        """
    )
    return t_env.to_data_stream(t_env.from_path(f"`{table}`"))


def kafka_table_options(kafka: KafkaSettings) -> str:
    """The Kafka table connector's ``properties.*`` options: brokers, TLS and SASL."""
    return ",\n            ".join(f"'properties.{key}' = '{_sql_text(value)}'"
                                    for key, value in kafka.java_properties().items()) + ","


def _sql_text(value: str) -> str:
    """A value inside a SQL string literal (quotes doubled)."""
    return value.replace("'", "''")


def without_servers(props: dict[str, str]) -> dict[str, str]:
    """Java client properties but ``bootstrap.servers`` (set by its own builder method)."""
    return {k: v for k, v in props.items() if k != "bootstrap.servers"}


def dead_letter_sink(settings: StreamingSettings, topic: str) -> Any:
    """Kafka sink writing dead-letter JSON records to ``<topic>.dlq``."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    builder = KafkaSink.builder().set_bootstrap_servers(settings.kafka.bootstrap_servers)
    for key, value in without_servers(settings.kafka.java_properties()).items():
        builder = builder.set_property(key, value)  # TLS and SASL, when set
    return (
        builder
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(settings.kafka.dlq_topic(topic))
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )


def discarding_sink() -> Any:
    """Flink's DiscardingSink: the end of a graph whose real writes happen in a function."""
    from pyflink.datastream.connectors.base import Sink

    return Sink("org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink")


def parsed_events(
    t_env: Any,
    settings: StreamingSettings,
    job: Job,
    role: str,
    topic: str,
    group_id: str,
    *,
    dead_letters: bool = True,
) -> Any:
    """Parse one topic for ``job``; valid events continue (pickled), broken ones go to its DLQ.

    With ``dead_letters=False`` (a topic whose dead letters another job writes), broken
    records are only counted in the ``skipped_invalid`` metric.
    """
    from pyflink.common import Types
    from pyflink.datastream import OutputTag, ProcessFunction

    dlq_tag = OutputTag(DLQ_TAG_NAME, Types.STRING())

    class ParseEvents(ProcessFunction):
        def open(self, runtime_context: Any) -> None:
            metrics = runtime_context.get_metrics_group()
            self.dead = metrics.counter("dead_letters" if dead_letters else "skipped_invalid")
            self.log_budget = LogBudget()
            self.lateness = bound_ms(settings.feed.lateness_bound_s)

        def process_element(self, row: Any, ctx: Any) -> Iterator[Any]:
            payload = bytes(row[0] or b"")
            arrival = arrival_ms(row[3]) if self.lateness is not None else None
            event, letter = parse_or_dead_letter(role, job, topic, row[1], row[2], payload,
                                                 arrival, self.lateness)
            if letter is None:
                yield event
                return
            self.dead.inc()
            if dead_letters:
                log_dead_letter(self.log_budget, topic, row[1], row[2], payload, letter)
                yield dlq_tag, letter

    step = f"parse-{role}"
    events = (
        kafka_rows(t_env, settings, topic, group_id)
        .process(ParseEvents(), output_type=Types.PICKLED_BYTE_ARRAY())
        .name(step)
        .uid(step)
    )
    if not dead_letters:
        return events
    (
        events.get_side_output(dlq_tag)
        .sink_to(dead_letter_sink(settings, topic))
        .name(f"dead-letters-{role}")
        .uid(f"dead-letters-{role}")
    )
    return events


def log_dead_letter(budget: LogBudget, topic: str, partition: int, offset: int,
                    payload: bytes, letter: str) -> None:
    """Log one dead letter (with its event id) unless ``budget`` is spent for now."""
    allowed, skipped = budget.take()
    if not allowed:
        return
    line = dead_letter_line(topic, partition, offset, payload, letter)
    if skipped:
        line += f" ({skipped} earlier dead letter(s) not logged; `feedctl dlq inspect`)"
    log.warning("%s", line)


def split_for_writers(
        stamped_effects: tuple[int, list[Any]]) -> Iterator[tuple[str, list[Any], list[Any]]]:
    """(writer bucket, its (write time, effect) pairs, its push events) for one event.

    The push events are judged among all of the event's effects (a follower's timeline
    add is news because the post's upsert is in the same event, in the author's bucket),
    then each goes with the effect it announces, to that effect's bucket.
    """
    from feedline.rules.write_order import split_by_bucket, stamped
    from feedline.stores.push import feed_event_per_effect

    first, effects = stamped_effects
    items = [(at, effect, push) for (at, effect), push in
             zip(stamped(first, effects), feed_event_per_effect(effects), strict=True)]
    for bucket, mine in split_by_bucket(items):
        yield (bucket, [(at, effect) for at, effect, _ in mine],
               [push for _, _, push in mine if push is not None])


#: Ticks per second into the writers (``writer_ticks``): each bucket is visited about twice a
#: second, so one is missed for 5 s with probability ~e^-10.
TICKS_PER_S = 256


def writer_ticks(t_env: Any, step: str) -> Any:
    """``(bucket, [], [])`` for random writer buckets, ``TICKS_PER_S`` a second.

    A bucket's unwritten effects restored from a checkpoint or savepoint must be written even
    if no new effect ever reaches that bucket; the processing-time timers restored with them
    were seen not to fire in PyFlink (a savepoint restore left a bucket's effects unwritten
    until its next element). A tick is such an element: the writer then takes what the
    bucket's state holds. Ticks name "0" up to the highest bucket name in use or of earlier
    versions (``write_order.LEGACY_BUCKETS``), so a savepoint of an earlier bucket count is
    written out too. Flink's built-in ``datagen`` connector makes them (no jar).
    """
    from pyflink.common import Types

    from feedline.rules.write_order import BUCKET_NAMES, LEGACY_BUCKETS

    highest = max(LEGACY_BUCKETS - 1, *(int(name) for name in BUCKET_NAMES))

    table = f"ticks_{step.replace('-', '_')}"
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE IF NOT EXISTS `{table}` (`n` INT) WITH (
            'connector' = 'datagen',
            'rows-per-second' = '{TICKS_PER_S}',
            'fields.n.kind' = 'random',
            'fields.n.min' = '0',
            'fields.n.max' = '{highest}'
        )
        """
    )
    return (
        t_env.to_data_stream(t_env.from_path(f"`{table}`"))
        .map(lambda row: (str(row[0]), [], []), output_type=Types.PICKLED_BYTE_ARRAY())
        .name(f"ticks-{step}")
        .uid(f"ticks-{step}")
    )


def write_and_end(effects: Any, t_env: Any, settings: StreamingSettings, step: str) -> None:
    """Send each event's effects to the writers of their rows' owners and end the graph.

    ``effects`` carries ``(first write time, effects)`` per event (the rule operators).
    They are split by the owner of the rows each effect writes, hashed into writer buckets
    (``feedline.rules.write_order``), so parallelism N gives N writers and every row keeps
    one writer; ticks (``writer_ticks``) visit every bucket. uids: ``split-<step>``,
    ``ticks-<step>`` and ``write-rows-<step>`` (the operator keeps its name,
    ``write-<step>``); the former single writer's uid ``write-<step>`` (keyed by a constant)
    is gone, so a savepoint taken before this graph does not restore into it (its unwritten
    batch would be lost): deploy afresh and rebuild.
    """
    from pyflink.common import Types

    from pipelines.streaming.operators import BufferedWriteEffects

    writers = (
        effects.flat_map(split_for_writers, output_type=Types.PICKLED_BYTE_ARRAY())
        .name(f"split-{step}")
        .uid(f"split-{step}")
        .union(writer_ticks(t_env, step))
        .key_by(lambda bucket_effects: bucket_effects[0], key_type=Types.STRING())
        .process(BufferedWriteEffects(settings.model_dump_json(),
                                      flush_effects=settings.flink.writer_flush_effects,
                                      flush_ms=settings.flink.writer_flush_ms),
                 output_type=Types.LONG())
        .name(f"write-{step}")  # the name the benchmarks read the writers' metrics by
        .uid(f"write-rows-{step}")
    )
    if settings.flink.writer_slot_group:  # the sink inherits it
        writers = writers.slot_sharing_group(settings.flink.writer_slot_group)
    writers.sink_to(discarding_sink()).name(f"end-{step}").uid(f"end-{step}")
