"""Parity: streaming and the batch rebuild give the same stores, exactly.

One event set is produced to sandbox topics and processed by both streaming jobs until the
stores equal the reference model; the archiver drains the same topics into the archive.
Then Redis and the timeline and counter tables are wiped and `feedctl rebuild all` runs:
full dumps of every derived table and every Redis key must equal the dumps taken before
the wipe. Then every derived table is wiped and rebuilt (`--all-tables`): equal again.
"""

from __future__ import annotations

import uuid

from feedline.archive.archiver import Archiver
from feedline.settings import BatchSettings, StackSettings
from feedline.stores.object_store import storage_client
from feedline.workload import Workload
from jobs import flink_rest
from jobs.feedctl.rebuild import rebuild_all
from jobs.load import produce
from jobs.sandbox import open_sandbox
from pipelines.batch import rebuild_timelines
from tests.e2e.test_streaming_e2e import FEED, SPEC
from tests.support.dump import TABLES, differences, dump_cql, dump_redis, wipe
from tests.support.pipeline import events_of, wait_converged
from tests.support.reference import reference_for
from tests.support.waiting import HANG_GUARD_S


def test_rebuild_from_the_archive_equals_what_streaming_built(stack: StackSettings) -> None:
    sb = open_sandbox(stack, FEED)
    root = f"parity_{uuid.uuid4().hex[:10]}"
    bucket = storage_client(stack.storage).bucket(stack.storage.archive_bucket)
    try:
        sb.deploy("fanout")
        sb.deploy("counters")
        produced = list(Workload(SPEC).events())
        kafka = sb.streaming.kafka
        produce(kafka, produced)
        expected = reference_for(events_of(produced), FEED)
        assert expected.celebrities and expected.deleted_posts
        assert wait_converged(sb, expected) == []
        for job_id in sb.job_ids.values():  # nothing may write behind the rebuild's back
            flink_rest.cancel(stack.flink.rest_url, job_id)
        archived = Archiver(kafka, stack.storage, topics=list(kafka.event_topics),
                            root=f"{root}/events", group_id=f"archiver-{root}").drain(HANG_GUARD_S)
        assert archived == len(produced)

        streaming_cql = dump_cql(sb.session)
        streaming_redis = dump_redis(sb.redis, sb.keys.prefix)
        assert streaming_cql["timelines"] and streaming_cql["user_counters"]
        settings = BatchSettings(kafka=kafka, cql=sb.streaming.cql, redis=sb.streaming.redis,
                                 storage=stack.storage, feed=FEED,
                                 archive_prefix=f"{root}/events")
        argv = ["--settings-json", settings.model_dump_json()]

        wipe(sb.session, sb.redis, sb.keys.prefix,
             ("timelines", "post_counters", "user_counters"))
        assert rebuild_all(argv) == 0
        assert differences(streaming_cql, dump_cql(sb.session)) == []
        assert differences(streaming_redis, dump_redis(sb.redis, sb.keys.prefix)) == []

        wipe(sb.session, sb.redis, sb.keys.prefix, tuple(TABLES))
        assert rebuild_timelines.run([*argv, "--all-tables", "--no-gate"]) == 0
        assert rebuild_all([*argv, "--no-gate"]) == 0
        assert differences(streaming_cql, dump_cql(sb.session)) == []
        assert differences(streaming_redis, dump_redis(sb.redis, sb.keys.prefix)) == []
    finally:
        sb.close()
        for blob in bucket.list_blobs(prefix=f"{root}/"):
            blob.delete()
