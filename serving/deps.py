"""Dependencies of the route handlers, as ``Annotated`` aliases.

Every dependency is ``async def``: FastAPI would run a plain ``def`` in a worker thread,
a thread hop per dependency per request.

``CurrentUser`` authenticates the bearer token and counts the request against the user's
rate limit (429 with Retry-After past it; when Redis is down requests are let through).
``AuthenticatedUser`` only authenticates, for a route that counts the request itself.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from feedline.settings import ServingSettings
from feedline.stores.cql_client import CqlClient
from feedline.stores.event_publisher import EventPublisher
from feedline.stores.feed_reader import REDIS_DOWN, FeedReader
from feedline.stores.request_guards import RateDecision
from serving.auth import InvalidToken, bearer_token
from serving.observability import RATE_LIMITED
from serving.problems import ApiProblem
from serving.resources import Resources

log = logging.getLogger(__name__)


async def get_resources(request: Request) -> Resources:
    """The app's store clients."""
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> ServingSettings:
    """The app's settings."""
    return resources.settings


async def get_redis(resources: ResourcesDep) -> Redis:
    """The Redis client (async)."""
    return resources.redis


async def get_cql(resources: ResourcesDep) -> CqlClient:
    """The CQL session (connected on first use; statements prepared once)."""
    return resources.cql


async def get_publisher(resources: ResourcesDep) -> EventPublisher:
    """The Kafka event producer."""
    return resources.publisher


async def get_reader(resources: ResourcesDep) -> FeedReader:
    """Feed, profile and post reads, cache first."""
    return resources.reader


def _unauthorized(error: InvalidToken) -> ApiProblem:
    return ApiProblem(401, "unauthorized", str(error),
                      headers={"WWW-Authenticate": 'Bearer realm="feedline"'})


def rate_limited(decision: RateDecision) -> ApiProblem:
    """The 429 answered past the rate limit."""
    RATE_LIMITED.inc()
    return ApiProblem(
        429, "rate-limited",
        f"more than {decision.limit} requests per minute; retry in {decision.retry_after_s} s",
        headers={"Retry-After": str(decision.retry_after_s),
                 "RateLimit-Limit": str(decision.limit), "RateLimit-Remaining": "0"})


async def authenticated_user(request: Request, resources: ResourcesDep) -> str:
    """The caller's user id from the bearer token (no rate limit: see ``current_user``).

    The header is parsed here rather than by ``fastapi.security.HTTPBearer`` (one dependency
    less per request on the hot path); ``serving.main`` documents the scheme in OpenAPI.
    """
    try:
        user_id = resources.tokens.user_of(bearer_token(request.headers.get("authorization")))
    except InvalidToken as error:
        raise _unauthorized(error) from None
    request.state.user_id = user_id
    return user_id


async def current_user(user_id: Annotated[str, Depends(authenticated_user)],
                       resources: ResourcesDep) -> str:
    """The authenticated caller's user id, after the rate limit check.

    When Redis is down the request is let through: the limit protects the service, it must
    not take reads down with it.
    """
    if not resources.redis_breaker.allows():
        return user_id
    try:
        decision = await resources.rate_limiter.check(user_id, time.time())
    except REDIS_DOWN as error:
        resources.redis_breaker.trip()
        log.warning("rate limit not checked: redis unavailable (%s)", error)
        return user_id
    if not decision.allowed:
        raise rate_limited(decision)
    return user_id


SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
CurrentUser = Annotated[str, Depends(current_user)]
#: Authenticated but not yet rate-limited: the route counts the request itself (the feed
#: does it in the same Redis call as the page read).
AuthenticatedUser = Annotated[str, Depends(authenticated_user)]
RedisDep = Annotated[Redis, Depends(get_redis)]
CqlDep = Annotated[CqlClient, Depends(get_cql)]
ProducerDep = Annotated[EventPublisher, Depends(get_publisher)]
ReaderDep = Annotated[FeedReader, Depends(get_reader)]
