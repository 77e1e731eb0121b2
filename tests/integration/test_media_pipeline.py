"""The media pipeline on the real stack: uploads into the GCS emulator, the uploaded-media
topic on Kafka, a media worker consuming it (in a thread, its own topic and group), the
verdicts in the test's CQL keyspace and read back through the API.

Bad input (issue 14): each upload gets its reason, the worker keeps going, and the upload
after them is processed as if nothing happened.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from PIL import Image
from starlette.testclient import TestClient

from feedline.media.worker import MediaWorker
from feedline.settings import ServingSettings, StackSettings
from feedline.stores.media_store import object_name
from feedline.stores.object_store import storage_client
from jobs.localstack.kafka import ensure_topics
from tests.integration import test_api_stack
from tests.integration.test_api_stack import consume
from tests.support.fixtures import unique
from tests.support.media import (
    announce,
    auth,
    carries_metadata,
    complete,
    has_gps,
    mp4,
    photo,
    png,
    png_bomb,
    remove_media,
    truncated,
    video,
    video_facts,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

api_settings = test_api_stack.api_settings
client = test_api_stack.client


@pytest.fixture
def dead_letters(stack: StackSettings, api_settings: ServingSettings) -> Iterator[str]:
    """The media topic's dead-letter topic (the fixtures name only the topic itself)."""
    topic = api_settings.kafka.dlq_topic(api_settings.kafka.media_topic)
    ensure_topics(stack.kafka.bootstrap_servers, {topic: 1})
    yield topic
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


@pytest.fixture
def uploads(api_settings: ServingSettings) -> Iterator[list[str]]:
    """Media ids whose objects and renditions are deleted after the test."""
    created: list[str] = []
    yield created
    remove_media(api_settings, created)


@pytest.fixture
def start_worker(api_settings: ServingSettings,
                 dead_letters: str) -> Iterator[Callable[[], MediaWorker]]:
    """Starts a media worker on the test's topic, keyspace and bucket (stopped after)."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start() -> MediaWorker:
        worker = MediaWorker(api_settings.kafka, api_settings.storage, api_settings.cql,
                             api_settings.media, group_id=unique("media"), retry_pause_s=0.5)
        thread = threading.Thread(target=worker.run, args=(stop,), name="media-worker",
                                  daemon=True)
        thread.start()
        threads.append(thread)
        return worker

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=120)


def state(client: TestClient, settings: ServingSettings, user: str,
          media_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/media/{media_id}", headers=auth(settings, user))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def settled(client: TestClient, settings: ServingSettings, user: str,
            media_id: str) -> dict[str, Any]:
    """The upload's state once the worker decided (polls GET /v1/media/{id})."""
    return eventually(lambda: (lambda s: s if s["status"] != "processing" else None)(
        state(client, settings, user, media_id)), f"media {media_id} to be processed")


def produce(settings: ServingSettings, values: list[bytes]) -> None:
    """Records on the media topic, as another producer (a notification forwarder) would."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:
        for value in values:
            producer.send(settings.kafka.media_topic, value=value).get(timeout=30)
    finally:
        producer.close()


def test_a_photo_is_processed_posted_and_served_without_its_location(
        client: TestClient, api_settings: ServingSettings,
        start_worker: Callable[[], MediaWorker], uploads: list[str]) -> None:
    original = photo(1600, 1200)
    assert has_gps(original)
    alice, bob = auth(api_settings, "alice"), auth(api_settings, "bob")
    body = announce(client, api_settings, "alice", original)
    media_id = body["media_id"]
    uploads.append(media_id)
    assert client.post("/v1/posts", json={"media_ids": [media_id]},
                       headers=alice).status_code == 409  # not completed
    assert client.get(f"/v1/media/{media_id}", headers=bob).status_code == 404
    assert complete(client, api_settings, "alice", media_id)["status"] == "processing"
    refused = client.post("/v1/posts", json={"media_ids": [media_id]}, headers=alice)
    assert refused.status_code == 409, refused.text  # no worker yet: still processing
    assert refused.json()["type"].endswith("/media-processing")
    assert "still processing" in refused.json()["errors"][0]["message"]

    start_worker()
    ready = settled(client, api_settings, "alice", media_id)
    assert ready["status"] == "ready" and ready["reason"] is None
    assert (ready["width"], ready["height"], ready["content_type"]) == (1600, 1200, "image/jpeg")
    assert [(r["width"], r["height"], r["content_type"]) for r in ready["renditions"]] == [
        (1080, 810, "image/jpeg"), (320, 240, "image/jpeg")]
    assert ready["placeholder"].startswith("#") and len(ready["placeholder"]) == 7
    for rendition in ready["renditions"]:
        served = httpx.get(rendition["url"])
        assert served.status_code == 200
        assert carries_metadata(served.content) == []  # no EXIF, no GPS, no comment
        with Image.open(io.BytesIO(served.content)) as decoded:
            assert decoded.size == (rendition["width"], rendition["height"])
    # Completing again changes nothing: it was processed once.
    assert complete(client, api_settings, "alice", media_id) == ready

    posted = client.post("/v1/posts", json={"caption": "no location", "media_ids": [media_id]},
                         headers=alice)
    assert posted.status_code == 202, posted.text
    [(_key, event)] = consume(api_settings, api_settings.kafka.uploads_topic, 1)
    [shown] = event["media"]
    assert shown["content_type"] == "image/jpeg"
    # The post names the rendition of the generation processed: later uploads cannot swap it.
    generation = storage_client(api_settings.storage).bucket(
        api_settings.storage.media_bucket).get_blob(object_name(media_id)).generation
    assert shown["uri"] == (f"gs://{api_settings.storage.media_bucket}/renditions/"
                            f"{media_id}/{generation}/w1080.jpg")
    # The event carries what the worker found (post_created v2), so feeds show it as data.
    assert event["schema_version"] == 2
    assert (shown["width"], shown["height"], shown["placeholder"]) == (
        ready["width"], ready["height"], ready["placeholder"])
    assert "duration_ms" not in shown  # a photo
    assert [(r["uri"], r["width"], r["height"], r["content_type"]) for r in shown["renditions"]
            ] == [(f"gs://{api_settings.storage.media_bucket}/renditions/{media_id}/"
                   f"{generation}/w{w}.jpg", w, h, "image/jpeg") for w, h in ((1080, 810),
                                                                              (320, 240))]
    # Published: anyone may read its state now.
    assert client.get(f"/v1/media/{media_id}", headers=bob).json() == ready


def test_a_video_is_processed_posted_and_served_without_its_location(
        client: TestClient, api_settings: ServingSettings,
        start_worker: Callable[[], MediaWorker], uploads: list[str]) -> None:
    original = video(640, 360, seconds=2.0)
    assert "location" in video_facts(original)["tags"]
    alice = auth(api_settings, "alice")
    media_id = announce(client, api_settings, "alice", original, "video/mp4")["media_id"]
    uploads.append(media_id)
    complete(client, api_settings, "alice", media_id)
    start_worker()
    ready = settled(client, api_settings, "alice", media_id)
    assert ready["status"] == "ready", ready["reason"]
    assert (ready["width"], ready["height"], ready["duration_ms"]) == (640, 360, 2000)
    assert ready["content_type"] == "video/mp4"
    assert [(r["width"], r["height"], r["content_type"]) for r in ready["renditions"]] == [
        (640, 360, "video/mp4"), (640, 360, "image/jpeg"), (320, 180, "image/jpeg")]
    playable = httpx.get(ready["renditions"][0]["url"])
    assert playable.status_code == 200
    served = video_facts(playable.content)
    assert "location" not in served["tags"] and served["frames"] == 50
    for poster in ready["renditions"][1:]:
        assert carries_metadata(httpx.get(poster["url"]).content) == []

    posted = client.post("/v1/posts", json={"caption": "a clip", "media_ids": [media_id]},
                         headers=alice)
    assert posted.status_code == 202, posted.text
    [(_key, event)] = consume(api_settings, api_settings.kafka.uploads_topic, 1)
    [shown] = event["media"]
    generation = storage_client(api_settings.storage).bucket(
        api_settings.storage.media_bucket).get_blob(object_name(media_id)).generation
    # The post shows the playable copy of the generation processed, its poster beside it.
    assert (shown["content_type"], shown["duration_ms"]) == ("video/mp4", 2000)
    assert shown["uri"] == (f"gs://{api_settings.storage.media_bucket}/renditions/"
                            f"{media_id}/{generation}/w640.mp4")
    assert [r["uri"].rsplit("/", 1)[1] for r in shown["renditions"]] == [
        "w640.mp4", "w640.jpg", "w320.jpg"]


BAD_UPLOADS: dict[str, tuple[bytes, str, str]] = {
    "random bytes labelled JPEG": (os.urandom(8192), "image/jpeg", "wrong_type"),
    "PNG labelled JPEG": (png(), "image/jpeg", "wrong_type"),
    "truncated JPEG": (truncated(photo(800, 600)), "image/jpeg", "truncated"),
    "30000x30000 bomb": (png_bomb(), "image/png", "too_many_pixels"),
    "MP4 labelled image": (mp4(), "image/jpeg", "wrong_type"),
    "MP4 header alone": (mp4(), "video/mp4", "undecodable"),
    "MP4 cut short": (truncated(video(), 0.7), "video/mp4", "truncated"),
}


def test_bad_uploads_get_their_reason_and_the_worker_keeps_going(
        client: TestClient, api_settings: ServingSettings,
        start_worker: Callable[[], MediaWorker], uploads: list[str]) -> None:
    alice = auth(api_settings, "alice")
    ids = {}
    for name, (data, content_type, _reason) in BAD_UPLOADS.items():
        ids[name] = announce(client, api_settings, "alice", data, content_type)["media_id"]
    # Zero bytes: the API refuses to announce them; an empty object is refused by the worker.
    assert client.post("/v1/media", headers=alice, json={"content_type": "image/jpeg",
                                                         "bytes": 0}).status_code == 422
    empty = client.post("/v1/media", headers=alice,
                        json={"content_type": "image/jpeg", "bytes": 1}).json()["media_id"]
    # The emulator's XML PUT fails on an empty body: store the empty object through its JSON
    # API instead (what an empty PUT to the signed URL leaves in GCS).
    storage_client(api_settings.storage).bucket(api_settings.storage.media_bucket).blob(
        object_name(empty)).upload_from_string(b"", content_type="image/jpeg")
    ids["zero bytes"] = empty
    good = announce(client, api_settings, "alice", photo(640, 480))["media_id"]
    uploads.extend([*ids.values(), good])
    for media_id in [*ids.values(), good]:
        complete(client, api_settings, "alice", media_id)
    worker = start_worker()

    expected = {name: reason for name, (_d, _t, reason) in BAD_UPLOADS.items()}
    expected["zero bytes"] = "empty"
    for name, media_id in ids.items():
        verdict = settled(client, api_settings, "alice", media_id)
        assert verdict["status"] == "rejected", name
        assert verdict["reason"].split(":")[0] == expected[name], (name, verdict["reason"])
        assert verdict["renditions"] == [] and verdict["width"] is None
        refused = client.post("/v1/posts", json={"media_ids": [media_id]}, headers=alice)
        assert refused.status_code == 422, name
        message = refused.json()["errors"][0]["message"]
        # An empty object fails the size check before its verdict is looked at.
        assert ("holds 0 bytes" if name == "zero bytes" else verdict["reason"]) in message
    assert settled(client, api_settings, "alice", good)["status"] == "ready"
    eventually(lambda: worker.counts["ready"] == 1, "the worker to count the good upload")
    assert worker.counts["rejected"] == len(ids) and worker.counts["retried"] == 0


def test_a_second_upload_to_a_used_url_changes_nothing(
        client: TestClient, api_settings: ServingSettings,
        start_worker: Callable[[], MediaWorker], uploads: list[str],
        dead_letters: str) -> None:
    first = photo(800, 600)
    body = announce(client, api_settings, "alice", first)
    media_id = body["media_id"]
    uploads.append(media_id)
    # Create-only: GCS refuses (412) a PUT over an existing object with this signed header.
    assert body["upload_headers"]["x-goog-if-generation-match"] == "0"
    complete(client, api_settings, "alice", media_id)
    start_worker()
    before = settled(client, api_settings, "alice", media_id)
    assert before["status"] == "ready"
    served = [httpx.get(r["url"]).content for r in before["renditions"]]

    # The emulator ignores the precondition: the second PUT lands as a new generation, the
    # way a swap would if the header were not signed. A storage notification announces it.
    other = photo(800, 600, colour=(10, 200, 10))
    again = httpx.put(body["upload_url"], content=other, headers=body["upload_headers"])
    assert again.status_code == 200
    blob = storage_client(api_settings.storage).bucket(
        api_settings.storage.media_bucket).get_blob(object_name(media_id))
    produce(api_settings, [json.dumps({"kind": "storage#object", "name": blob.name,
                                       "bucket": blob.bucket.name,
                                       "generation": str(blob.generation)}).encode()])
    assert complete(client, api_settings, "alice", media_id) == before  # already processed

    letter = eventually(lambda: next((e for _k, e in consume(api_settings, dead_letters)
                                      if e["reason"] == "object_replaced"), None),
                        "the replaced object's dead letter")
    assert media_id in letter["detail"] and "create-only" in letter["detail"]
    assert state(client, api_settings, "alice", media_id) == before
    assert [httpx.get(r["url"]).content for r in before["renditions"]] == served


def test_what_is_not_an_upload_becomes_a_dead_letter(
        client: TestClient, api_settings: ServingSettings,
        start_worker: Callable[[], MediaWorker], uploads: list[str],
        dead_letters: str) -> None:
    produce(api_settings, [b"not json", json.dumps({"media_id": "m-never-announced"}).encode()])
    media_id = announce(client, api_settings, "alice", photo(320, 240))["media_id"]
    uploads.append(media_id)
    complete(client, api_settings, "alice", media_id)
    worker = start_worker()
    assert settled(client, api_settings, "alice", media_id)["status"] == "ready"
    letters = consume(api_settings, dead_letters)
    assert sorted(e["reason"] for _k, e in letters) == ["invalid_json", "unknown_media"]
    assert worker.counts["dead_letter"] == 2


def test_only_the_owner_completes_or_reads_an_unpublished_upload(
        client: TestClient, api_settings: ServingSettings, uploads: list[str]) -> None:
    bob = auth(api_settings, "bob")
    media_id = announce(client, api_settings, "alice", photo(64, 48))["media_id"]
    uploads.append(media_id)
    assert client.post(f"/v1/media/{media_id}/complete", headers=bob).status_code == 404
    assert client.get(f"/v1/media/{media_id}", headers=bob).status_code == 404
    assert client.get("/v1/media/m-unknown", headers=bob).status_code == 404
    waiting = client.post("/v1/media", headers=auth(api_settings, "alice"),
                          json={"content_type": "image/jpeg", "bytes": 10}).json()
    not_uploaded = client.post(f"/v1/media/{waiting['media_id']}/complete",
                               headers=auth(api_settings, "alice"))
    assert not_uploaded.status_code == 409
    assert not_uploaded.json()["type"].endswith("/media-not-uploaded")
    # Nothing was queued for either.
    assert consume(api_settings, api_settings.kafka.media_topic) == []


def test_feedctl_media_reprocess_processes_an_upload_again(
        client: TestClient, api_settings: ServingSettings,
        start_worker: Callable[[], MediaWorker], uploads: list[str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from feedline.settings import get_batch_settings
    from jobs.feedctl.main import main

    media_id = announce(client, api_settings, "alice", photo(400, 300))["media_id"]
    uploads.append(media_id)
    complete(client, api_settings, "alice", media_id)
    worker = start_worker()
    before = settled(client, api_settings, "alice", media_id)
    served = [httpx.get(r["url"]).content for r in before["renditions"]]
    monkeypatch.setenv("FEEDLINE_KAFKA__MEDIA_TOPIC", api_settings.kafka.media_topic)
    monkeypatch.setenv("FEEDLINE_CQL__KEYSPACE", api_settings.cql.keyspace)
    get_batch_settings.cache_clear()
    try:
        assert main(["media", "reprocess", "--user", "alice", "--dry-run", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"queued": 0, "dry_run": True,
                                                       "media": [media_id]}
        assert main(["media", "reprocess", "--media", media_id]) == 0
    finally:
        get_batch_settings.cache_clear()
    eventually(lambda: worker.counts["ready"] == 2, "the upload to be processed again")
    # The same bytes give the same renditions and the same state.
    assert state(client, api_settings, "alice", media_id) == before
    assert [httpx.get(r["url"]).content for r in before["renditions"]] == served
