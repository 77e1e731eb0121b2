"""Benchmark: archiver throughput and quality-gate time for the standard workload.

    .venv/bin/python -m bench.archive [--users 10000 --posts 5000] [--out PATH]

On uuid-named topics (3 partitions each) and a uuid-named archive prefix of the running
stack: produce the workload, `Archiver.drain` it (records per second, objects written),
then `run_gate` over every partition of the three topics (seconds, records per second,
peak memory of this process). Everything it created is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient

from feedline.archive.archiver import Archiver
from feedline.archive.layout import PART_SUFFIX
from feedline.settings import BatchSettings, KafkaSettings, get_stack_settings
from feedline.stores.object_store import storage_client
from feedline.workload import Workload, WorkloadSpec
from jobs.load import produce
from jobs.localstack.kafka import ensure_topics
from pipelines.quality.gate import run_gate


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints and optionally writes JSON."""
    parser = argparse.ArgumentParser(prog="bench.archive", description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=5_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    stack = get_stack_settings()
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap_servers=stack.kafka.bootstrap_servers,
                          uploads_topic=f"bench_uploads_{tag}",
                          follows_topic=f"bench_follows_{tag}",
                          engagements_topic=f"bench_engagements_{tag}", partitions=3)
    root = f"bench_{tag}/events"
    ensure_topics(kafka.bootstrap_servers, dict.fromkeys(kafka.event_topics, 3))
    out: dict[str, object] = {}
    try:
        spec = WorkloadSpec(users=args.users, posts=args.posts)
        started = time.monotonic()
        sent = produce(kafka, Workload(spec).events())
        out["produced"] = sent
        out["produce_s"] = round(time.monotonic() - started, 1)
        say(f"produced {sent:,} events in {out['produce_s']}s")

        archiver = Archiver(kafka, stack.storage, topics=kafka.event_topics, root=root,
                            group_id=f"bench-archiver-{tag}")
        started = time.monotonic()
        archived = archiver.drain(timeout_s=1800)
        took = time.monotonic() - started
        objects = sum(1 for blob in storage_client(stack.storage)
                      .bucket(stack.storage.archive_bucket).list_blobs(prefix=f"bench_{tag}/")
                      if blob.name.endswith(PART_SUFFIX))  # parts (each has its arrivals)
        out.update(archived=archived, archive_s=round(took, 1),
                   archive_per_s=round(archived / took), objects=objects)
        say(f"archived {archived:,} records in {took:.1f}s ({archived / took:,.0f}/s), "
            f"{objects} objects")

        settings = BatchSettings(kafka=kafka, storage=stack.storage, archive_prefix=root)
        started = time.monotonic()
        result = run_gate(settings, kafka.event_topics, None, None)
        took = time.monotonic() - started
        records = sum(r.records for r in result.partitions)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.update(gate_passed=result.passed, gate_records=records,
                   gate_partitions=len(result.partitions), gate_s=round(took, 1),
                   gate_per_s=round(records / took), peak_rss_mb=round(peak_mb))
        say(f"quality gate {'passed' if result.passed else 'FAILED'}: {records:,} records "
            f"in {len(result.partitions)} partitions, {took:.1f}s; peak RSS {peak_mb:.0f} MB")
    finally:
        bucket = storage_client(stack.storage).bucket(stack.storage.archive_bucket)
        for blob in bucket.list_blobs(prefix=f"bench_{tag}/"):
            blob.delete()
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        try:
            admin.delete_topics(list(kafka.event_topics))
        finally:
            admin.close()
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
