"""A client story through the whole platform: the API produces the events, both streaming
jobs (an isolated sandbox on the local Flink cluster) derive the stores, the API serves them.
Twice: on the stack's single Redis, and on its 3-master Redis Cluster (``redis.cluster``: the
jobs write and the API reads the cluster key layout).

alice follows bob; bob uploads a photo through a signed URL (a real PUT into the GCS
emulator), completes it, waits until the media worker (its own topic, in a thread) made it
ready, and posts it; the post reaches alice's home feed once fanned out, with the photo's
dimensions, renditions and placeholder, each rendition without the photo's EXIF location (the
same media in bob's profile and the post itself); her like and comment reach its counters;
bob deletes it and it leaves the feed (and GET gives 404).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
import pytest
from kafka import KafkaAdminClient
from PIL import Image
from starlette.testclient import TestClient

from feedline.media.worker import MediaWorker
from feedline.settings import (
    ApiSettings,
    FeedSettings,
    ServingSettings,
    StackSettings,
    get_stack_settings,
)
from jobs.feedctl.main import main as feedctl
from jobs.localstack.kafka import ensure_topics
from jobs.sandbox import Sandbox, open_sandbox
from serving.auth import issue_token
from serving.main import create_app
from tests.support.fixtures import cluster_cache, unique
from tests.support.media import carries_metadata, photo, remove_media
from tests.support.waiting import CONTENT_READ_BUDGET_S, eventually

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

FEED = FeedSettings(celebrity_threshold=50, follow_merge_limit=20, timeline_cap=50)
PHOTO = photo(1600, 1200)
T = TypeVar("T")


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def platform(stack: StackSettings,
             request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, ServingSettings]]:
    """The sandbox and the API's settings, on the stack's single Redis or on its cluster."""
    cache = None
    if request.param == "redis-cluster":
        cache = cluster_cache(stack)
    sandbox = open_sandbox(stack, FEED, cache=cache)
    try:
        sandbox.deploy_all(("fanout", "counters"))
        streaming = sandbox.streaming
        media_topic = unique("media")
        ensure_topics(stack.kafka.bootstrap_servers,
                      {media_topic: 1, streaming.kafka.dlq_topic(media_topic): 1})
        kafka = streaming.kafka.model_copy(update={"media_topic": media_topic})
        settings = ServingSettings(environment="test", kafka=kafka, cql=streaming.cql,
                                   redis=streaming.redis.model_copy(
                                       update={"read_budget_s": CONTENT_READ_BUDGET_S}),
                                   storage=streaming.storage, feed=FEED,
                                   api=ApiSettings(rate_limit_per_minute=100_000,
                                                   gc_freeze=False))
        stop = threading.Event()
        worker = MediaWorker(kafka, streaming.storage, streaming.cql, settings.media,
                             group_id=unique("media"))
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        yield sandbox, settings
        stop.set()
        thread.join(timeout=120)
        admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
        try:
            admin.delete_topics([media_topic, kafka.dlq_topic(media_topic)])
        finally:
            admin.close()
    finally:
        sandbox.close()


def headers(settings: ServingSettings, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings.api.jwt_secret, user, ttl_s=3600)}"}


def feedctl_feed(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What `feedctl feed ARGS` prints on the sandbox's stores (its settings by environment)."""
    cache = sandbox.streaming.redis
    with monkeypatch.context() as env:
        for name, value in (("REDIS__URL", cache.url), ("REDIS__CLUSTER", str(cache.cluster)),
                            ("REDIS__KEY_PREFIX", cache.key_prefix),
                            ("CQL__KEYSPACE", sandbox.streaming.cql.keyspace)):
            env.setenv(f"FEEDLINE_{name}", value)
        get_stack_settings.cache_clear()
        try:
            capsys.readouterr()
            assert feedctl(["feed", *args]) == 0
            return capsys.readouterr().out
        finally:
            get_stack_settings.cache_clear()


def test_follow_post_read_engage_delete(platform: tuple[Sandbox, ServingSettings],
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    sandbox, settings = platform
    alice, bob = headers(settings, "alice"), headers(settings, "bob")
    with TestClient(create_app(settings)) as api:
        assert api.get("/readyz").status_code == 200
        assert api.put("/v1/users/bob/follow", headers=alice).status_code == 202
        eventually(lambda: api.get("/v1/users/bob", headers=alice).json()["followers"] == 1,
                   "the follow to be counted")

        announced = api.post("/v1/media", json={"content_type": "image/jpeg",
                                                "bytes": len(PHOTO)}, headers=bob)
        assert announced.status_code == 201
        media = announced.json()
        put = httpx.put(media["upload_url"], content=PHOTO, headers=media["upload_headers"])
        assert put.status_code == 200
        try:
            assert api.post(f"/v1/media/{media['media_id']}/complete",
                            headers=bob).status_code == 202
            ready = eventually(
                lambda: (lambda s: s if s["status"] != "processing" else None)(
                    api.get(f"/v1/media/{media['media_id']}", headers=bob).json()),
                "the photo to be processed")
            assert (ready["status"], ready["width"], ready["height"]) == ("ready", 1600, 1200)
            created = api.post("/v1/posts", json={"caption": "first light",
                                                  "media_ids": [media["media_id"]]},
                               headers={**bob, "Idempotency-Key": "bob-post-1"})
            assert created.status_code == 202, created.text
            post_id = created.json()["post_id"]

            def in_feed() -> dict[str, Any] | None:
                response = api.get("/v1/feed", headers=alice)
                # Never a degraded read: Redis is up. (A page can still come from the CQL
                # store: while alice has no cached timeline, one is read there, and the
                # store's writer may be ahead of the cache's.)
                assert "X-Feed-Degraded" not in response.headers, response.headers
                page = response.json()
                return next((p for p in page["items"] if p["post_id"] == post_id), None)

            item = eventually(in_feed, "the post in alice's feed")
            # The jobs write it to this sandbox's cache, in its key layout; the operators'
            # `feedctl feed` reads it there too, and finds a timeline to sample there.
            eventually(lambda: sandbox.redis.zscore(sandbox.keys.timeline("alice"),
                                                    post_id) is not None,
                       "the post in alice's cached timeline")
            for args in (["alice"], ["--sample"]):
                shown_by_feedctl = feedctl_feed(sandbox, monkeypatch, capsys, *args)
                assert f"{post_id} " in shown_by_feedctl, shown_by_feedctl
                assert "first light" in shown_by_feedctl
            assert item["author_id"] == "bob" and item["caption"] == "first light"
            [shown] = item["media"]
            assert shown["media_id"] == media["media_id"]
            # The feed item says what the media worker found: a client lays the post out
            # (dimensions, placeholder) and picks a rendition before any image loads.
            assert (shown["width"], shown["height"], shown["duration_ms"]) == (1600, 1200, None)
            assert shown["placeholder"] == ready["placeholder"]
            assert shown["placeholder"] is not None
            assert shown["renditions"] == ready["renditions"]
            assert [r["width"] for r in shown["renditions"]] == [1080, 320]
            # The feed shows the largest rendition; every rendition is re-encoded without
            # EXIF (no location) and has the dimensions the item announces.
            assert shown["url"] == ready["renditions"][0]["url"]
            for rendition in shown["renditions"]:
                served = httpx.get(rendition["url"]).content
                assert carries_metadata(served) == [] and b"FeedlineCam" not in served
                with Image.open(io.BytesIO(served)) as image:
                    assert image.size == (rendition["width"], rendition["height"])
            [profile_item] = [p for p in api.get("/v1/users/bob/posts", headers=alice).json()[
                "items"] if p["post_id"] == post_id]
            assert profile_item["media"] == item["media"]
            assert api.get(f"/v1/posts/{post_id}", headers=alice).json()["media"] == item["media"]

            assert api.put(f"/v1/posts/{post_id}/like", headers=alice).status_code == 202
            assert api.post(f"/v1/posts/{post_id}/comments", json={"text": "wow"},
                            headers=alice).status_code == 202

            def counted() -> bool:
                post = api.get(f"/v1/posts/{post_id}", headers=alice).json()
                return (post["likes"], post["comments"]) == (1, 1)

            eventually(counted, "the like and the comment to be counted")
            assert eventually(lambda: api.get("/v1/users/bob", headers=alice).json()["posts"],
                              "bob's post count") == 1

            assert api.delete(f"/v1/posts/{post_id}", headers=alice).status_code == 403
            assert api.delete(f"/v1/posts/{post_id}", headers=bob).status_code == 202
            eventually(lambda: api.get(f"/v1/posts/{post_id}", headers=alice).status_code == 404,
                       "the post to be gone")
            assert in_feed() is None
            sandbox.assert_jobs_alive()
        finally:
            remove_media(settings, [media["media_id"]])
