"""The clients one app instance (one worker process) uses, created without any I/O.

Connections open on first use, so the API starts — and reports itself unready — while a
dependency is down, and recovers when it returns.
"""

from __future__ import annotations

import asyncio
import threading
from typing import cast

from redis.asyncio import Redis

from feedline.settings import ServingSettings
from feedline.stores.async_redis import async_redis
from feedline.stores.cluster_cache import async_cache_client, feed_cache
from feedline.stores.cluster_writes import cache_keys
from feedline.stores.cql_client import CqlClient
from feedline.stores.errors import Breaker
from feedline.stores.event_publisher import EventPublisher
from feedline.stores.feed_reader import REDIS_PAUSE_S, FeedReader
from feedline.stores.media_store import MediaStore, MediaUploads, MediaUrls
from feedline.stores.notification_reader import NotificationReader
from feedline.stores.post_store import PostStore
from feedline.stores.request_guards import IdempotencyRecords, RateLimiter, RateLimits
from serving.auth import TokenVerifier, token_policy
from serving.cursor import cursor_key
from serving.ids import id_key
from serving.sse import StreamSlots


class Resources:
    """Store clients and keys of one app."""

    def __init__(self, settings: ServingSettings) -> None:
        api = settings.api
        self.settings = settings
        self.keys = cache_keys(settings.redis)
        # On a Redis Cluster (redis.cluster) the cache client is redis-py's cluster client,
        # which the readers below use through the same commands (their scripts touch one
        # slot each in the cluster key layout).
        self.redis: Redis = cast(Redis, async_cache_client(
            settings.redis, decode_responses=True, socket_timeout=api.redis_timeout_s,
            socket_connect_timeout=api.redis_timeout_s))
        self.cache = feed_cache(self.redis, self.keys, timeline_cap=settings.feed.timeline_cap)
        self.cql = CqlClient(settings.cql, timeout_s=api.cql_timeout_s)
        self.posts = PostStore(self.cql, celebrity_cache_s=api.celebrity_cache_s)
        self.redis_breaker = Breaker(REDIS_PAUSE_S)
        self.reader = FeedReader(self.cache, self.posts, timeline_cap=settings.feed.timeline_cap,
                                 breaker=self.redis_breaker,
                                 redis_budget_s=settings.redis.read_budget_s)
        self.notifications = NotificationReader(self.redis, self.keys, self.cql,
                                                breaker=self.redis_breaker,
                                                redis_budget_s=settings.redis.read_budget_s)
        # Push streams wait in XREAD BLOCK up to a heartbeat: their own client, whose socket
        # timeout outlasts the wait (the cache client's would cut it short). On a cluster,
        # the same kind of client as the cache's (feedline.stores.cluster_push reads there).
        self.push_redis: Redis = cast(Redis, async_cache_client(
            settings.redis, decode_responses=True,
            socket_timeout=api.stream_heartbeat_s + api.redis_timeout_s + 5,
            socket_connect_timeout=api.redis_timeout_s))
        self.stream_slots = StreamSlots(per_user=api.stream_max_per_user,
                                        per_worker=api.stream_max_per_worker)
        self.media = MediaStore(self.cql)
        self.publisher = EventPublisher(
            settings.kafka, max_block_ms=api.kafka_max_block_ms,
            delivery_timeout_ms=api.kafka_delivery_timeout_ms,
            retry_after_s=api.kafka_retry_after_s)
        self.tokens = TokenVerifier(api.jwt_secret, policy=token_policy(api))
        # The request guards live in a Redis that does not evict when one is configured;
        # otherwise in the cache, where the feed page counts the rate limit in its own call.
        self.guards_share_cache = settings.redis.guards_url is None
        if self.guards_share_cache:
            self.guards_redis, self.guards_breaker = self.redis, self.redis_breaker
        else:
            self.guards_redis = async_redis(
                settings.redis.guards_url or "", decode_responses=True,
                socket_timeout=api.redis_timeout_s, socket_connect_timeout=api.redis_timeout_s)
            self.guards_breaker = Breaker(REDIS_PAUSE_S)
        self.rate_limiter = RateLimiter(self.guards_redis, self.keys,
                                        per_minute=api.rate_limit_per_minute)
        self.user_limits = RateLimits(self.rate_limiter, self.guards_breaker, what="user")
        """Per-user limit of authenticated requests."""
        anonymous = RateLimiter(self.guards_redis, self.keys,
                                per_minute=api.anonymous_rate_limit_per_minute)
        self.client_limits = RateLimits(anonymous, self.guards_breaker, what="client")
        """Per-client-IP limit of unauthenticated requests (``serving.deps.client_subject``)."""
        self.idempotency = IdempotencyRecords(self.guards_redis, self.keys,
                                              ttl_s=api.idempotency_ttl_s,
                                              max_keys=api.idempotency_max_keys_per_user)
        self.cursor_key = cursor_key(api.jwt_secret)
        self.id_key = id_key(api.jwt_secret)
        self.media_url = MediaUrls(settings.storage, api.media_base_url)
        """The URL clients fetch a media object from (``gs://`` URI in)."""
        self._uploads: MediaUploads | None = None
        self._uploads_lock = threading.Lock()

    def _make_uploads(self) -> MediaUploads:
        with self._uploads_lock:
            if self._uploads is None:
                self._uploads = MediaUploads(
                    self.settings.storage,
                    credentials_file=self.settings.api.signing_credentials_file)
            return self._uploads

    async def uploads(self) -> MediaUploads:
        """The object-storage side of media (built in a thread: it may generate a key)."""
        if self._uploads is not None:
            return self._uploads
        return await asyncio.to_thread(self._make_uploads)


    async def close(self) -> None:
        """Close every client."""
        await self.redis.aclose()
        await self.push_redis.aclose()
        if not self.guards_share_cache:
            await self.guards_redis.aclose()
        await asyncio.to_thread(self.publisher.close)
        await asyncio.to_thread(self.cql.close)
