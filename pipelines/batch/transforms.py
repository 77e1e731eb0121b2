"""The steps the rebuild jobs share: archive read, key shards, progress, sinks' stores.

Elements are coarse on purpose (the Python DirectRunner pays per element): one element
per archive part to read, one per (part, shard) of raw records to group, one per shard
to derive and write. Records are routed by the same keys the streaming jobs key by
(``feedline.rules.keys``), hashed into ``shards`` groups; every rules key lands in
exactly one group, so the rules see all of a key's events, as a keyed Flink state does.

    (role, object name) ─ReadArchive─▶ (role, object name, lines)
        ─GroupByKeyShard─▶ (shard, [[(role, line), ...], ...])

Only ``ReadArchive`` and the sinks (``StoreSink``) touch a store; grouping is pure.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import apache_beam as beam

from feedline.rules.keys import Job, record_keys
from pipelines.batch.options import RebuildOptions
from pipelines.batch.report import advance

#: An archive part to read: (topic role, object name).
PartName = tuple[str, str]
#: An archive part read: (topic role, object name, its raw lines).
PartLines = tuple[str, str, list[bytes]]
#: Raw records of one shard from one part: (topic role, raw line).
ShardRecords = list[tuple[str, bytes]]


def shard_of(key: str, shards: int) -> int:
    """The group a rules key's events go to."""
    return zlib.crc32(key.encode()) % shards


def fanout_route(record: Mapping[str, Any]) -> list[str]:
    """The fan-out job's key of a raw record (uploads by author, follows by followee)."""
    return [key.text for key in record_keys(record, Job.FANOUT)]


def counter_route(record: Mapping[str, Any]) -> list[str]:
    """The counters job's keys of a raw record (``post:ID`` / ``user:ID``)."""
    return [key.text for key in record_keys(record, Job.COUNTERS)]


def notification_route(record: Mapping[str, Any]) -> list[str]:
    """The notifications job's keys of a raw record (``npost:ID`` / ``recipient:ID``)."""
    return [key.text for key in record_keys(record, Job.NOTIFICATIONS)]


Router = Callable[[Mapping[str, Any]], list[str]]

#: Each job's router.
ROUTERS: dict[Job, Router] = {Job.FANOUT: fanout_route, Job.COUNTERS: counter_route,
                              Job.NOTIFICATIONS: notification_route}


def route_records(role: str, lines: Sequence[bytes], shards: int,
                  router: Router) -> dict[int, ShardRecords]:
    """Raw records grouped by the shard of each of their rules keys (a JSON decode only).

    A record of an event type no rule knows raises ``UnknownEventType`` (a ``ValueError``):
    the quality gate should have stopped it, so the job stops rather than drop it.
    """
    groups: dict[int, ShardRecords] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise ValueError("a record is not a JSON object (the quality gate should have "
                             "stopped the job; rerun with --quarantine)")
        for key in router(record):
            groups.setdefault(shard_of(key, shards), []).append((role, line))
    return groups


def route_part(part: PartLines, shards: int, job: Job) -> Iterator[tuple[int, ShardRecords]]:
    """One part's records by shard; an error names the part."""
    role, object_name, lines = part
    try:
        groups = route_records(role, lines, shards, ROUTERS[job])
    except ValueError as err:
        raise ValueError(f"{object_name}: {err}") from None
    yield from groups.items()


def parse_shard(batches: Iterable[ShardRecords], since: datetime | None,
                until: datetime | None) -> list[Any]:
    """The valid events of a shard's raw records inside the window."""
    from feedline.rebuild.source import in_window
    from schemas.event_contracts import parse_event

    events = []
    for batch in batches:
        for role, line in batch:
            event = parse_event(role, line)
            if in_window(event, since, until):
                events.append(event)
    return events


class ReadParts(beam.DoFn):
    """An archive part's name in, its raw lines out (google-cloud-storage; no Beam GCP IO).

    Lines the lateness bound refuses (``feed.lateness_bound_s``) are left out and counted
    (``read/too_late``), as the streaming jobs dead-letter them.
    """

    def __init__(self, settings_json: str) -> None:
        self.settings_json = settings_json
        self.parts = beam.metrics.Metrics.counter("read", "parts")
        self.records = beam.metrics.Metrics.counter("read", "records")
        self.too_late = beam.metrics.Metrics.counter("read", "too_late")

    def setup(self) -> None:
        """Open the archive."""
        from feedline.archive.store import Archive
        from feedline.rules.retention import bound_ms
        from feedline.settings import BatchSettings

        settings = BatchSettings.model_validate_json(self.settings_json)
        self.archive = Archive.open(settings.storage, settings.archive_prefix)
        self.lateness = bound_ms(settings.feed.lateness_bound_s)

    def process(self, part: PartName) -> Iterator[PartLines]:
        """Download one part; with a lateness bound, without its too-late events."""
        role, object_name = part
        lines, late = self.archive.admitted_lines(object_name, self.lateness)
        self.parts.inc()
        self.records.inc(len(lines) + late)
        self.too_late.inc(late)
        yield role, object_name, lines


class ReadArchive(beam.PTransform):
    """Archive parts, spread over the workers, read: ``(role, object name, lines)``."""

    def __init__(self, options: RebuildOptions) -> None:
        super().__init__()
        self.options = options

    def expand(self, parts: Any) -> Any:
        """Reshuffle the listed parts, then download each."""
        return (
            parts
            | "SpreadParts" >> beam.Reshuffle()
            | "ReadParts" >> beam.ParDo(ReadParts(self.options.settings_json))
        )


class GroupByKeyShard(beam.PTransform):
    """Parts' raw records grouped by the shard of their ``job`` rules keys. Pure.

    In: ``(role, object name, lines)``; out: ``(shard, batches of (role, line))``, every
    rules key's records in one shard (a follow reaches both its users' counter shards).
    """

    def __init__(self, job: Job, shards: int) -> None:
        super().__init__()
        self.job = job
        self.shards = shards

    def expand(self, parts: Any) -> Any:
        """Route each part's records, then group them by shard."""
        return (
            parts
            | "RouteRecords" >> beam.FlatMap(route_part, self.shards, self.job)
            | "GroupByShard" >> beam.GroupByKey()
        )


def count_step(_element: Any, progress_file: str | None) -> list[None]:
    """One progress step done per element; nothing out."""
    advance(progress_file)
    return []


class CountSteps(beam.PTransform):
    """One progress step per element of its input (a leaf: nothing comes out)."""

    def __init__(self, progress_file: str | None) -> None:
        super().__init__()
        self.progress_file = progress_file

    def expand(self, done: Any) -> Any:
        """Advance the job's progress file once per element."""
        return done | "Advance" >> beam.FlatMap(count_step, self.progress_file)


class StoreSink(beam.DoFn):
    """A sink step: holds an ``ImageWriter`` on the stores from ``setup`` to ``teardown``.

    ``self.writer`` and ``self.settings`` exist once set up.
    """

    def __init__(self, options: RebuildOptions) -> None:
        self.options = options

    def setup(self) -> None:
        """Connect to the CQL store and Redis."""
        from feedline.rebuild.writer import ImageWriter
        from feedline.stores.cluster_writes import cache_client
        from feedline.stores.cql import connect
        from schemas.redis_keys import RedisKeys

        self.settings = self.options.settings()
        self._cluster, session = connect(self.settings.cql,
                                         keyspace=self.settings.cql.keyspace)
        self._redis = cache_client(self.settings.redis, decode_responses=True)
        self.writer = ImageWriter(session, self._redis,
                                  RedisKeys(self.settings.redis.key_prefix,
                                            cluster=self.settings.redis.cluster),
                                  timeline_cap=self.settings.feed.timeline_cap,
                                  write_time_us=self.options.write_time_us)

    def teardown(self) -> None:
        """Release the connections."""
        self._cluster.shutdown()
        self._redis.close()
