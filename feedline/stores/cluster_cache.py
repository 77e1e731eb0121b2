"""The serving cache's read side on Redis Cluster: a feed page in one step per slot group.

``FeedCache.page`` runs ``lua/page.lua`` once, touching keys of many slots, which Redis
Cluster refuses (CROSSSLOT). With the cluster layout of ``schemas.redis_keys`` (owners in
hash tags), ``ClusterFeedCache.page`` gives the same answer in three steps:

1. the reader's slot, one script (``lua/page_head.lua``): rate limit, timeline window,
   followed-celebrity set — one round trip to one node;
2. each followed celebrity's slot (``lua/page_outbox.lua``: outbox window and the author's
   ``posts`` counter), all in one cluster pipeline — redis-py sends one pipeline per node,
   concurrently: one round trip per shard holding an outbox;
3. the walk of ``feedline.stores.page_walk`` (``page.lua``'s merge, in Python) hydrates
   the posts it reaches with one pipeline per batch (post hash and counters share the
   post's tag): one round trip per shard holding a post, one batch in the common case.

The statuses, their order of precedence and the entries equal ``page.lua``'s for the same
data. Step 2 reads the windows together with the checks, so an ``outbox_miss`` costs no
more than a page. Repairs: a timeline repair touches only the reader's slot and runs as
on one Redis; an outbox repair is split in two scripts (``celebrities_complete.lua`` on the
celebrities set's slot, then ``outbox_fill.lua`` on the author's), no longer atomic: a
writer may remove the author from the celebrities set between the two. The fill is then
refused: a clear written through ``write_guarded.lua`` leaves the outbox's whole-key
version, and the writer's rebuild that drops the outbox (``FeedWriter._reload``, on a
cluster) the time of the drop (``schemas.redis_keys.DROPPED_FIELD``); a fill whose CQL read
began before either does not write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection

from feedline.settings_blocks import RedisSettings
from feedline.stores.async_redis import async_redis, reset_safe
from feedline.stores.feed_cache import (
    CachePage,
    FeedCache,
    PageStatus,
    _media,
    page_call,
    settled_page,
)
from feedline.stores.feed_items import Position, PostView
from feedline.stores.lua import source
from feedline.stores.page_walk import Hash, Window, walk
from feedline.stores.request_guards import RateWindow
from schemas.redis_hashes import POST_COUNTER_FIELDS
from schemas.redis_keys import DROPPED_FIELD, RedisKeys
from schemas.redis_sets import OUTBOX

#: The post hash fields hydration reads, in page.lua's order.
POST_FIELDS = ("author_id", "caption", "media")


class ClusterFeedCache(FeedCache):
    """``FeedCache`` on a Redis Cluster (keys in the cluster layout, ``cluster=True``)."""

    def __init__(self, client: RedisCluster, keys: RedisKeys, *, timeline_cap: int) -> None:
        if not keys.cluster:
            raise ValueError("ClusterFeedCache needs the cluster key layout (cluster=True)")
        super().__init__(client, keys, timeline_cap=timeline_cap)  # type: ignore[arg-type]
        self.cluster = client
        # redis-py's register_script serves the cluster client too (its stubs name Redis).
        scripts = cast(Any, client)
        self._head = scripts.register_script(source("page_head.lua"))
        self._outbox_text = source("page_outbox.lua")
        self._outbox = scripts.register_script(self._outbox_text)
        self._celebrities_complete = scripts.register_script(source("celebrities_complete.lua"))
        self._outbox_fill = scripts.register_script(source("outbox_fill.lua"))

    async def page(self, user_id: str, after: Position | None, limit: int, *,
                   fetch: int, lenient_outboxes: bool = False,
                   rate: RateWindow | None = None) -> CachePage:
        """One feed page from the cluster: what ``FeedCache.page`` returns for the same data."""
        k = self.keys
        cursor_score = "" if after is None else str(after.created_ms)
        cursor_id = "" if after is None else after.post_id
        keys, args = page_call(k, user_id, [fetch, self.cap, cursor_score, cursor_id], rate)
        head = await self._head(keys=keys, args=args)
        if (settled := settled_page(head, rate)) is not None:
            return settled
        _, shape, celebrities, flat = head
        windows = [Window.from_reply(shape, flat)]
        replies = await self._outbox_steps(celebrities, fetch, cursor_score, cursor_id,
                                           lenient_outboxes)
        absent = tuple(a for a, r in zip(celebrities, replies, strict=True) if r[0] == "absent")
        if absent:
            return CachePage(PageStatus.OUTBOX_MISS, absent=absent)
        windows += [Window.from_reply(r[1], r[2]) for r in replies if r[0] == "window"]
        walked = await walk(windows, after, limit, self._hydrate, batch=max(fetch, limit))
        entries: list[PostView | Position] = []
        for (score, post_id), post in walked.entries:
            if post is None:
                entries.append(Position(int(score), post_id))
            else:
                author_id, caption, media, likes, comments = post
                entries.append(PostView(post_id, author_id, caption, _media(media), int(score),
                                        int(likes), int(comments)))
        last = None if walked.last is None else Position(int(walked.last[0]), walked.last[1])
        return CachePage(PageStatus(walked.status), tuple(entries), last)

    async def _outbox_steps(self, celebrities: Sequence[str], fetch: int, cursor_score: str,
                            cursor_id: str, lenient: bool) -> list[list[Any]]:
        """``page_outbox.lua`` for each celebrity, in one cluster pipeline (per node)."""
        if not celebrities:
            return []
        k = self.keys
        sha = self._outbox.sha
        calls = [(OUTBOX.key(k, author), k.user_counters(author)) for author in celebrities]
        args: list[Any] = [fetch, cursor_score, cursor_id, "1" if lenient else "0",
                           OUTBOX.counter_field]

        async def run() -> list[Any]:
            pipe = self.cluster.pipeline()
            for outbox, counters in calls:
                # ClusterPipeline blocks its evalsha method, not the command itself.
                pipe.execute_command("EVALSHA", sha, 2, outbox, counters, *args)
            return await pipe.execute(raise_on_error=False)

        replies = await run()
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            await self.cluster.script_load(self._outbox_text)  # every primary (a restart)
            replies = await run()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _hydrate(self, post_ids: Sequence[str]) -> dict[str, Hash | None]:
        """Post hashes and counters, as page.lua reads them (one pipeline, per node)."""
        pipe = self.cluster.pipeline()
        for post_id in post_ids:
            pipe.hmget(self.keys.post(post_id), list(POST_FIELDS))
            pipe.hmget(self.keys.post_counters(post_id), list(POST_COUNTER_FIELDS))
        replies = await pipe.execute()
        found: dict[str, Hash | None] = {}
        for post_id, post, counts in zip(post_ids, replies[::2], replies[1::2], strict=True):
            author_id, caption, media = post
            found[post_id] = None if author_id is None else (
                author_id, caption or "", media or "[]", counts[0] or "0", counts[1] or "0")
        return found

    async def repair_outbox(self, author_id: str, posts: Sequence[Position],
                            celebrities: Sequence[str], read_at_us: int) -> bool:
        """``FeedCache.repair_outbox`` in two steps (see the module's docstring)."""
        if not posts and not celebrities:
            return False
        k = self.keys
        every = k.celebrities()
        member = await self._celebrities_complete(
            keys=[every, k.versions(every)], args=[read_at_us, author_id, *celebrities])
        if not member or not posts:
            return False
        args: list[Any] = [self.cap, read_at_us, DROPPED_FIELD]
        for p in posts[: self.cap] if OUTBOX.capped else posts:
            args.extend((p.created_ms, p.post_id))
        outbox = OUTBOX.key(k, author_id)
        return bool(await self._outbox_fill(keys=[outbox, k.versions(outbox)], args=args))

    async def ping(self) -> bool:
        """Every primary answered PING."""
        return bool(await self.cluster.ping(target_nodes=RedisCluster.PRIMARIES))


#: What ``ReachableCluster.get_default_node`` answers between a reset and the next
#: initialisation: a node no pipeline ever sends to (so none matches its name).
_NO_DEFAULT_NODE = ClusterNode("0.0.0.0", 0)  # noqa: S104 (never connected to)


class ReachableCluster(RedisCluster):
    """redis-py's cluster client whose "no node reachable" is a Redis connection error.

    redis-py 5 raises a bare ``RedisClusterException`` when it cannot (re)learn the cluster's
    layout from any node; the readers fall back to the CQL store on connection errors
    (``feed_reader.REDIS_DOWN``), so that failure is reported as one.
    """

    def get_default_node(self) -> ClusterNode:
        """The default node; a placeholder while the client is reset to be re-learned.

        redis-py 5.3 resets its node manager after some errors (a MOVED now and then, a
        connection error) and learns the layout again on the next command; a pipeline that
        got redirections meanwhile asks ``get_default_node().name`` and failed with an
        ``AttributeError`` on None (seen while a slot was resharded:
        ``test_redis_cluster_resharding``; redis-py 6 checks for None itself).
        """
        node = super().get_default_node()
        return _NO_DEFAULT_NODE if node is None else node

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every node's connections write as `ResetSafe`: redis-py's cluster client picks
        # its connection class itself (it takes none), and on a connection error it closes
        # every node's connections, also those another request is opening or writing on
        # at that moment; the write then hits a writer already gone (``AttributeError``,
        # seen as 500s while a master was killed). The nodes it learns later are made from
        # the same keyword arguments (the node manager shares the dict).
        options = self.nodes_manager.connection_kwargs
        options["connection_class"] = reset_safe(options.get("connection_class", Connection))
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = reset_safe(node.connection_class)
        self._seeds = dict(self.nodes_manager.startup_nodes)
        """The nodes it was given (its URL's), kept apart from redis-py's startup nodes."""

    async def initialize(self) -> ReachableCluster:
        """Learn the cluster's nodes and slots (on first use and after a failover).

        redis-py 5.3 drops a node from the nodes it learns from on each connection error to
        it, and learns again only from those left: once every node has failed once (a
        master killed, then reads and readiness pings while the cluster is down), none is
        left and the client stays down for good ("at least one reachable node: None")
        although the cluster is back. The seeds are put back first, so it learns again.
        """
        for name, node in self._seeds.items():
            self.nodes_manager.startup_nodes.setdefault(name, node)
        try:
            await super().initialize()
        except redis.exceptions.SlotNotCoveredError:
            raise
        except redis.exceptions.RedisClusterException as error:
            raise redis.exceptions.ConnectionError(f"redis cluster unreachable: {error}") from error
        return self


def cluster_client(url: str, **options: Any) -> RedisCluster:
    """An async Redis Cluster client from the URL of one node (no I/O until first use).

    Its nodes connect with ``async_redis``'s `ResetSafe` connection classes too
    (``ReachableCluster.__init__``).
    """
    if options.get("socket_timeout") is None:
        raise ValueError("cluster_client needs a socket_timeout")
    return ReachableCluster.from_url(url, **options)


def async_cache_client(settings: RedisSettings, **options: Any) -> Any:
    """The async client of the cache at ``settings`` (no I/O until first use).

    ``cluster_client`` on a Redis Cluster (``settings.cluster``), otherwise ``async_redis``.
    """
    if settings.cluster:
        return cluster_client(settings.url, **options)
    return async_redis(settings.url, **options)


def feed_cache(client: Any, keys: RedisKeys, *, timeline_cap: int) -> FeedCache:
    """The feed cache for the key layout: ``ClusterFeedCache`` for the cluster one."""
    if keys.cluster:
        return ClusterFeedCache(client, keys, timeline_cap=timeline_cap)
    return FeedCache(client, keys, timeline_cap=timeline_cap)
