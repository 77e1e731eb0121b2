"""Flink: a PyFlink job on the local cluster reads Kafka through the connector jar."""

from __future__ import annotations

import json
import random
from collections import Counter

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from feedline.settings import REPO_ROOT, StackSettings
from jobs.flink_submit import connector_jar_urls, submit_python_job
from jobs.localstack.flink import rest_get
from pipelines.streaming.topic_counts import INVALID_KEY


def test_topic_counts_job_on_local_cluster_matches_reference(
    stack: StackSettings, topic_factory
) -> None:
    source, sink = topic_factory(partitions=2), topic_factory()
    rng = random.Random(7)
    records = [json.dumps({"post_id": f"p{rng.randint(0, 9)}", "user_id": f"u{i}"})
               for i in range(300)]
    records += ["not json", json.dumps({"user_id": "no post id"})]
    producer = KafkaProducer(bootstrap_servers=stack.kafka.bootstrap_servers, acks="all")
    for value in records:
        producer.send(source, value.encode())
    producer.flush()
    producer.close()
    expected = Counter(
        json.loads(v).get("post_id", INVALID_KEY) if v.startswith("{") else INVALID_KEY
        for v in records
    )

    result = submit_python_job(
        stack,
        REPO_ROOT / "pipelines" / "streaming" / "topic_counts.py",
        [
            "--bootstrap-servers", stack.kafka.bootstrap_servers,
            "--input-topic", source,
            "--output-topic", sink,
            "--group-id", f"it-{source}",
            "--jars", ",".join(connector_jar_urls(stack)),
        ],
    )
    assert result.returncode == 0, result.output[-4000:]
    assert result.job_id, result.output[-2000:]
    job = rest_get(stack.flink.rest_url, f"/jobs/{result.job_id}")
    assert job["state"] == "FINISHED"

    consumer = KafkaConsumer(
        bootstrap_servers=stack.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=300_000,  # a hang guard: the job FINISHED before
    )
    consumer.assign([TopicPartition(sink, 0)])
    got = {}
    for msg in consumer:
        row = json.loads(msg.value)
        got[row["key"]] = row["count"]
        if len(got) == len(expected):
            break
    consumer.close()
    assert got == dict(expected)
