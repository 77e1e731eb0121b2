"""One ASGI middleware for every request: request id, body limit, metrics, access log.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task or body buffering per request
on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.deps import count_unauthenticated
from serving.observability import observe, reset_request_id, set_request_id
from serving.problems import ApiProblem, problem_response
from serving.resources import Resources

access_log = logging.getLogger("serving.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID when it is sane (1-128 of ``A-Za-z0-9._:-``), else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body exceeds {limit} bytes (upload media through "
                              "a signed URL from POST /v1/media)")


class RequestContextMiddleware:
    """Wraps the app: tags each request with an id, caps its body, measures it, logs it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, access_log_enabled: bool) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope["headers"]
        request_id = request_id_from(headers)
        token = set_request_id(request_id)
        status = 500
        started_response = False
        limit = self.max_body_bytes

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        try:
            declared = _content_length(headers)
            if declared is not None and declared > limit:
                error = _too_large(limit)
                response = problem_response(413, "payload-too-large", str(error.detail))
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_capped, send_with_id)
        except Exception:
            if started_response:
                raise
            access_log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            crash = problem_response(500, "internal-error", "the server failed to handle this "
                                     "request; it has been logged under the request id")
            await crash(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route_obj: Any = scope.get("route")
            route = getattr(route_obj, "path", None) or "unmatched"
            observe(scope["method"], route, status, elapsed)
            if self.access_log_enabled:
                state = scope.get("state") or {}
                access_log.info(
                    "%s %s %d", scope["method"], route, status,
                    extra={"method": scope["method"], "path": scope["path"], "route": route,
                           "status": status, "duration_ms": round(elapsed * 1000, 3),
                           "user_id": state.get("user_id")})
            reset_request_id(token)


#: Paths served without a token; each request to one counts against its client IP's limit
#: of unauthenticated requests (``/readyz`` opens connections to every dependency).
UNAUTHENTICATED_PATHS = frozenset({"/readyz", "/metrics"})


#: Liveness stays answerable under overload: a 503 there would get a busy worker restarted.
UNCAPPED_PATHS = frozenset({"/healthz"})


class ServerGuardMiddleware:
    """Guards of one worker that run before authentication.

    A cap on the requests handled at once (503 with Retry-After past it; ``/healthz`` is
    exempt), a deadline on each request (504 when it passes before the response started)
    and the per-client-IP limit of the unauthenticated paths (429). The request head's size
    and receipt deadline are the HTTP protocol's (``serving.http_protocol``): they act
    before any ASGI code runs.
    """

    def __init__(self, app: ASGIApp, *, resources: Resources, max_concurrent: int,
                 deadline_s: float) -> None:
        self.app = app
        self.resources = resources
        self.max_concurrent = max_concurrent
        self.deadline_s = deadline_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrent and scope["path"] not in UNCAPPED_PATHS:
            busy = problem_response(503, "overloaded", f"this server is handling "
                                    f"{self.max_concurrent} requests already; retry shortly",
                                    headers={"Retry-After": "1"})
            await busy(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in UNAUTHENTICATED_PATHS:
            try:
                await count_unauthenticated(self.resources, scope.get("client"))
            except ApiProblem as refused:
                limited = problem_response(refused.status, refused.slug, refused.detail,
                                           headers=refused.headers)
                await limited(scope, receive, send)
                return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        deadline = asyncio.timeout(self.deadline_s)
        try:
            async with deadline:
                await self.app(scope, receive, send_tracked)
        except TimeoutError:
            if started or not deadline.expired():
                raise
            late = problem_response(504, "deadline-exceeded", "the request took longer than "
                                    f"{self.deadline_s:g} s; it may be retried (with the same "
                                    "Idempotency-Key for a write)")
            await late(scope, receive, send)
