"""The media worker's decisions per message, on in-memory stand-ins for the bucket and table
(the real ones: tests/integration/test_media_pipeline.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest

from feedline.media.messages import InvalidMessage, MediaUploaded
from feedline.media.processing import RenderedImage, Verdict
from feedline.media.worker import MediaWorker
from feedline.settings import CqlSettings, KafkaSettings, MediaSettings, StorageSettings
from feedline.stores.media_store import MediaRecord, Rendition
from tests.support.media import photo, png


@dataclass
class Table:
    rows: dict[str, MediaRecord] = field(default_factory=dict)
    writes: int = 0

    def get(self, media_id: str) -> MediaRecord | None:
        return self.rows.get(media_id)

    def record(self, media_id: str, verdict: Verdict, generation: int,
               renditions: list[Rendition], at: datetime) -> None:
        self.writes += 1
        self.rows[media_id] = replace(
            self.rows[media_id], status=verdict.status, reason=verdict.reason,
            generation=generation, width=verdict.width, height=verdict.height,
            renditions=tuple(renditions), placeholder=verdict.placeholder)

    def close(self) -> None:
        pass


@dataclass
class Bucket:
    objects: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    written: dict[str, bytes] = field(default_factory=dict)

    def head(self, media_id: str) -> tuple[int, int] | None:
        found = self.objects.get(media_id)
        return None if found is None else (len(found[0]), found[1])

    def download(self, media_id: str, generation: int) -> bytes:
        data, stored = self.objects[media_id]
        assert stored == generation
        return data

    def write(self, media_id: str, generation: int, rendition: RenderedImage) -> Rendition:
        uri = f"gs://b/renditions/{media_id}/{generation}/w{rendition.width}.{rendition.suffix}"
        self.written[uri] = rendition.data
        return Rendition(uri, rendition.width, rendition.height, rendition.content_type)


@pytest.fixture
def worker() -> Any:
    made = MediaWorker(KafkaSettings(), StorageSettings(emulator_host="http://127.0.0.1:1"),
                       CqlSettings(), MediaSettings())
    made.table = Table()  # type: ignore[assignment]
    made.objects = Bucket()  # type: ignore[assignment]
    return made


def upload(worker: Any, media_id: str, data: bytes, content_type: str = "image/jpeg",
           generation: int = 1) -> None:
    worker.table.rows[media_id] = MediaRecord(media_id, "alice", content_type, len(data),
                                              f"gs://b/media/{media_id}")
    worker.objects.objects[media_id] = (data, generation)


def test_a_generation_is_processed_once(worker: Any) -> None:
    upload(worker, "m1", photo(640, 480))
    assert worker.handle(MediaUploaded("m1")) == "ready"
    row = worker.table.rows["m1"]
    assert (row.status, row.generation, row.width, row.height) == ("ready", 1, 640, 480)
    assert [r.uri for r in row.renditions] == ["gs://b/renditions/m1/1/w640.jpg",
                                               "gs://b/renditions/m1/1/w320.jpg"]
    assert worker.handle(MediaUploaded("m1")) == "skipped"
    assert worker.handle(MediaUploaded("m1", "storage", generation=1)) == "skipped"
    assert worker.table.writes == 1


def test_reprocessing_rewrites_the_same_renditions(worker: Any) -> None:
    upload(worker, "m1", photo(640, 480))
    worker.handle(MediaUploaded("m1"))
    first = dict(worker.objects.written)
    assert worker.handle(MediaUploaded("m1", "reprocess")) == "ready"
    assert worker.objects.written == first and worker.table.writes == 2


def test_an_object_replaced_after_processing_is_refused(worker: Any) -> None:
    upload(worker, "m1", photo(640, 480))
    worker.handle(MediaUploaded("m1"))
    before = worker.table.rows["m1"]
    worker.objects.objects["m1"] = (photo(640, 480, colour=(0, 0, 255)), 2)
    with pytest.raises(InvalidMessage) as refused:
        worker.handle(MediaUploaded("m1", "storage", generation=2))
    assert refused.value.reason == "object_replaced"
    assert worker.table.rows["m1"] == before


@pytest.mark.parametrize(("prepare", "reason"), [
    (lambda w: None, "unknown_media"),
    (lambda w: w.table.rows.__setitem__("m1", MediaRecord("m1", "a", "image/jpeg", 3, "u")),
     "not_uploaded"),
])
def test_messages_it_cannot_act_on_are_dead_letters(worker: Any, prepare: Any,
                                                    reason: str) -> None:
    prepare(worker)
    with pytest.raises(InvalidMessage) as refused:
        worker.handle(MediaUploaded("m1"))
    assert refused.value.reason == reason


def test_a_refusal_is_recorded_with_its_reason(worker: Any) -> None:
    upload(worker, "m1", png(), "image/jpeg")
    assert worker.handle(MediaUploaded("m1")) == "rejected"
    row = worker.table.rows["m1"]
    assert row.status == "rejected" and (row.reason or "").startswith("wrong_type: ")
    assert row.renditions == () and worker.objects.written == {}


def test_a_size_other_than_announced_is_refused_and_an_empty_object_is_empty(
        worker: Any) -> None:
    upload(worker, "m1", photo(64, 48))
    worker.table.rows["m1"] = replace(worker.table.rows["m1"], bytes=5)
    worker.handle(MediaUploaded("m1"))
    assert (worker.table.rows["m1"].reason or "").startswith("size_mismatch: ")
    upload(worker, "m2", b"")
    worker.table.rows["m2"] = replace(worker.table.rows["m2"], bytes=1)
    worker.handle(MediaUploaded("m2"))
    assert (worker.table.rows["m2"].reason or "").startswith("empty: ")


def test_a_decoder_crash_rejects_the_upload_not_the_worker(worker: Any,
                                                          monkeypatch: Any) -> None:
    def crash(*_: Any) -> Verdict:
        raise RuntimeError("decoder bug")

    monkeypatch.setattr("feedline.media.worker.process", crash)
    upload(worker, "m1", photo(64, 48))
    assert worker.handle(MediaUploaded("m1")) == "rejected"
    assert worker.table.rows["m1"].reason == "processing_failed: RuntimeError while decoding"


class Record:
    def __init__(self, value: bytes | None) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = "t", 0, 5, None, value


def test_a_broken_record_becomes_a_dead_letter_and_counts(worker: Any) -> None:
    sent: list[tuple[str, bytes]] = []

    class Producer:
        def send(self, topic: str, key: Any, value: bytes) -> Any:
            sent.append((topic, value))
            return self

        def get(self, timeout: float) -> None:
            return None

    worker._producer = Producer()
    assert worker.handle_record(Record(b"{")) == "dead_letter"
    [(topic, letter)] = sent
    assert topic == "media-uploads.dlq"
    assert json.loads(letter)["reason"] == "invalid_json"
    assert worker.counts == {"dead_letter": 1}
