"""The writers' Redis Cluster plumbing, without a server: commands per slot, script calls.

What the scripts do on real servers is ``tests/integration/test_redis_cluster_writers.py``.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis
from redis.client import Pipeline
from redis.crc import key_slot

from feedline.settings_blocks import RedisSettings
from feedline.stores.cluster_writes import (
    SlotCommands,
    SlotTransactions,
    cache_client,
    evalsha_args,
    slot_multi_script,
    write_pipeline,
)
from feedline.stores.lua import source
from schemas.redis_keys import DROPPED_FIELD, RedisKeys

K = RedisKeys("fl", cluster=True)
#: A client that never connects (none of these tests does I/O).
OFFLINE = redis.Redis(host="127.0.0.1", port=1)
SLOT_MULTI = OFFLINE.register_script(source("slot_multi.lua"))


def test_commands_name_their_keys_by_index_in_first_use_order() -> None:
    commands = SlotCommands()
    scratch, live = f"{K.timeline('u1')}:rebuilding", K.timeline("u1")
    commands.add("DEL", scratch)
    commands.add("ZADD", scratch, [1, "p1", 2, "p2"])
    commands.add("RENAME", scratch, [live])
    commands.add("HSET", K.versions(live), ["", 7])
    assert commands.keys == [scratch, live, K.versions(live)]
    assert commands.args == ["DEL", 1, 0, "ZADD", 1, 4, 1, "p1", 2, "p2",
                             "RENAME", 1, 1, 2, "HSET", 3, 2, "", 7]


def test_a_command_the_script_does_not_run_is_refused() -> None:
    with pytest.raises(ValueError, match="EXPIRE"):
        SlotCommands().add("EXPIRE", "k", [1])


def test_transactions_group_commands_by_slot_in_queue_order() -> None:
    tx = SlotTransactions(OFFLINE, SLOT_MULTI)
    tx.delete(K.notifications("r1"), K.notification_groups("r1"), K.post("p9"))
    tx.zadd(K.notifications("r1"), {"g1": 5, "g2": 6})
    tx.hset(K.notification_groups("r1"), mapping={"g1": "x", "g2": "y"})
    tx.hset(K.versions(K.post("p9")), "", 3)
    tx.sadd(K.celebrities(), "a", "b")
    tx.srem(K.celebrities(), "c")
    by_slot = {slot: (c.keys, c.args) for slot, c in tx.slots.items()}
    recipient = key_slot(K.notifications("r1").encode())
    assert by_slot[recipient] == (
        [K.notifications("r1"), K.notification_groups("r1")],
        ["DEL", 1, 0, "DEL", 2, 0, "ZADD", 1, 4, 5, "g1", 6, "g2",
         "HSET", 2, 4, "g1", "x", "g2", "y"])
    assert by_slot[key_slot(K.post("p9").encode())] == (
        [K.post("p9"), K.versions(K.post("p9"))], ["DEL", 1, 0, "HSET", 2, 2, "", 3])
    assert by_slot[key_slot(K.celebrities().encode())] == (
        [K.celebrities()], ["SADD", 1, 2, "a", "b", "SREM", 1, 1, "c"])
    assert len(by_slot) == 3


def test_a_rename_across_slots_and_empty_writes_are_refused() -> None:
    tx = SlotTransactions(OFFLINE, SLOT_MULTI)
    with pytest.raises(ValueError, match="different slots"):
        tx.rename(K.timeline("u1"), K.timeline("u2"))
    with pytest.raises(ValueError):
        tx.zadd(K.timeline("u1"), {})
    with pytest.raises(ValueError):
        tx.hset(K.post("p1"), mapping={})
    assert tx.slots == {}


def test_an_empty_transaction_sends_nothing() -> None:
    assert SlotTransactions(OFFLINE, SLOT_MULTI).execute() == []  # port 1: would fail


def test_a_script_call_is_evalsha_with_its_key_count() -> None:
    assert evalsha_args(SLOT_MULTI, ["k1", "k2"], ["DEL", 1, 0]) == [
        "EVALSHA", SLOT_MULTI.sha, 2, "k1", "k2", "DEL", 1, 0]


def test_single_node_keeps_redis_py_pipelines_and_needs_no_script() -> None:
    client = cache_client(RedisSettings(url="redis://127.0.0.1:1/0"))
    assert type(client) is redis.Redis
    assert slot_multi_script(client) is None
    multi = cast(Any, write_pipeline(client, None, transaction=True))
    plain = cast(Any, write_pipeline(client, None, transaction=False))
    assert isinstance(multi, Pipeline) and multi.transaction
    assert isinstance(plain, Pipeline) and not plain.transaction


def test_the_drop_field_is_never_a_row() -> None:
    # Rows of an outbox's versions hash are post ids ([A-Za-z0-9_-]) and "" (the key).
    assert DROPPED_FIELD and not DROPPED_FIELD.replace("_", "").replace("-", "").isalnum()
