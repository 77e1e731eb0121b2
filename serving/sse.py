"""Server-Sent Events: the response that streams push events, and the caps on open streams.

``EventStream`` is an ASGI response that runs until the client goes away. It sends each
event as ``id:``/``event:``/``data:`` lines, a comment line when ``heartbeat_s`` passed with
nothing to send (proxies and load balancers close idle connections), and ``retry:`` (how
soon to reconnect) with the first event. Three things end it:

- the client disconnects (a task waits for ``http.disconnect``, so a stream blocked on
  Redis ends at once, its Redis connection released);
- the client stops reading: a send waits while the socket's buffers are full, and one
  that has not completed after ``send_timeout_s`` closes the stream. Each stream has its
  own task and its own Redis connection: a stuck client blocks nobody else;
- Redis fails: the stream closes and the client reconnects with ``Last-Event-ID``.

``StreamSlots`` caps the open streams of a worker: ``stream_max_per_user`` per user, past
which the user gets **429** (the limit is the caller's own: closing a stream, say an old
tab, frees a slot; Retry-After says when to try again), and ``stream_max_per_worker`` in
all, past which **503** (the server is full, not the caller's fault: retry, possibly on
another worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from feedline.stores.feed_reader import REDIS_DOWN
from feedline.stores.push_reader import PushMessage, PushSubscription
from schemas.redis_push import FEED, NOTIFICATION, RESET
from serving.models import rfc3339_ms
from serving.problems import ApiProblem

log = logging.getLogger(__name__)

#: How soon a client reconnects after a stream closed (the ``retry:`` field), ms.
RECONNECT_MS = 2000
#: How often an open stream re-reads the celebrities its user follows.
CELEBRITY_REFRESH_S = 30.0
#: A comment line, without the blank line that ends an event: a client that keeps the last
#: event id (as the spec says) would otherwise see an empty event per heartbeat.
HEARTBEAT = b": keep-alive\n"
#: Sent with the first event (a block of its own would be an empty event to some clients).
RETRY = f"retry: {RECONNECT_MS}\n".encode()
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamSlots:
    """Open streams of one worker, per user and in all."""

    def __init__(self, *, per_user: int, per_worker: int) -> None:
        self.per_user = per_user
        self.per_worker = per_worker
        self.by_user: dict[str, int] = {}
        self.total = 0

    def acquire(self, user_id: str) -> Callable[[], None]:
        """Take a slot for ``user_id``; returns its release (call once). 429/503 when full."""
        if self.by_user.get(user_id, 0) >= self.per_user:
            raise ApiProblem(429, "too-many-streams",
                             f"this user has {self.per_user} streams open already; close one "
                             "(or wait for it to time out) before opening another",
                             headers={"Retry-After": str(RECONNECT_MS // 1000)})
        if self.total >= self.per_worker:
            raise ApiProblem(503, "streams-full", f"this server holds {self.per_worker} "
                             "streams already; retry shortly", headers={"Retry-After": "5"})
        self.by_user[user_id] = self.by_user.get(user_id, 0) + 1
        self.total += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.total -= 1
            left = self.by_user[user_id] - 1
            if left:
                self.by_user[user_id] = left
            else:
                del self.by_user[user_id]

        return release


def message_data(message: PushMessage) -> bytes:
    """The ``data:`` of one event: the stored JSON, times as RFC 3339 like the API's bodies."""
    data: dict[str, Any] = orjson.loads(message.data)
    if message.event == FEED:
        data["created_at"] = rfc3339_ms(int(data.pop("created_ms")))
    elif message.event == NOTIFICATION:
        data["latest_at"] = rfc3339_ms(int(data.pop("latest_ms")))
    return orjson.dumps(data)


def frame(message: PushMessage) -> bytes:
    """One event as SSE lines."""
    return (b"id: " + message.id.encode() + b"\nevent: " + message.event.encode()
            + b"\ndata: " + message_data(message) + b"\n\n")


def reset_frame() -> bytes:
    """Tells a resumed client that events it missed are gone: refetch, then carry on."""
    return (b"event: " + RESET.encode() + b"\ndata: "
            + orjson.dumps({"detail": "events after Last-Event-ID are no longer kept; "
                                      "reload the feed and notifications"}) + b"\n\n")


class EventStream(Response):
    """A ``text/event-stream`` response fed by a ``PushSubscription``."""

    media_type = "text/event-stream"

    def __init__(self, subscription: PushSubscription, *,
                 celebrities: Callable[[], Awaitable[list[str] | None]],
                 release: Callable[[], None], reset: bool, heartbeat_s: float,
                 send_timeout_s: float) -> None:
        # Like StreamingResponse: no body, so no Content-Length (Response.__init__ adds one).
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self.subscription = subscription
        self.celebrities = celebrities
        self.release = release
        self.reset = reset
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream until the client leaves, stops reading, or Redis fails."""
        pump = asyncio.ensure_future(self._pump(send))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            done, _pending = await asyncio.wait({pump, gone},
                                                return_when=asyncio.FIRST_COMPLETED)
            if pump in done and pump.exception() is not None:
                log.warning("stream of %s closed: %s", self.subscription.user_id,
                            pump.exception())
        except asyncio.CancelledError:
            # The server shuts down (an endless response outlives its graceful timeout):
            # the stream just ends; the client reconnects elsewhere with Last-Event-ID.
            log.info("stream of %s closed: server shutting down", self.subscription.user_id)
        finally:
            for task in (pump, gone):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(pump, gone, return_exceptions=True)
            self.release()

    async def _send(self, send: Send, message: dict[str, Any]) -> None:
        async with asyncio.timeout(self.send_timeout_s):
            await send(message)

    async def _write(self, send: Send, body: bytes) -> None:
        await self._send(send, {"type": "http.response.body", "body": body, "more_body": True})

    async def _pump(self, send: Send) -> None:
        try:
            await self._send(send, {"type": "http.response.start", "status": self.status_code,
                                    "headers": self.raw_headers})
            await self._write(send, RETRY + reset_frame() if self.reset else HEARTBEAT)
            retry_said = self.reset
            refreshed = time.monotonic()
            while True:
                if time.monotonic() - refreshed >= CELEBRITY_REFRESH_S:
                    refreshed = time.monotonic()
                    celebrities = await self.celebrities()
                    if celebrities is not None:
                        await self.subscription.follow(celebrities)
                messages = await self.subscription.read()
                body = b"".join(frame(m) for m in messages)
                if body and not retry_said:
                    body, retry_said = RETRY + body, True
                await self._write(send, body or HEARTBEAT)
        except TimeoutError:
            log.info("stream of %s dropped: its client stopped reading",
                     self.subscription.user_id)
        except REDIS_DOWN as error:
            log.warning("stream of %s closed: redis unavailable (%s)",
                        self.subscription.user_id, error)
            with contextlib.suppress(TimeoutError):  # end it cleanly: the client reconnects
                await self._send(send, {"type": "http.response.body", "body": b"",
                                        "more_body": False})


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass
