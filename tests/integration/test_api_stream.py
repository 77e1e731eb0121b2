"""GET /v1/stream over real HTTP (uvicorn in a thread) with a real SSE client (httpx-sse),
on the real Redis (the stack's single one, then its Redis Cluster) and Cassandra: feed,
delete and notification events from the writers, a followed celebrity's posts,
Last-Event-ID resume and its window, heartbeats, 401/400, the per-user cap, and a client
that stops reading.

Events are written by the same writer the fan-out job uses (``FeedWriter`` through the
shared ``Seeder``) and, for notifications, by the publish function the notifications
writer calls (``feedline.stores.push.queue_notification_event``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from httpx_sse import ServerSentEvent, connect_sse

from feedline.settings import ServingSettings, StackSettings
from feedline.stores.push import PushEvent, queue, queue_notification_event
from schemas.redis_keys import RedisKeys
from schemas.redis_notifications import GroupPayload
from schemas.redis_push import NOTIFICATION, PUSH_WINDOW, notification_data
from serving.main import create_app
from tests.integration import test_api_stack
from tests.integration.test_api_stack import Seeder, auth
from tests.support.fixtures import keyed_cache
from tests.support.waiting import eventually

api_settings = test_api_stack.api_settings
seeder = test_api_stack.seeder


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_keys(stack: StackSettings,
               request: pytest.FixtureRequest) -> Iterator[tuple[Any, RedisKeys]]:
    """Every test twice: on the stack's single Redis, and on its Redis Cluster (the API's
    ``ClusterPushSubscription``, the writers' cluster pipelines, the cluster key layout)."""
    yield from keyed_cache(stack, cluster=request.param == "redis-cluster")

#: Hang guard of one read from a stream (heartbeats arrive every HEARTBEAT_S when idle).
READ_GUARD_S = 120.0
HEARTBEAT_S = 0.25


@pytest.fixture
def origin(api_settings: ServingSettings) -> Iterator[str]:
    """The app served by uvicorn in a thread of this process, on a free local port."""
    api = api_settings.api.model_copy(update={
        "stream_heartbeat_s": HEARTBEAT_S, "stream_max_per_user": 2,
        "stream_send_timeout_s": 1.0})
    settings = api_settings.model_copy(update={"api": api})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def serving() -> bool:
        assert thread.is_alive(), "uvicorn stopped before it started serving"
        return server.started

    eventually(serving, "uvicorn to serve the app", every_s=0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(READ_GUARD_S, connect=10.0)) as client:
        yield client


def events(source: Iterator[ServerSentEvent], n: int) -> list[tuple[str, str, dict]]:
    """The next ``n`` events as (id, event, data)."""
    out = []
    for sse in source:
        out.append((sse.id, sse.event, orjson.loads(sse.data)))
        if len(out) == n:
            return out
    raise AssertionError(f"the stream ended after {len(out)} of {n} events")


def follow_celebrity(seeder: Seeder, user: str, star: str) -> None:
    """``user`` follows ``star``, who has enough followers to be a celebrity."""
    for fan in (user, "fan1", "fan2", "fan3"):
        seeder.follow(fan, star)


def test_feed_delete_and_notification_events_arrive_with_ids(
        origin: str, http: httpx.Client, api_settings: ServingSettings, seeder: Seeder,
        redis_keys: Any) -> None:
    seeder.follow("ann", "bob")
    follow_celebrity(seeder, "ann", "star")
    redis_client, keys = redis_keys
    with connect_sse(http, "GET", f"{origin}/v1/stream",
                     headers=auth(api_settings, "ann")) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        stream = source.iter_sse()
        seeder.post("bob", "p1")
        [(id1, name, data)] = events(stream, 1)
        assert (name, data["post_id"], data["author_id"]) == ("feed", "p1", "bob")
        assert data["created_at"] == "2026-11-01T12:00:06.000Z"  # the Seeder's 6th event
        seeder.delete("bob", "p1")
        [(id2, name, data)] = events(stream, 1)
        assert (name, data) == ("delete", {"post_id": "p1"})

        seeder.post("star", "s1")  # a celebrity: in ann's feed at read time only
        [(id3, name, data)] = events(stream, 1)
        assert (name, data["post_id"], data["author_id"]) == ("feed", "s1", "star")
        assert id3.endswith("@star")
        seeder.delete("star", "s1")
        [(id4, name, data)] = events(stream, 1)
        assert (name, data) == ("delete", {"post_id": "s1"})

        pipe = redis_client.pipeline(transaction=False)
        queue_notification_event(pipe, keys, "ann", "like:p9",
                                 GroupPayload("like", "p9", 2, ["cid", "bob"], 8_000))
        queue_notification_event(pipe, keys, "ann", "like:p9", None)
        pipe.execute()
        (id5, name, data), (id6, name6, gone) = events(stream, 2)
        assert name == name6 == "notification"
        assert data == {"group_key": "like:p9", "type": "like", "post_id": "p9", "count": 2,
                        "actors": ["cid", "bob"], "latest_at": "1970-01-01T00:00:08.000Z"}
        assert (gone["group_key"], gone["count"]) == ("like:p9", 0)
        assert len({id1, id2, id3, id4, id5, id6}) == 6


def test_last_event_id_resumes_and_says_when_the_window_was_passed(
        origin: str, http: httpx.Client, api_settings: ServingSettings, seeder: Seeder,
        redis_keys: Any) -> None:
    seeder.follow("ann", "bob")
    follow_celebrity(seeder, "ann", "star")
    headers = auth(api_settings, "ann")
    with connect_sse(http, "GET", f"{origin}/v1/stream", headers=headers) as source:
        seeder.post("bob", "p1")
        [(last_id, _name, _data)] = events(source.iter_sse(), 1)
    seen = {last_id}
    seeder.post("bob", "p2")
    seeder.post("star", "s1")
    seeder.delete("bob", "p1")
    with connect_sse(http, "GET", f"{origin}/v1/stream",
                     headers={**headers, "Last-Event-ID": last_id}) as source:
        missed = []
        for event_id, name, data in _fresh(source.iter_sse(), seen):
            missed.append((event_id.partition("@")[2], name, data["post_id"]))
            if len(missed) == 3:
                break
    # In write order within each stream (across streams, one millisecond has no order).
    assert [m[1:] for m in missed if m[0] == ""] == [("feed", "p2"), ("delete", "p1")]
    assert [m[1:] for m in missed if m[0] == "star"] == [("feed", "s1")]

    # Past the window: more than PUSH_WINDOW entries after last_id were appended.
    redis_client, keys = redis_keys
    pipe = redis_client.pipeline(transaction=False)
    queue(pipe, keys, [PushEvent(NOTIFICATION, notification_data(
        f"like:x{i}", "like", f"x{i}", 1, ["eve"], 1_000 + i), user_id="ann")
        for i in range(PUSH_WINDOW + 500)])
    pipe.execute()
    with connect_sse(http, "GET", f"{origin}/v1/stream",
                     headers={**headers, "Last-Event-ID": last_id}) as source:
        first = next(source.iter_sse())
        assert first.event == "reset"
        assert "reload" in orjson.loads(first.data)["detail"]


def _fresh(source: Iterator[ServerSentEvent],
           seen: set[str]) -> Iterator[tuple[str, str, dict]]:
    """Events not delivered before (a resume may repeat those of the last id's ms)."""
    for sse in source:
        if sse.id not in seen:
            seen.add(sse.id)
            yield sse.id, sse.event, orjson.loads(sse.data)


def test_idle_streams_send_heartbeat_comments(origin: str, http: httpx.Client,
                                              api_settings: ServingSettings) -> None:
    with http.stream("GET", f"{origin}/v1/stream",
                     headers=auth(api_settings, "ann")) as response:
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        comments = 0
        for line in response.iter_lines():
            assert not line.startswith(("event:", "data:")), line  # nothing happened
            if line.startswith(":"):
                comments += 1
                if comments == 3:  # the opening one, then two while idle
                    break


def test_no_token_is_401_and_a_bad_last_event_id_400(origin: str, http: httpx.Client,
                                                     api_settings: ServingSettings) -> None:
    response = http.get(f"{origin}/v1/stream")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    bad = http.get(f"{origin}/v1/stream", headers={**auth(api_settings, "ann"),
                                                   "Last-Event-ID": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["type"].endswith("/invalid-last-event-id")


def test_the_per_user_cap_is_429_and_a_closed_stream_frees_its_slot(
        origin: str, http: httpx.Client, api_settings: ServingSettings) -> None:
    headers = auth(api_settings, "cap")
    url = f"{origin}/v1/stream"
    with connect_sse(http, "GET", url, headers=headers) as first:
        with connect_sse(http, "GET", url, headers=headers) as second:
            assert first.response.status_code == second.response.status_code == 200
            refused = http.get(url, headers=headers)
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"].endswith("/too-many-streams")
            assert int(refused.headers["retry-after"]) >= 1
            with connect_sse(http, "GET", url, headers=auth(api_settings, "other")) as other:
                assert other.response.status_code == 200  # another user is not affected
        # The second one closed: its slot is free once the server saw the disconnect.
        eventually(lambda: _opens(http, url, headers), "a slot freed by a closed stream",
                   every_s=0.1)


def _opens(http: httpx.Client, url: str, headers: dict[str, str]) -> bool:
    with http.stream("GET", url, headers=headers) as response:
        return response.status_code == 200


def test_a_client_that_stops_reading_is_dropped_without_blocking_others(
        origin: str, http: httpx.Client, api_settings: ServingSettings,
        redis_keys: Any) -> None:
    headers = auth(api_settings, "slow")
    host, port = origin.removeprefix("http://").split(":")
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    stuck.connect((host, int(port)))
    stuck.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: "
                  f"{headers['Authorization']}\r\n\r\n".encode())
    try:
        # Its head arrives (then it never reads again): the stream is open.
        head = b""
        while len(head) < 12:
            chunk = stuck.recv(12 - len(head))
            assert chunk, "the server closed the stuck client's connection at once"
            head += chunk
        assert head == b"HTTP/1.1 200"
        redis_client, keys = redis_keys
        actors = [f"actor-{i:06d}" for i in range(2_000)]  # about 30 KB an event
        count = 600  # about 18 MB: far past every socket buffer on the way
        with connect_sse(http, "GET", f"{origin}/v1/stream", headers=headers) as reader:
            for start in range(0, count, 50):
                pipe = redis_client.pipeline(transaction=False)
                queue(pipe, keys, [PushEvent(NOTIFICATION, notification_data(
                    f"like:p{i}", "like", f"p{i}", len(actors), actors, 1_000 + i),
                    user_id="slow") for i in range(start, start + 50)])
                pipe.execute()
            got = [data["group_key"] for _id, _name, data in events(reader.iter_sse(), count)]
            assert got == [f"like:p{i}" for i in range(count)]
            # The cap is 2 and two are open: a third opens once the stuck one was dropped.
            eventually(lambda: _opens(http, f"{origin}/v1/stream", headers),
                       "the stuck stream to be dropped", every_s=0.2)
    finally:
        stuck.close()
