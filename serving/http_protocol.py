"""uvicorn's httptools protocol with limits on the request head (slowloris, huge headers).

uvicorn bounds neither how long a client may take to send a request's head nor, with
httptools, how large the head may be (``h11_max_incomplete_event_size`` only applies to h11):
a client that connects and sends a header line every few seconds holds the connection, and
its buffers, for ever. ``GuardedHttpToolsProtocol`` adds both, before any ASGI code runs:

- a head larger than ``api.max_header_bytes`` gets 431 and the connection is closed;
- a head not complete ``api.header_timeout_s`` after the connection opened (or, on a
  kept-alive connection, after the next request began) gets 408 and the connection closes.

Select it with ``uvicorn --http serving.http_protocol:GuardedHttpToolsProtocol`` or the
``UVICORN_HTTP`` environment variable (the local stack and the API image set it). The limits
are the worker's ``ServingSettings`` (``get_serving_settings``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from feedline.settings import get_serving_settings

PROBLEM_BASE = "https://feedline.example/problems/"


def _refusal(status: int, reason: str, slug: str, detail: str) -> bytes:
    body = orjson.dumps({"type": PROBLEM_BASE + slug, "title": reason, "status": status,
                         "detail": detail})
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a size limit and a receipt deadline on each request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        api = get_serving_settings().api
        self.max_header_bytes = api.max_header_bytes
        self.header_timeout_s = api.header_timeout_s
        self._awaiting_head = True
        self._head_bytes = 0
        self._chunk_bytes = 0
        self._head_over_limit = False
        self._head_deadline: asyncio.TimerHandle | None = None

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_late)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _refuse(self, response: bytes) -> None:
        self._disarm_head_deadline()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def _head_late(self) -> None:
        self._head_deadline = None
        if self._awaiting_head:
            self._refuse(_refusal(408, "Request Timeout", "request-timeout",
                                  f"the request head took longer than "
                                  f"{self.header_timeout_s:g} s to arrive"))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the connection's first head deadline."""
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head deadline with the connection."""
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _too_large(self) -> bytes:
        return _refusal(431, "Request Header Fields Too Large", "header-too-large",
                        f"the request line and headers exceed {self.max_header_bytes} bytes")

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; refuse the request when its head outgrows the limit.

        Two counts: the parsed URL and headers (``on_url``, ``on_header``: exact, and a head
        over the limit never reaches the app), and every chunk that leaves a head incomplete
        (the parser buffers a header until its line ends, so a huge line sent slowly is
        caught while it arrives).
        """
        self._head_over_limit = False
        super().data_received(data)
        if self._awaiting_head and not self.transport.is_closing():
            self._chunk_bytes += len(data)
            if self._chunk_bytes > self.max_header_bytes:
                self._refuse(self._too_large())

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._head_over_limit = True
            raise _HeadTooLarge  # the parser stops; uvicorn then calls send_400_response

    def on_url(self, url: bytes) -> None:
        """Count the request target."""
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count one header line."""
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        """The parser stopped: a 431 when it was the head limit, uvicorn's 400 otherwise."""
        if self._head_over_limit:
            self._refuse(self._too_large())
        else:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        """A request starts: its head is awaited, under the deadline."""
        super().on_message_begin()
        self._awaiting_head = True
        self._head_bytes = self._chunk_bytes = 0
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        """The head is in: no more deadline or size count until the next request."""
        self._awaiting_head = False
        self._head_bytes = self._chunk_bytes = 0
        self._disarm_head_deadline()
        super().on_headers_complete()
