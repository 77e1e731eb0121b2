"""Write routes on the real stack: signed uploads into the GCS emulator, events on Kafka
(keys, contents), authorization, idempotency, rate limits and Kafka outages."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from feedline.settings import ApiSettings, KafkaSettings, ServingSettings
from feedline.stores.media_store import object_name
from feedline.stores.object_store import storage_client
from schemas.event_contracts import parse_event
from serving.main import create_app
from tests.integration import test_api_stack
from tests.integration.test_api_stack import Seeder, auth, consume
from tests.support.media import complete, photo, png, processed_inline, remove_media

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

# The shared fixtures (pytest finds fixtures among module attributes).
api_settings = test_api_stack.api_settings
client = test_api_stack.client
seeder = test_api_stack.seeder

JPEG = photo(64, 48)


def upload(client: TestClient, settings: ServingSettings, user: str,
           data: bytes = JPEG, content_type: str = "image/jpeg", put: bool = True,
           ready: bool = True) -> str:
    """Announce a file, then PUT it to the signed URL (a real HTTP request to the emulator);
    then complete it and process it as the media worker would, unless not ``ready``."""
    answer = client.post("/v1/media", json={"content_type": content_type, "bytes": len(data)},
                         headers=auth(settings, user))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["method"] == "PUT"
    assert body["upload_url"].startswith(f"{settings.storage.emulator_host}/feedline-media/")
    if put:
        stored = httpx.put(body["upload_url"], content=data, headers=body["upload_headers"])
        assert stored.status_code == 200, stored.text
        if ready:
            complete(client, settings, user, body["media_id"])
            assert processed_inline(settings, body["media_id"]) == "ready"
    return str(body["media_id"])


@pytest.fixture
def cleanup_media(api_settings: ServingSettings) -> Any:
    created: list[str] = []
    yield created
    bucket = storage_client(api_settings.storage).bucket(api_settings.storage.media_bucket)
    for media_id in created:
        blob = bucket.blob(object_name(media_id))
        if blob.exists():
            blob.delete()
    remove_media(api_settings, created)


def test_upload_then_post_produces_the_event(client: TestClient, api_settings: ServingSettings,
                                             cql_session: Any, cleanup_media: list) -> None:
    media = [upload(client, api_settings, "alice"),
             upload(client, api_settings, "alice", png(80, 60), "image/png")]
    cleanup_media.extend(media)
    row = cql_session.execute("SELECT owner_id, content_type, bytes, uri FROM media "
                              "WHERE media_id = %s", (media[0],)).one()
    assert (row.owner_id, row.content_type, row.bytes) == ("alice", "image/jpeg", len(JPEG))
    blob = storage_client(api_settings.storage).bucket("feedline-media").blob(
        object_name(media[0]))
    assert blob.download_as_bytes() == JPEG  # the PUT really stored the file

    response = client.post("/v1/posts", json={"caption": "sunset 🌅", "media_ids": media},
                           headers=auth(api_settings, "alice"))
    assert response.status_code == 202, response.text
    answer = response.json()
    [(key, event)] = consume(api_settings, api_settings.kafka.uploads_topic, 1)
    assert key == b"alice"
    assert event["event_id"] == answer["event_id"] and event["post_id"] == answer["post_id"]
    assert event["event_type"] == "post_created" and event["caption"] == "sunset 🌅"
    assert [m["media_id"] for m in event["media"]] == media
    # A post shows the largest rendition of the generation processed (the PNG had no
    # transparency, so its renditions are JPEGs).
    assert event["media"][1]["content_type"] == "image/jpeg"
    assert event["media"][1]["uri"].startswith(f"gs://feedline-media/renditions/{media[1]}/")
    parse_event("uploads", json.dumps(event))  # a valid event for the streaming jobs


def test_post_media_checks_name_each_bad_id(client: TestClient, api_settings: ServingSettings,
                                            cleanup_media: list) -> None:
    mine = upload(client, api_settings, "alice")
    not_uploaded = upload(client, api_settings, "alice", put=False)
    theirs = upload(client, api_settings, "bob")
    wrong_size = client.post("/v1/media", json={"content_type": "image/jpeg", "bytes": 10},
                             headers=auth(api_settings, "alice")).json()
    httpx.put(wrong_size["upload_url"], content=b"x" * 11, headers=wrong_size["upload_headers"])
    cleanup_media.extend([mine, theirs, wrong_size["media_id"]])
    response = client.post("/v1/posts", headers=auth(api_settings, "alice"), json={
        "media_ids": [mine, not_uploaded, theirs, "m-unknown", wrong_size["media_id"], mine]})
    assert response.status_code == 422
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert errors == {"media_ids[5]": f"{mine} is listed twice"}
    response = client.post("/v1/posts", headers=auth(api_settings, "alice"), json={
        "media_ids": [mine, not_uploaded, theirs, "m-unknown", wrong_size["media_id"]]})
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert set(errors) == {"media_ids[1]", "media_ids[2]", "media_ids[3]", "media_ids[4]"}
    assert "has not been uploaded yet" in errors["media_ids[1]"]
    assert "not a media upload of yours" in errors["media_ids[2]"]
    assert "not a media upload of yours" in errors["media_ids[3]"]
    assert "holds 11 bytes, 10 were announced" in errors["media_ids[4]"]


def test_oversized_media_announcement_is_refused(client: TestClient,
                                                 api_settings: ServingSettings) -> None:
    response = client.post("/v1/media", headers=auth(api_settings, "alice"),
                           json={"content_type": "video/mp4", "bytes": 10**12})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "bytes"


def test_follow_like_comment_events_are_keyed_by_their_topic_key(
        client: TestClient, api_settings: ServingSettings, seeder: Seeder) -> None:
    seeder.post("bob", "bp1")
    headers = auth(api_settings, "alice")
    assert client.put("/v1/users/bob/follow", headers=headers).status_code == 202
    assert client.delete("/v1/users/bob/follow", headers=headers).status_code == 202
    assert client.put("/v1/posts/bp1/like", headers=headers).status_code == 202
    assert client.delete("/v1/posts/bp1/like", headers=headers).status_code == 202
    commented = client.post("/v1/posts/bp1/comments", json={"text": "wow"}, headers=headers)
    assert commented.status_code == 202
    comment_id = commented.json()["comment_id"]
    follows = consume(api_settings, api_settings.kafka.follows_topic, 2)
    assert [(k, e["event_type"], e["follower_id"], e["followee_id"]) for k, e in follows] == [
        (b"bob", "follow", "alice", "bob"), (b"bob", "unfollow", "alice", "bob")]
    engagements = consume(api_settings, api_settings.kafka.engagements_topic, 3)
    assert [(k, e["event_type"]) for k, e in engagements] == [
        (b"bp1", "like"), (b"bp1", "unlike"), (b"bp1", "comment")]
    assert all(e["post_author_id"] == "bob" and e["user_id"] == "alice" for _, e in engagements)
    assert engagements[2][1]["comment_id"] == comment_id and engagements[2][1]["text"] == "wow"


def test_engaging_with_a_missing_or_deleted_post_is_404(client: TestClient,
                                                         api_settings: ServingSettings,
                                                         seeder: Seeder) -> None:
    seeder.post("bob", "gone")
    seeder.delete("bob", "gone")
    headers = auth(api_settings, "alice")
    for post_id in ("gone", "never-was"):
        assert client.put(f"/v1/posts/{post_id}/like", headers=headers).status_code == 404
        assert client.post(f"/v1/posts/{post_id}/comments", json={"text": "?"},
                           headers=headers).status_code == 404


def test_only_authors_delete(client: TestClient, api_settings: ServingSettings,
                             seeder: Seeder) -> None:
    seeder.post("bob", "bp1")
    alice, bob, carol = (auth(api_settings, u) for u in ("alice", "bob", "carol"))
    refused = client.delete("/v1/posts/bp1", headers=alice)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/not-the-author")
    comment_id = client.post("/v1/posts/bp1/comments", json={"text": "hi"},
                             headers=alice).json()["comment_id"]
    assert client.delete(f"/v1/posts/bp1/comments/{comment_id}", headers=carol).status_code == 403
    assert client.delete(f"/v1/posts/bp1/comments/{comment_id}", headers=alice).status_code == 202
    assert client.delete(f"/v1/posts/bp1/comments/{comment_id}", headers=bob).status_code == 202
    assert client.delete("/v1/posts/bp1", headers=bob).status_code == 202
    [(key, event)] = consume(api_settings, api_settings.kafka.uploads_topic, 1)
    assert key == b"bob" and event["event_type"] == "post_deleted" and event["post_id"] == "bp1"


def test_a_just_created_post_can_be_deleted_before_it_is_stored(
        client: TestClient, api_settings: ServingSettings, cleanup_media: list) -> None:
    media = upload(client, api_settings, "alice")
    cleanup_media.append(media)
    post_id = client.post("/v1/posts", json={"media_ids": [media]},
                          headers=auth(api_settings, "alice")).json()["post_id"]
    # The jobs have not stored it yet: the id itself proves whose it is.
    assert client.delete(f"/v1/posts/{post_id}", headers=auth(api_settings, "bob")).status_code \
        == 404
    assert client.delete(f"/v1/posts/{post_id}", headers=auth(api_settings, "alice")).status_code \
        == 202


def test_idempotency_key_replays_the_same_event(client: TestClient,
                                                api_settings: ServingSettings,
                                                cleanup_media: list) -> None:
    media = upload(client, api_settings, "alice")
    cleanup_media.append(media)
    headers = {**auth(api_settings, "alice"), "Idempotency-Key": "post-attempt-1"}
    body = {"caption": "once", "media_ids": [media]}
    first = client.post("/v1/posts", json=body, headers=headers)
    again = client.post("/v1/posts", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/posts", json={**body, "caption": "twice"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    produced = consume(api_settings, api_settings.kafka.uploads_topic)
    assert [e["event_id"] for _, e in produced] == [first.json()["event_id"]]  # acked: once
    # Keys are per user: bob's "post-attempt-1" is another key.
    assert client.put("/v1/users/carol/follow", headers={
        **auth(api_settings, "bob"), "Idempotency-Key": "post-attempt-1"}).status_code == 202


def test_a_retry_after_a_kafka_failure_produces_the_same_event(
        api_settings: ServingSettings, redis_keys: Any) -> None:
    redis, keys = redis_keys
    broken = api_settings.model_copy(update={
        "kafka": KafkaSettings(bootstrap_servers="127.0.0.1:1",
                               follows_topic=api_settings.kafka.follows_topic),
        "api": ApiSettings(kafka_max_block_ms=300, kafka_delivery_timeout_ms=600,
                           gc_freeze=False)})
    headers = {**auth(api_settings, "alice"), "Idempotency-Key": "follow-bob"}
    with TestClient(create_app(broken)) as failing:
        response = failing.put("/v1/users/bob/follow", headers=headers)
        assert response.status_code == 503 and response.headers["retry-after"]
    record = json.loads(redis.get(keys.idempotency("alice", "follow-bob")))
    assert not record["acknowledged"]
    with TestClient(create_app(api_settings)) as working:
        retried = working.put("/v1/users/bob/follow", headers=headers)
    assert retried.status_code == 202
    assert retried.json()["event_id"] == json.loads(record["event"])["event_id"]
    [(_key, event)] = consume(api_settings, api_settings.kafka.follows_topic, 1)
    assert event == json.loads(record["event"])  # the very same event, byte for byte in JSON
    assert json.loads(redis.get(keys.idempotency("alice", "follow-bob")))["acknowledged"]
    assert redis.ttl(keys.idempotency("alice", "follow-bob")) > 3600


@pytest.mark.usefixtures("held_rate_clock")
def test_rate_limit_gives_429_with_retry_after(api_settings: ServingSettings) -> None:
    limited = api_settings.model_copy(update={
        "api": ApiSettings(rate_limit_per_minute=5, gc_freeze=False)})
    with TestClient(create_app(limited)) as c:
        headers = auth(limited, "alice")
        codes = [c.get("/v1/users/alice", headers=headers).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        refused = c.get("/v1/users/alice", headers=headers)
        assert refused.json()["type"].endswith("/rate-limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 120
        # other users have their own budget
        assert c.get("/v1/users/alice", headers=auth(limited, "bob")).status_code == 200


@pytest.mark.usefixtures("held_rate_clock")
def test_feed_reads_count_against_the_rate_limit_in_the_same_redis_call(
        api_settings: ServingSettings, seeder: Seeder) -> None:
    seeder.follow("alice", "bob")
    seeder.post("bob", "bp1")
    limited = api_settings.model_copy(update={
        "api": ApiSettings(rate_limit_per_minute=3, gc_freeze=False)})
    with TestClient(create_app(limited)) as c:
        headers = auth(limited, "alice")
        codes = [c.get("/v1/feed", headers=headers).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = c.get("/v1/users/bob", headers=headers)  # one budget for every route
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert c.get("/v1/feed", headers=auth(limited, "carol")).status_code == 200


@pytest.mark.usefixtures("held_rate_clock")
def test_a_write_counts_once_against_the_rate_limit(api_settings: ServingSettings) -> None:
    """The caller is a dependency of the handler and of its submit path: counted once."""
    limited = api_settings.model_copy(update={
        "api": ApiSettings(rate_limit_per_minute=3, gc_freeze=False)})
    with TestClient(create_app(limited)) as c:
        headers = auth(limited, "alice")
        codes = [c.put(f"/v1/users/{followee}/follow", headers=headers).status_code
                 for followee in ("bob", "carol", "dave", "erin")]
    assert codes == [202, 202, 202, 429]


def test_a_retry_after_the_write_was_applied_replays_instead_of_checking_again(
        client: TestClient, api_settings: ServingSettings, seeder: Seeder) -> None:
    """The state a write checked changes once the jobs apply it: a retried delete, or a
    retried like of a post deleted since, still answers what the first attempt got."""
    seeder.post("bob", "bp9")
    bob = {**auth(api_settings, "bob"), "Idempotency-Key": "delete-bp9"}
    alice = {**auth(api_settings, "alice"), "Idempotency-Key": "like-bp9"}
    first_delete = client.delete("/v1/posts/bp9", headers=bob)
    first_like = client.put("/v1/posts/bp9/like", headers=alice)
    assert first_delete.status_code == first_like.status_code == 202
    seeder.delete("bob", "bp9")  # what the fan-out job does with the event
    retried_delete = client.delete("/v1/posts/bp9", headers=bob)
    retried_like = client.put("/v1/posts/bp9/like", headers=alice)
    assert (retried_delete.status_code, retried_delete.json()) == (202, first_delete.json())
    assert (retried_like.status_code, retried_like.json()) == (202, first_like.json())
    assert retried_delete.headers["idempotent-replayed"] == "true"
    # Without the key the state check runs: the post is gone.
    assert client.delete("/v1/posts/bp9", headers=auth(api_settings, "bob")).status_code == 404
