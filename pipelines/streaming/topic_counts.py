"""Count the records of a bounded slice of a Kafka topic per key field (PyFlink).

A small real job: a data engineer uses it to sanity-check a topic (how many events
per post, per author ...), and the integration tests use it to prove the local Flink
cluster, the Kafka connector jar and the Python workers all work together.

    flink run -py pipelines/streaming/topic_counts.py -- \
        --bootstrap-servers 127.0.0.1:9092 --input-topic engagements \
        --output-topic engagement-counts --key-field post_id --jars file:///…/connector.jar

Reads from the earliest offset up to the offsets current at start (bounded), so the job
ends; writes one JSON record ``{"key": …, "count": …}`` per key to the output topic.
Records that are not JSON objects with the key field are counted under ``"<invalid>"``.
In batch execution a keyed reduce emits its results with timestamp Long.MAX_VALUE, which
Kafka refuses; results are re-stamped with the time they are emitted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

INVALID_KEY = "<invalid>"


def key_of(value: str, key_field: str) -> str:
    """The key a record is counted under (pure; unit-testable)."""
    try:
        record = json.loads(value)
    except ValueError:
        return INVALID_KEY
    if not isinstance(record, dict) or not isinstance(record.get(key_field), str):
        return INVALID_KEY
    return str(record[key_field])


def emitted_now(_value: object, _record_timestamp: int) -> int:
    """Timestamp assigner: the wall-clock time (ms) a result is emitted."""
    return time.time_ns() // 1_000_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags of the job."""
    parser = argparse.ArgumentParser(prog="topic_counts", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--key-field", default="post_id")
    parser.add_argument("--group-id", default="feedline-topic-counts")
    parser.add_argument("--jars", default="", help="comma-separated file:// URLs of jars to add")
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> None:
    """Build and execute the job."""
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.common.watermark_strategy import TimestampAssigner
    from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import (
        KafkaOffsetsInitializer,
        KafkaRecordSerializationSchema,
        KafkaSink,
        KafkaSource,
    )

    args = parse_args(argv)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_runtime_mode(RuntimeExecutionMode.BATCH)
    jars = [j for j in args.jars.split(",") if j]
    if jars:
        env.add_jars(*jars)

    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap_servers)
        .set_topics(args.input_topic)
        .set_group_id(args.group_id)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer(SimpleStringSchema())
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap_servers)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(args.output_topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )
    key_field = args.key_field

    class EmittedNow(TimestampAssigner):
        def extract_timestamp(self, value: object, record_timestamp: int) -> int:
            return emitted_now(value, record_timestamp)

    pair = Types.TUPLE([Types.STRING(), Types.LONG()])
    (
        env.from_source(source, WatermarkStrategy.no_watermarks(), "read-input-topic")
        .uid("read-input-topic")
        .map(lambda v: (key_of(v, key_field), 1), output_type=pair)
        .name("key-records")
        .uid("key-records")
        .key_by(lambda kv: kv[0], key_type=Types.STRING())
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
        .name("count-per-key")
        .uid("count-per-key")
        .map(lambda kv: json.dumps({"key": kv[0], "count": kv[1]}), output_type=Types.STRING())
        .name("encode-counts")
        .uid("encode-counts")
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.no_watermarks().with_timestamp_assigner(EmittedNow())
        )
        .name("stamp-emit-time")
        .uid("stamp-emit-time")
        .sink_to(sink)
        .name("write-output-topic")
        .uid("write-output-topic")
    )
    env.execute(f"topic-counts:{args.input_topic}")


if __name__ == "__main__":
    run()
