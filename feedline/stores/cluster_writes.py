"""The writers' side of Redis Cluster: client, scripts in pipelines, one step per slot.

With ``redis.cluster`` set, a writer's script calls and its MULTI/EXEC over many slots
take the forms below.

The writers (``FeedWriter``, ``NotificationWriter``, the rebuild's ``ImageWriter``) are
synchronous and run the same code on one Redis and on a cluster; what differs is kept here:

- ``cache_client``: the writers' client of the cache, redis-py's cluster client when
  ``redis.cluster`` is set (the API's asynchronous one is ``cluster_cache.cluster_client``);
- ``ScriptPipeline``: a non-transactional pipeline that also carries script calls. On one
  Redis a ``Script`` is queued as before (``client=pipe``: redis-py loads missing scripts
  first); redis-py's cluster pipeline refuses that (its ``evalsha`` is blocked), so there a
  call goes as ``execute_command("EVALSHA", ...)`` — routed by its keys, which share a slot
  — and the calls a primary answered NOSCRIPT (restarted, failed over) are sent again
  after the script is loaded on every primary. Only those: every other reply stands, so a
  write is never applied twice and its reply is the one the caller reads;
- ``write_pipeline``: what a writer's MULTI/EXEC (or pipeline of whole-key writes)
  becomes. On one Redis the same redis-py pipeline as before; on a cluster
  ``SlotTransactions``, which collects the same commands per slot and sends each slot's
  as one ``slot_multi.lua`` call (atomic per slot, not across slots), all in one cluster
  pipeline: one round trip per node.

Single-node Redis stays the default and takes exactly the paths it took before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.cluster
import redis.exceptions
from redis.commands.core import Script
from redis.crc import key_slot

from feedline.settings_blocks import RedisSettings
from feedline.stores.lua import source
from schemas.redis_keys import RedisKeys

#: Commands ``slot_multi.lua`` runs (``SlotTransactions``).
SLOT_COMMANDS = ("DEL", "ZADD", "HSET", "SADD", "SREM", "RENAME")


def cache_client(settings: RedisSettings, **options: Any) -> redis.Redis:
    """The writers' (synchronous) client of the cache at ``settings.url``.

    ``settings.cluster``: redis-py's cluster client, ``url`` naming one node (it learns
    the others); otherwise one Redis, as ``redis.Redis.from_url`` builds it.
    """
    if settings.cluster:
        return cast(redis.Redis, redis.cluster.RedisCluster.from_url(settings.url, **options))
    return redis.Redis.from_url(settings.url, **options)


def cache_keys(settings: RedisSettings) -> RedisKeys:
    """The key layout of the cache at ``settings``: hash-tagged on a cluster."""
    return RedisKeys(settings.key_prefix, cluster=settings.cluster)


def delete_keys(client: Any, pattern: str, *, batch: int = 1000) -> int:
    """Delete every key matching the SCAN ``pattern``; how many were deleted.

    On a cluster SCAN runs on every node and redis-py splits each DEL of ``batch`` keys
    per slot.
    """
    deleted = 0
    stale: list[Any] = []
    for key in client.scan_iter(match=pattern, count=batch):
        stale.append(key)
        if len(stale) >= batch:
            deleted += client.delete(*stale)
            stale.clear()
    if stale:
        deleted += client.delete(*stale)
    return deleted


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is redis-py's (synchronous) cluster client."""
    return isinstance(client, redis.cluster.RedisCluster)


def evalsha_args(script: Script, keys: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    """The ``EVALSHA`` command of one script call: sha, key count, keys, arguments."""
    return ["EVALSHA", script.sha, len(keys), *keys, *args]


class ScriptPipeline:
    """A non-transactional pipeline of either client that carries script calls too.

    Plain commands go to ``pipe`` (a redis-py pipeline); ``script`` queues a call. Replies
    come back in queue order from ``execute``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.cluster = is_cluster(client)
        self.pipe: Any = client.pipeline(transaction=False)
        # (position in the pipeline, script, EVALSHA command) of each cluster script call.
        self._calls: list[tuple[int, Script, list[Any]]] = []

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Queue one call of ``script`` (its keys share a slot on a cluster)."""
        if not self.cluster:
            script(keys=keys, args=args, client=self.pipe)
            return
        command = evalsha_args(script, keys, args)
        self._calls.append((len(self.pipe), script, command))
        self.pipe.execute_command(*command)

    def __len__(self) -> int:
        return len(self.pipe)

    def execute(self) -> list[Any]:
        """Send everything; the replies in queue order (the first error is raised)."""
        if not self.cluster:
            return cast(list[Any], self.pipe.execute())
        if not len(self.pipe):
            return []
        replies = list(self.pipe.execute(raise_on_error=False))
        missing = [(at, script, command) for at, script, command in self._calls
                   if isinstance(replies[at], redis.exceptions.NoScriptError)]
        if missing:
            for text in dict.fromkeys(script.script for _, script, _ in missing):
                self.client.script_load(text)  # on every primary
            again = self.client.pipeline(transaction=False)
            for _, _, command in missing:  # in their order: one slot's calls stay in order
                again.execute_command(*command)
            for (at, _, _), reply in zip(missing, again.execute(raise_on_error=False),
                                         strict=True):
                replies[at] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


@dataclass
class SlotCommands:
    """The keys and ``slot_multi.lua`` arguments of one slot's commands, in order."""

    keys: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    _indexes: dict[str, int] = field(default_factory=dict, repr=False)

    def add(self, name: str, key: str, values: Sequence[Any] = ()) -> None:
        """Append one command on ``key`` (RENAME: ``values`` is the new name)."""
        if name not in SLOT_COMMANDS:
            raise ValueError(f"slot_multi runs no {name}")
        if name == "RENAME":
            values = [self._index(str(values[0]))]
        self.args.extend((name, self._index(key), len(values), *values))

    def _index(self, key: str) -> int:
        """The key's 1-based index in ``keys`` (added on first use)."""
        if key not in self._indexes:
            self.keys.append(key)
            self._indexes[key] = len(self.keys)
        return self._indexes[key]


def _pairs(mapping: Mapping[Any, Any], score_first: bool) -> list[Any]:
    if score_first:
        return [x for member, score in mapping.items() for x in (score, member)]
    return [x for pair in mapping.items() for x in pair]


class SlotTransactions:
    """The MULTI/EXEC of a writer on a cluster: the same commands, atomic per slot.

    Offers the redis-py pipeline methods the writers queue in their transactions (``delete``,
    ``zadd``, ``hset``, ``sadd``, ``srem``, ``rename``); ``execute`` sends one
    ``slot_multi.lua`` call per slot, in one cluster pipeline. The keys of one slot are
    changed together, in queue order; keys of different slots independently.
    """

    def __init__(self, client: redis.Redis, script: Script) -> None:
        self.client = client
        self.script = script
        self.slots: dict[int, SlotCommands] = {}

    def _add(self, name: str, key: str, values: Sequence[Any] = ()) -> None:
        self.slots.setdefault(key_slot(key.encode()), SlotCommands()).add(name, key, values)

    def delete(self, *names: str) -> None:
        """DEL each key."""
        for name in names:
            self._add("DEL", name)

    def zadd(self, name: str, mapping: Mapping[str, float]) -> None:
        """ZADD the members with their scores."""
        if not mapping:
            raise ValueError("zadd needs members")
        self._add("ZADD", name, _pairs(mapping, score_first=True))

    def hset(self, name: str, key: Any = None, value: Any = None,
             mapping: Mapping[Any, Any] | None = None) -> None:
        """HSET one field, or the fields of ``mapping`` (as redis-py's ``hset``)."""
        pairs = [key, value] if key is not None else []
        pairs += _pairs(mapping or {}, score_first=False)
        if not pairs:
            raise ValueError("hset needs fields")
        self._add("HSET", name, pairs)

    def sadd(self, name: str, *members: Any) -> None:
        """SADD the members."""
        self._add("SADD", name, members)

    def srem(self, name: str, *members: Any) -> None:
        """SREM the members."""
        self._add("SREM", name, members)

    def rename(self, src: str, dst: str) -> None:
        """RENAME ``src`` to ``dst`` (both of one slot)."""
        if key_slot(src.encode()) != key_slot(dst.encode()):
            raise ValueError(f"{src!r} and {dst!r} are in different slots")
        self._add("RENAME", src, [dst])

    def execute(self) -> list[Any]:
        """Run each slot's commands (one script call per slot, one round trip per node)."""
        pipe = ScriptPipeline(self.client)
        for commands in self.slots.values():
            pipe.script(self.script, commands.keys, commands.args)
        self.slots = {}
        return pipe.execute() if len(pipe) else []


def write_pipeline(client: redis.Redis, slot_multi: Script | None, *,
                   transaction: bool) -> Any:
    """A writer's pipeline of plain writes (``SlotTransactions`` on a cluster).

    On one Redis redis-py's pipeline, a MULTI/EXEC when ``transaction``; on a cluster the
    commands of each slot run as one atomic step, either way.

    ``slot_multi``: ``slot_multi.lua`` registered with ``client`` (``slot_multi_script``),
    needed on a cluster only.
    """
    if not is_cluster(client):
        return client.pipeline(transaction=transaction)
    if slot_multi is None:
        raise ValueError("a cluster transaction needs the slot_multi script")
    return SlotTransactions(client, slot_multi)


def slot_multi_script(client: redis.Redis) -> Script | None:
    """``slot_multi.lua`` registered with a cluster client; None on one Redis (unused there)."""
    return client.register_script(source("slot_multi.lua")) if is_cluster(client) else None
