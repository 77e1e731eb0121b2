"""Dependencies of the route handlers, as ``Annotated`` aliases.

Every dependency is ``async def``: FastAPI would run a plain ``def`` in a worker thread,
a thread hop per dependency per request.

``CurrentUser`` authenticates the bearer token and counts the request against the user's
rate limit (429 with Retry-After past it; counted in process while Redis is down).
``AuthenticatedUser`` only authenticates, for a route that counts the request itself. A
request whose token fails counts against its client IP's limit of unauthenticated requests
(429 past it, else 401).
The others hand a handler the one store client or service it uses; ``EventWritesDep``
submits the caller's writes (``serving.writes``).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from feedline.settings import ServingSettings
from feedline.stores.feed_reader import FeedReader
from feedline.stores.media_store import MediaStore
from feedline.stores.request_guards import RateDecision
from serving.auth import InvalidToken, bearer_token
from serving.observability import RATE_LIMITED
from serving.prepare import MediaCheck, MediaUploadsSource
from serving.problems import ApiProblem
from serving.resources import Resources
from serving.writes import EventWrites


async def get_resources(request: Request) -> Resources:
    """The app's store clients."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def _unauthorized(error: InvalidToken) -> ApiProblem:
    return ApiProblem(401, "unauthorized", str(error),
                      headers={"WWW-Authenticate": 'Bearer realm="feedline"'})


def rate_limited(decision: RateDecision, whose: str = "") -> ApiProblem:
    """The 429 answered past the rate limit (``whose``: e.g. " from this client")."""
    RATE_LIMITED.inc()
    return ApiProblem(
        429, "rate-limited",
        f"more than {decision.limit} requests per minute{whose}; "
        f"retry in {decision.retry_after_s} s",
        headers={"Retry-After": str(decision.retry_after_s),
                 "RateLimit-Limit": str(decision.limit), "RateLimit-Remaining": "0"})


def rate_clock() -> float:
    """Now, in seconds, as the rate limits count it (a test holds it inside one window)."""
    return time.time()


def client_subject(client: tuple[str, int] | None) -> str:
    """Who an unauthenticated request is counted against: its client IP.

    That is ``scope["client"]``: the proxy's forwarded address when uvicorn trusts the proxy.
    """
    return f"ip:{client[0] if client else 'unknown'}"


async def count_unauthenticated(resources: Resources, client: tuple[str, int] | None) -> None:
    """Count an unauthenticated request against its client IP; raises the 429 past the limit."""
    decision = await resources.client_limits.check(client_subject(client), rate_clock())
    if not decision.allowed:
        raise rate_limited(decision, " from this client without a valid token")


async def authenticated_user(request: Request, resources: ResourcesDep) -> str:
    """The caller's user id from the bearer token (no rate limit: see ``current_user``).

    A token that fails counts against the client IP's limit of unauthenticated requests:
    a flood of bad tokens gets 429s. The header is parsed here rather than by
    ``fastapi.security.HTTPBearer`` (one dependency less per request on the hot path);
    ``serving.main`` documents the scheme in OpenAPI.
    """
    try:
        user_id = resources.tokens.user_of(bearer_token(request.headers.get("authorization")))
    except InvalidToken as error:
        await count_unauthenticated(resources, request.scope.get("client"))
        raise _unauthorized(error) from None
    request.state.user_id = user_id
    return user_id


async def current_user(user_id: Annotated[str, Depends(authenticated_user)],
                       resources: ResourcesDep) -> str:
    """The authenticated caller's user id, after the rate limit check.

    While Redis is down the limit is counted in this worker's memory: reads still work
    (from the CQL store) and stay limited.
    """
    decision = await resources.user_limits.check(user_id, rate_clock())
    if not decision.allowed:
        raise rate_limited(decision)
    return user_id


CurrentUser = Annotated[str, Depends(current_user)]
#: Authenticated but not yet rate-limited: the route counts the request itself (the feed
#: does it in the same Redis call as the page read).
AuthenticatedUser = Annotated[str, Depends(authenticated_user)]


async def get_settings(resources: ResourcesDep) -> ServingSettings:
    """The app's settings."""
    return resources.settings


async def get_reader(resources: ResourcesDep) -> FeedReader:
    """Feed, profile and post reads, cache first."""
    return resources.reader


async def get_media_store(resources: ResourcesDep) -> MediaStore:
    """Who announced which media upload."""
    return resources.media


async def get_media_uploads(resources: ResourcesDep) -> MediaUploadsSource:
    """The object-storage side of media, built on first use (it may generate a key)."""
    return resources.uploads


async def get_id_key(resources: ResourcesDep) -> bytes:
    """The HMAC key of the post and comment ids the API mints (``serving.ids``)."""
    return resources.id_key


SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
ReaderDep = Annotated[FeedReader, Depends(get_reader)]
MediaStoreDep = Annotated[MediaStore, Depends(get_media_store)]
MediaUploadsDep = Annotated[MediaUploadsSource, Depends(get_media_uploads)]
IdKey = Annotated[bytes, Depends(get_id_key)]


async def get_media_check(media: MediaStoreDep, uploads: MediaUploadsDep) -> MediaCheck:
    """Checks of the media a new post shows."""
    return MediaCheck(media, uploads)


MediaCheckDep = Annotated[MediaCheck, Depends(get_media_check)]


async def get_event_writes(request: Request, user: CurrentUser,
                           resources: ResourcesDep) -> EventWrites:
    """The submit path of the caller's writes (Kafka producer, Idempotency-Key records)."""
    return EventWrites(resources.publisher, resources.idempotency, user_id=user,
                       method=request.method, path=request.url.path)


EventWritesDep = Annotated[EventWrites, Depends(get_event_writes)]
