"""The SSE response and the stream caps without servers: heartbeats, a client that stops
reading is dropped, a disconnect ends a stream blocked on Redis, slots are released."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.testclient import TestClient

from feedline.stores.push_reader import PushMessage
from serving.auth import issue_token
from serving.main import create_app
from serving.problems import ApiProblem
from serving.sse import HEARTBEAT, EventStream, StreamSlots
from tests.support.unreachable import UNREACHABLE


def test_slots_cap_each_user_with_429_and_the_worker_with_503() -> None:
    slots = StreamSlots(per_user=2, per_worker=3)
    ann1, ann2 = slots.acquire("ann"), slots.acquire("ann")
    with pytest.raises(ApiProblem) as refused:
        slots.acquire("ann")
    assert refused.value.status == 429 and "Retry-After" in refused.value.headers
    slots.acquire("bob")
    with pytest.raises(ApiProblem) as full:
        slots.acquire("cid")
    assert full.value.status == 503 and "Retry-After" in full.value.headers
    ann1()
    ann1()  # a second release changes nothing
    assert slots.total == 2 and slots.by_user == {"ann": 1, "bob": 1}
    slots.acquire("ann")
    ann2()
    assert slots.by_user == {"ann": 1, "bob": 1}


class Subscription:
    """Hands out scripted reads; once they run out, blocks like an idle XREAD for ever."""

    user_id = "ann"

    def __init__(self, reads: list[list[PushMessage]]) -> None:
        self.reads = reads
        self.followed: list[list[str]] = []

    async def read(self) -> list[PushMessage]:
        if self.reads:
            return self.reads.pop(0)
        await asyncio.Event().wait()
        return []

    async def follow(self, celebrities: list[str]) -> None:
        self.followed.append(celebrities)


def make_stream(subscription: Subscription, released: list[bool], *,
                send_timeout_s: float = 5.0) -> EventStream:
    async def celebrities() -> list[str] | None:
        return ["star"]

    return EventStream(subscription, celebrities=celebrities,  # type: ignore[arg-type]
                       release=lambda: released.append(True), reset=False, heartbeat_s=1.0,
                       send_timeout_s=send_timeout_s)


def test_events_then_heartbeats_until_the_client_disconnects() -> None:
    message = PushMessage("5-0", "delete", '{"post_id":"p1"}')
    subscription = Subscription([[message], [], []])
    released: list[bool] = []
    sent: list[dict[str, Any]] = []
    bodies_seen = asyncio.Event()

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)
        if sum(1 for m in sent if m.get("body") == HEARTBEAT) >= 3:
            bodies_seen.set()

    async def receive() -> dict[str, Any]:
        await bodies_seen.wait()  # the client leaves after the opening heartbeat and two idle ones
        return {"type": "http.disconnect"}

    asyncio.run(make_stream(subscription, released)({"type": "http"}, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[0] == HEARTBEAT  # sends the head through proxies at once
    assert bodies[1] == b'retry: 2000\nid: 5-0\nevent: delete\ndata: {"post_id":"p1"}\n\n'
    assert bodies[2:4] == [HEARTBEAT, HEARTBEAT]  # idle reads: comment lines
    assert released == [True]


def test_a_disconnect_ends_a_stream_waiting_on_redis() -> None:
    released: list[bool] = []

    async def send(_msg: dict[str, Any]) -> None:
        pass

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    asyncio.run(make_stream(Subscription([]), released)({"type": "http"}, receive, send))
    assert released == [True]


def test_a_client_that_stops_reading_is_dropped() -> None:
    """Its send never completes (socket buffers full): the stream closes, others go on."""
    released: list[bool] = []
    other_sent: list[bytes] = []
    message = PushMessage("5-0", "delete", '{"post_id":"p1"}')

    async def stuck_send(msg: dict[str, Any]) -> None:
        if b"id: " in msg.get("body", b""):
            await asyncio.Event().wait()  # never drains

    async def other_send(msg: dict[str, Any]) -> None:
        other_sent.append(msg.get("body", b""))

    async def never_leaves() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def both() -> None:
        stuck = make_stream(Subscription([[message]]), released, send_timeout_s=0.05)
        other = make_stream(Subscription([[message], [message]]), [], send_timeout_s=0.05)
        other_task = asyncio.ensure_future(other({"type": "http"}, never_leaves, other_send))
        await stuck({"type": "http"}, never_leaves, stuck_send)  # returns: dropped
        while sum(1 for b in other_sent if b"id: " in b) < 2:
            await asyncio.sleep(0.01)
        other_task.cancel()

    asyncio.run(both())
    assert released == [True]
    assert sum(1 for b in other_sent if b"id: " in b) == 2


# --- the app with every dependency unreachable (nothing listens on port 1) ----------------

def _app_client() -> TestClient:
    return TestClient(create_app(UNREACHABLE), raise_server_exceptions=False)


def _auth(user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(UNREACHABLE.api.jwt_secret, user, ttl_s=600)}"}


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_stores_down_are_503_problems_and_no_token_401() -> None:
    with _app_client() as client:
        for method, path in (("GET", "/v1/notifications"),
                             ("GET", "/v1/notifications/unread_count"),
                             ("POST", "/v1/notifications/read"), ("GET", "/v1/stream")):
            missing = client.request(method, path)
            assert missing.status_code == 401, path
            assert missing.headers["content-type"] == "application/problem+json"
            down = client.request(method, path, headers=_auth())
            assert down.status_code == 503, (path, down.text)
            assert down.headers["content-type"] == "application/problem+json"
            assert down.headers["retry-after"]
        # A refused stream gave its slot back.
        assert client.app.state.resources.stream_slots.total == 0  # type: ignore[attr-defined]
        bad = client.get("/v1/stream", headers={**_auth(), "Last-Event-ID": "1-2@no way"})
        assert bad.status_code == 400


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_openapi_documents_the_new_endpoints() -> None:
    with _app_client() as client:
        spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in (("/v1/notifications", "get"), ("/v1/notifications/unread_count", "get"),
                         ("/v1/notifications/read", "post"), ("/v1/stream", "get")):
        operation = paths[path][method]
        assert operation["security"] == [{"bearerAuth": []}], path
        assert {"401", "429", "503"} <= set(operation["responses"]), path
    stream = paths["/v1/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert "Last-Event-ID" in stream["description"]
    assert any(p["name"].lower() == "last-event-id" for p in stream["parameters"])
    item = spec["components"]["schemas"]["NotificationOut"]
    assert set(item["required"]) == {"group_key", "type", "post_id", "count", "actors",
                                      "latest_at", "unread"}


def test_heartbeats_are_no_events_to_an_sse_client() -> None:
    """httpx-sse keeps the last event id across events (as the spec says): a heartbeat that
    ended with a blank line would reach it as an empty event after the first real one."""
    from httpx_sse._decoders import SSEDecoder

    from serving.sse import RETRY, frame

    first = PushMessage("5-0", "delete", '{"post_id":"p1"}')
    second = PushMessage("6-0", "delete", '{"post_id":"p2"}')
    wire = HEARTBEAT + RETRY + frame(first) + HEARTBEAT + HEARTBEAT + frame(second) + HEARTBEAT
    decoder, decoded = SSEDecoder(), []
    for line in wire.decode().splitlines():  # as httpx yields them
        event = decoder.decode(line)
        if event is not None:
            decoded.append((event.id, event.event, event.data))
    assert decoded == [("5-0", "delete", '{"post_id":"p1"}'),
                       ("6-0", "delete", '{"post_id":"p2"}')]
