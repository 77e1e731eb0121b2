"""Realtime push through the whole platform: the API produces the events, the fan-out job
(an isolated sandbox on the local Flink cluster) derives the stores and publishes to the
push streams, and an SSE client (httpx-sse) connected to the API over HTTP hears it.

carol opens her stream, follows dave through the API; dave posts a photo; it arrives as
``event: feed``; dave deletes it and ``event: delete`` follows. With two writer instances
carol is one whose rows the other instance writes than dave's post.

The job runs the code installed in Flink's Python environment, or the folders in
``FEEDLINE_FLINK__SHIP_PYTHON_PATHS`` (a worktree's streaming code).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest
import uvicorn
from httpx_sse import connect_sse

from feedline.rules.flink_keys import operator_index
from feedline.rules.write_order import owner_bucket
from feedline.settings import ApiSettings, FeedSettings, ServingSettings, StackSettings
from jobs.sandbox import Sandbox, open_sandbox
from schemas.cql_statements import READS
from serving.auth import issue_token
from serving.main import create_app
from tests.support.media import photo, processed_inline, remove_media
from tests.support.waiting import CONTENT_READ_BUDGET_S, HANG_GUARD_S, eventually

FEED = FeedSettings(celebrity_threshold=50, follow_merge_limit=20, timeline_cap=50)
PHOTO = photo(64, 48)  # a real JPEG: posts show only media the media worker made ready
#: The sandbox, the API's settings, its origin, the fan-out job's parallelism.
Platform = tuple[Sandbox, ServingSettings, str, int]


@pytest.fixture(scope="module", params=[1, 2], ids=["parallelism-1", "parallelism-2"])
def platform(stack: StackSettings,
             request: pytest.FixtureRequest) -> Iterator[Platform]:
    """A sandbox running the fan-out job (at the parameter's parallelism), and the API on
    it served over HTTP."""
    sandbox = open_sandbox(stack, FEED)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        sandbox.deploy("fanout", parallelism=request.param)
        streaming = sandbox.streaming
        settings = ServingSettings(environment="test", kafka=streaming.kafka, cql=streaming.cql,
                                   redis=streaming.redis.model_copy(
                                       update={"read_budget_s": CONTENT_READ_BUDGET_S}),
                                   storage=streaming.storage, feed=FEED,
                                   api=ApiSettings(rate_limit_per_minute=100_000,
                                                   gc_freeze=False, stream_heartbeat_s=1.0))
        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning",
                                               timeout_graceful_shutdown=1))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        eventually(lambda: server is not None and server.started, "uvicorn to serve",
                   every_s=0.05)
        yield sandbox, settings, f"http://127.0.0.1:{sock.getsockname()[1]}", request.param
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join()
        sock.close()
        sandbox.close()


def headers(settings: ServingSettings, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings.api.jwt_secret, user, ttl_s=3600)}"}


def reader_apart_from(author: str, parallelism: int) -> str:
    """A follower whose timeline rows another writer instance writes than the author's
    post (with one instance, any): the feed event must reach it across writers."""
    if parallelism == 1:
        return "carol"
    writer = operator_index(owner_bucket(author), parallelism)
    return next(name for name in (f"carol{n}" for n in range(100))
                if operator_index(owner_bucket(name), parallelism) != writer)


def test_a_followed_users_post_arrives_as_a_feed_event(platform: Platform) -> None:
    sandbox, settings, origin, parallelism = platform
    reader = reader_apart_from("dave", parallelism)
    carol, dave = headers(settings, reader), headers(settings, "dave")
    with httpx.Client(base_url=origin, timeout=httpx.Timeout(HANG_GUARD_S, connect=10)) as api:
        assert api.put("/v1/users/dave/follow", headers=carol).status_code == 202
        # Applied by the fan-out job (the follower counter is the counters job's, not here).
        followees = sandbox.session.prepare(READS["followees"])
        eventually(lambda: list(sandbox.session.execute(followees, (reader,))),
                   "the follow to be applied")
        announced = api.post("/v1/media", json={"content_type": "image/jpeg",
                                                "bytes": len(PHOTO)}, headers=dave)
        assert announced.status_code == 201
        media = announced.json()
        assert httpx.put(media["upload_url"], content=PHOTO,
                         headers=media["upload_headers"]).status_code == 200
        assert processed_inline(settings, media["media_id"]) == "ready"  # as the worker would
        try:
            with connect_sse(api, "GET", "/v1/stream", headers=carol) as source:
                assert source.response.status_code == 200
                created = api.post("/v1/posts", json={"caption": "live",
                                                      "media_ids": [media["media_id"]]},
                                   headers=dave)
                assert created.status_code == 202, created.text
                post_id = created.json()["post_id"]
                stream = source.iter_sse()
                feed = next(stream)
                assert feed.event == "feed" and feed.id
                data = orjson.loads(feed.data)
                assert (data["post_id"], data["author_id"]) == (post_id, "dave")
                assert api.delete(f"/v1/posts/{post_id}", headers=dave).status_code == 202
                gone = next(stream)
                assert (gone.event, orjson.loads(gone.data)) == ("delete", {"post_id": post_id})
            sandbox.assert_jobs_alive()
        finally:
            remove_media(settings, [media["media_id"]])
