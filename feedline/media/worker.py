"""The media worker: consumes the uploaded-media topic, processes each upload, records it.

For each message (``feedline.media.messages``) it reads the upload's row and the stored
object, and unless that object generation was processed already (idempotent per
generation: a redelivered or repeated message changes nothing) it downloads the object,
checks and renders it (``feedline.media.processing``), writes the renditions to
``<rendition_folder>/<media id>/<generation>/w<width>.<ext>`` in the media bucket and records
status, reason, dimensions, renditions and placeholder in ``media_processing``. Renditions are
named by generation, so what a post shows never changes, whatever is uploaded later.

A refused upload is an outcome, not an error: its row says ``rejected`` and why. A message
it cannot act on (not a message, an unknown media id, no object, an object replaced after it
was processed) becomes a dead letter on ``<media topic>.dlq`` with its reason. Either way the
worker moves on. A store that does not answer (CQL, object storage, Kafka) is retried: the
record is read again after a pause and its offset is committed only once it was handled.

Why a plain kafka-python consumer rather than a PyFlink job: like the archiver's
(``feedline.archive.archiver``), the work is one independent task per record with no keyed
state; it is CPU-bound image decoding, so it scales by adding worker processes to the
consumer group, without a task slot and a Python worker beside a JVM.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from feedline.media import messages
from feedline.media.messages import InvalidMessage, MediaUploaded
from feedline.media.processing import MachineError, RenderedImage, Verdict, process, rejected
from feedline.settings import CqlSettings, KafkaSettings, MediaSettings, StorageSettings
from feedline.stores.cql import connect
from feedline.stores.media_store import MediaRecord, Rendition, object_name, record_of
from feedline.stores.object_store import storage_client
from schemas.cql_statements import MEDIA

log = logging.getLogger("feedline.media")


class MediaTable:
    """The ``media`` and ``media_processing`` tables (a blocking session, opened lazily)."""

    def __init__(self, settings: CqlSettings) -> None:
        self.settings = settings
        self._cluster: Any = None
        self._session: Any = None
        self._prepared: dict[str, Any] = {}

    def _statement(self, name: str) -> tuple[Any, Any]:
        if self._session is None:
            self._cluster, self._session = connect(self.settings,
                                                   keyspace=self.settings.keyspace)
            self._prepared = {}
        if name not in self._prepared:
            self._prepared[name] = self._session.prepare(MEDIA[name])
        return self._session, self._prepared[name]

    def get(self, media_id: str) -> MediaRecord | None:
        """The upload's rows, or None when it was never announced."""
        session, announced = self._statement("media")
        row = session.execute(announced, (media_id,)).one()
        if row is None:
            return None
        session, processing = self._statement("media_processing")
        return record_of(row, session.execute(processing, (media_id,)).one())

    def record(self, media_id: str, verdict: Verdict, generation: int,
               renditions: list[Rendition], at: datetime) -> None:
        """What processing found for ``generation`` of the upload."""
        session, statement = self._statement("media_processed")
        session.execute(statement, (
            verdict.status, verdict.reason, generation, verdict.width, verdict.height,
            verdict.duration_ms,
            [(r.uri, r.width, r.height, r.content_type) for r in renditions],
            verdict.placeholder, at, media_id))

    def media_ids(self, owner_id: str | None = None) -> list[str]:
        """Every recorded upload (of ``owner_id`` only when given), a full scan for on-call."""
        session, statement = self._statement("media_all")
        return sorted(row.media_id for row in session.execute(statement)
                      if owner_id is None or row.owner_id == owner_id)

    def close(self) -> None:
        """Shut the connection down."""
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster = self._session = None


class MediaObjects:
    """The media bucket: uploaded objects in, renditions out."""

    def __init__(self, storage: StorageSettings, media: MediaSettings) -> None:
        self.storage = storage
        self.folder = media.rendition_folder.strip("/")
        self.bucket = storage_client(storage).bucket(storage.media_bucket)

    def head(self, media_id: str) -> tuple[int, int] | None:
        """(size, generation) of the uploaded object, or None when there is none."""
        blob = self.bucket.get_blob(object_name(media_id), timeout=10)
        if blob is None:
            return None
        return int(blob.size or 0), int(blob.generation or 0)

    def download(self, media_id: str, generation: int) -> bytes:
        """The bytes of that generation of the upload."""
        blob = self.bucket.blob(object_name(media_id), generation=generation or None)
        data: bytes = blob.download_as_bytes(timeout=60)
        return data

    def rendition_name(self, media_id: str, generation: int, rendition: RenderedImage) -> str:
        """Where a rendition of that generation lives in the bucket."""
        return f"{self.folder}/{media_id}/{generation}/w{rendition.width}.{rendition.suffix}"

    def write(self, media_id: str, generation: int, rendition: RenderedImage) -> Rendition:
        """Store a rendition (the same name and bytes again when reprocessed)."""
        name = self.rendition_name(media_id, generation, rendition)
        blob = self.bucket.blob(name)
        blob.cache_control = "public, max-age=31536000, immutable"
        blob.upload_from_string(rendition.data, content_type=rendition.content_type,
                                timeout=60)
        return Rendition(f"gs://{self.storage.media_bucket}/{name}", rendition.width,
                         rendition.height, rendition.content_type)


class MediaWorker:
    """Processes uploaded media from the media topic; see the module docstring."""

    def __init__(self, kafka: KafkaSettings, storage: StorageSettings, cql: CqlSettings,
                 media: MediaSettings, *, group_id: str | None = None,
                 on_poll: Callable[[], Any] | None = None, retry_pause_s: float = 2.0) -> None:
        self.kafka = kafka
        self.media = media
        self.topic = kafka.media_topic
        self.group_id = group_id or media.consumer_group
        self.table = MediaTable(cql)
        self.objects = MediaObjects(storage, media)
        self.on_poll = on_poll
        self.retry_pause_s = retry_pause_s
        self.counts: Counter[str] = Counter()
        """Outcomes so far: ready, rejected, skipped, dead_letter, retried."""
        self._producer: KafkaProducer | None = None

    # --- one upload ------------------------------------------------------------------------

    def handle(self, message: MediaUploaded) -> str:
        """Process one upload; returns the outcome (``ready``, ``rejected``, ``skipped``).

        Raises ``InvalidMessage`` for a dead letter; store errors propagate (retry).
        """
        record = self.table.get(message.media_id)
        if record is None:
            raise InvalidMessage("unknown_media", f"no upload {message.media_id} was announced")
        stored = self.objects.head(message.media_id)
        if stored is None:
            raise InvalidMessage("not_uploaded", f"{message.media_id} has no stored object")
        size, generation = stored
        if record.status is not None and record.generation not in (None, generation) \
                and not message.force:
            raise InvalidMessage(
                "object_replaced",
                f"{message.media_id} was uploaded again (generation {generation} after "
                f"{record.generation}, which was processed); uploads are create-only, so "
                "the first upload stands and the new bytes are never served")
        if record.status is not None and record.generation == generation and not message.force:
            return "skipped"
        if size == 0:
            verdict = self._verdict(b"", record.content_type)  # rejected: empty
        elif size != record.bytes:
            verdict = rejected("size_mismatch", f"{size} bytes stored, {record.bytes} announced")
        else:
            data = self.objects.download(message.media_id, generation)
            verdict = self._verdict(data, record.content_type)
        renditions = [self.objects.write(message.media_id, generation, r)
                      for r in verdict.renditions]
        self.table.record(message.media_id, verdict, generation, renditions, datetime.now(UTC))
        log.info("media %s generation %d: %s%s", message.media_id, generation, verdict.status,
                 f" ({verdict.reason})" if verdict.reason else "",
                 extra={"media_id": message.media_id, "status": verdict.status})
        return verdict.status

    def _verdict(self, data: bytes, content_type: str) -> Verdict:
        try:
            return process(data, content_type, self.media)
        except MachineError:
            raise  # not the file's fault: retried after a pause, like a store error
        except Exception as error:  # a decoder bug refuses one upload, never the worker
            log.exception("processing failed")
            return rejected("processing_failed", f"{type(error).__name__} while decoding")

    # --- the topic -------------------------------------------------------------------------

    def handle_record(self, record: Any) -> str:
        """Handle one Kafka record; dead letters are produced here. Store errors propagate."""
        try:
            outcome = self.handle(messages.parse(record.value))
        except InvalidMessage as error:
            letter = messages.dead_letter(record.topic, record.partition, record.offset,
                                          record.value, error)
            self._dead_letters().send(self.kafka.dlq_topic(self.topic), key=record.key,
                                      value=letter).get(timeout=30)
            log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition,
                        record.offset, error, extra={"reason": error.reason})
            outcome = "dead_letter"
        self.counts[outcome] += 1
        return outcome

    def _dead_letters(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self.kafka.client_options(),
                                           client_id=f"{self.group_id}-dlq", acks="all")
        return self._producer

    def _open(self) -> KafkaConsumer:
        return KafkaConsumer(
            **self.kafka.client_options(), group_id=self.group_id,
            client_id=f"{self.group_id}-worker", enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=8,
            max_poll_interval_ms=600_000, session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000)

    def _wait_for_topic(self, consumer: KafkaConsumer, stop: threading.Event) -> None:
        while not stop.is_set() and not consumer.partitions_for_topic(self.topic):
            log.info("waiting for topic %s", self.topic)
            if self.on_poll is not None:
                self.on_poll()
            stop.wait(2.0)

    def run(self, stop: threading.Event) -> Counter[str]:
        """Process the topic as a group member until ``stop`` is set; returns the outcomes."""
        consumer = self._open()
        try:
            self._wait_for_topic(consumer, stop)
            consumer.subscribe([self.topic])
            log.info("media worker started: group %s, topic %s", self.group_id, self.topic)
            while not stop.is_set():
                fetched = list(consumer.poll(timeout_ms=500).items())
                for index, (tp, records) in enumerate(fetched):
                    resume = self._records(consumer, tp, records, stop)
                    if resume is not None:  # read again what this poll did not finish
                        _seek(consumer, tp, resume)
                        for later, rest in fetched[index + 1:]:
                            _seek(consumer, later, rest[0].offset)
                        break
                if self.on_poll is not None:
                    self.on_poll()
        finally:
            consumer.close(autocommit=False)
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
            self.table.close()
        log.info("media worker stopped: %s", dict(self.counts))
        return self.counts

    def _records(self, consumer: KafkaConsumer, tp: TopicPartition, records: list[Any],
                 stop: threading.Event) -> int | None:
        """Handle a partition's records in order, committing each; None when all were.

        Otherwise the offset to read that partition from again: after a store error (once
        the retry pause is over), on stop, or when a commit was refused (a rebalance).
        """
        for record in records:
            if stop.is_set():
                return int(record.offset)
            try:
                self.handle_record(record)
            except Exception as error:  # a store (CQL, GCS, Kafka) did not answer: retry
                self.counts["retried"] += 1
                log.warning("media %s[%d]@%d: %s: %s; retrying in %.0f s", tp.topic,
                            tp.partition, record.offset, type(error).__name__, error,
                            self.retry_pause_s)
                self.table.close()  # reconnects on the next try
                stop.wait(self.retry_pause_s)
                return int(record.offset)
            try:
                consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
            except KafkaError as error:  # a rebalance: the next owner handles it again
                log.info("offset commit refused (%s); the record may be handled again",
                         type(error).__name__)
                return int(record.offset) + 1
        return None


def _seek(consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """Move the fetch position back, unless the partition went to another member."""
    try:
        consumer.seek(tp, offset)
    except (AssertionError, KafkaError) as error:  # no longer assigned: its owner reads it
        log.info("not seeking %s[%d]: %s", tp.topic, tp.partition, error)
