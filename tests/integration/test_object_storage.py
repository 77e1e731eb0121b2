"""Object storage: objects written and read through google-cloud-storage (the emulator)."""

from __future__ import annotations

import gzip
import json

from feedline.settings import StackSettings
from feedline.stores.object_store import storage_client


def test_both_buckets_exist(stack: StackSettings) -> None:
    client = storage_client(stack.storage)
    for name in (stack.storage.media_bucket, stack.storage.archive_bucket):
        assert client.lookup_bucket(name) is not None, name


def test_archive_object_round_trip_and_listing(stack: StackSettings, object_prefix: str) -> None:
    bucket = storage_client(stack.storage).bucket(stack.storage.archive_bucket)
    records = [{"event_id": f"e{i}", "schema_version": 1} for i in range(50)]
    payload = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    for hour in ("00", "01"):
        blob = bucket.blob(f"{object_prefix}events/uploads/dt=2026-11-21/hr={hour}/part-0.jsonl.gz")
        blob.upload_from_string(payload, content_type="application/gzip")

    names = sorted(b.name for b in bucket.list_blobs(prefix=f"{object_prefix}events/uploads/"))
    assert [n.rsplit("/", 2)[1] for n in names] == ["hr=00", "hr=01"]
    back = gzip.decompress(bucket.blob(names[0]).download_as_bytes()).decode().splitlines()
    assert [json.loads(line) for line in back] == records


def test_a_deleted_object_is_gone_not_soft_deleted(stack: StackSettings,
                                                   object_prefix: str) -> None:
    """The stack's buckets keep no soft-deleted copies: the emulator would hold each in its
    one metadata file, rewritten on every change, for the 7 days GCS defaults to."""
    client = storage_client(stack.storage)
    for name in (stack.storage.media_bucket, stack.storage.archive_bucket):
        bucket = client.get_bucket(name)
        assert bucket.soft_delete_policy.retention_duration_seconds == 0, name
        blob = bucket.blob(f"{object_prefix}gone.txt")
        blob.upload_from_string(b"x")
        blob.delete()
        assert list(client.list_blobs(bucket, prefix=f"{object_prefix}gone",
                                      soft_deleted=True)) == [], name
