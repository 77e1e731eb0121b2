"""Benchmark: the feed writer's own work per delivery, in process, on the stack's stores.

    .venv/bin/python -m bench.writer [--batches 10] [--batch 2000] [--rounds 3] [--out PATH]

Where does a delivery's CPU go in the streaming writer, apart from PyFlink? Batches of
``--batch`` timeline adds (each with its realtime push event, as the fan-out job writes
them) to timelines that are cached, measured in-process against the local stack's Redis
and CQL store (``feedctl local up`` first; the benchmark's keyspace and Redis prefix are
removed afterwards). Per delivery, client CPU (this process's user + system time) and wall
time, median of ``--rounds`` interleaved rounds of ``--batches`` batches:

* ``write_stamped``: the whole ``FeedWriter.write_stamped`` (CQL batches, then Redis);
* ``redis``: its Redis step alone (``FeedWriter._redis``: one guarded script call per
  write, one ``XADD`` per push event, in one pipeline);
* ``redis_one_call_per_chunk``: a prototype of the same Redis writes with the guard of
  ``write_guarded.lua``'s ``zadd_cached`` looped inside one script call per 256 writes
  (single-node Redis only; the push events as before) — what batching the script calls
  would save;
* ``cql_bind``: the writer's CQL preparation alone (``FeedWriter._cql``, the statements
  and their write times, then ``FeedWriter._batches``, bound into unlogged batches: the
  driver's serialisation; no request sent).

Prints JSON and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.common import emit, say
from feedline.rules.effects import TimelineAdd
from feedline.rules.write_order import StampedEffect
from feedline.settings import get_stack_settings
from feedline.stores.cluster_writes import delete_keys
from feedline.stores.cql import connect, drop_keyspace, migrate
from feedline.stores.feed_writer import FeedWriter
from feedline.stores.push import PushEvent, queue
from schemas.redis_keys import RedisKeys
from schemas.redis_push import FEED, feed_data

USERS = 4000
CAP = 800
CHUNK = 256
BASE_MS = 1_780_000_000_000

#: The prototype: ``write_guarded.lua``'s ``zadd_cached`` for many (key, versions) pairs.
ZADD_CACHED_MANY = """
local out, a = {}, 1
for i = 1, #KEYS, 2 do
  local key, versions = KEYS[i], KEYS[i + 1]
  local row, at = ARGV[a], tonumber(ARGV[a + 1])
  local seen = tonumber(redis.call('HGET', versions, row) or '0')
  seen = math.max(seen, tonumber(redis.call('HGET', versions, '') or '0'))
  if redis.call('EXISTS', key) == 0 then
    if at > seen then redis.call('HSET', versions, row, ARGV[a + 1]) end
    out[#out + 1] = 0
  elseif at <= seen then
    out[#out + 1] = -1
  else
    redis.call('HSET', versions, row, ARGV[a + 1])
    redis.call('ZADD', key, ARGV[a + 3], row)
    redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[a + 2]) + 1))
    out[#out + 1] = 1
  end
  a = a + 4
end
return out
"""


class Workload:
    """Timeline adds with consecutive write times to random cached timelines."""

    def __init__(self, users: list[str]) -> None:
        self.users = users
        self.clock = time.time_ns() // 1000
        self.rng = random.Random(7)

    def batch(self, size: int) -> tuple[list[StampedEffect], list[PushEvent]]:
        items: list[StampedEffect] = []
        pushes: list[PushEvent] = []
        for _ in range(size):
            user = self.rng.choice(self.users)
            post = f"p{self.rng.getrandbits(48):012x}"
            self.clock += 1
            created = BASE_MS + self.clock % 10**9
            items.append((self.clock, TimelineAdd(user, post, created, "author")))
            pushes.append(PushEvent(FEED, feed_data(post, "author", created), user_id=user))
        return items, pushes


def one_call_per_chunk(client: redis.Redis, keys: RedisKeys, script: Any
                       ) -> Callable[[list[StampedEffect], list[PushEvent]], list[Any]]:
    """The prototype's Redis step: the guarded adds in script calls of ``CHUNK`` writes."""

    def write(items: list[StampedEffect], pushes: list[PushEvent]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(items), CHUNK):
            names: list[str] = []
            args: list[Any] = []
            for at, effect in items[start:start + CHUNK]:
                assert isinstance(effect, TimelineAdd)
                key = keys.timeline(effect.user_id)
                names += [key, keys.versions(key)]
                args += [effect.post_id, at, CAP, effect.created_ms]
            script(keys=names, args=args, client=pipe)
        queue(pipe, keys, pushes)
        return list(pipe.execute())

    return write


def cql_bind(writer: FeedWriter) -> Callable[[list[StampedEffect], list[PushEvent]], None]:
    """The writer's own CQL preparation of a batch: its statements with their write times
    (``FeedWriter._cql``) bound into its unlogged batches (``FeedWriter._batches``)."""

    def bind(items: list[StampedEffect], _pushes: list[PushEvent]) -> None:
        writer._batches(writer._cql(items, set()))

    return bind


def measure(step: Callable[[list[StampedEffect], list[PushEvent]], Any], work: Workload,
            batches: int, size: int) -> tuple[float, float]:
    """(client CPU µs, wall µs) per delivery over ``batches`` batches."""
    cpu = wall = 0.0
    for _ in range(batches):
        items, pushes = work.batch(size)
        c0, t0 = time.process_time(), time.perf_counter()
        step(items, pushes)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - t0
    n = batches * size
    return cpu / n * 1e6, wall / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.writer", description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="batches per round and step")
    parser.add_argument("--batch", type=int, default=2000,
                        help="deliveries per batch (the writers' flush size)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    stack = get_stack_settings()
    tag = f"{int(time.time())}{random.randrange(1000):03d}"
    keyspace, keys = f"ks_bench_writer_{tag}", RedisKeys(f"flbw{tag}")
    say(f"keyspace {keyspace}, Redis prefix {keys.prefix}")
    migrate(stack.cql, keyspace=keyspace)
    cluster, session = connect(stack.cql, keyspace=keyspace)
    client = redis.Redis.from_url(stack.redis.url)
    try:
        writer = FeedWriter(session, client, keys, timeline_cap=CAP)
        users = [f"u{i:05d}" for i in range(USERS)]
        work = Workload(users)
        # Every timeline cached (an entry each), so every add takes the guarded ZADD path.
        warm = client.pipeline(transaction=False)
        for user in users:
            warm.zadd(keys.timeline(user), {"seed": 0})
        warm.execute()
        steps: dict[str, Callable[[list[StampedEffect], list[PushEvent]], Any]] = {
            "write_stamped": writer.write_stamped,
            "redis": writer._redis,  # its Redis step alone
            "redis_one_call_per_chunk": one_call_per_chunk(
                client, keys, client.register_script(ZADD_CACHED_MANY)),
            "cql_bind": cql_bind(writer),
        }
        # The prototype applies every add it is given (each row new, each key cached).
        replies = steps["redis_one_call_per_chunk"](*work.batch(CHUNK))
        if replies[0] != [1] * CHUNK:
            raise SystemExit("bench.writer: the prototype script did not apply its writes")
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
        for round_ in range(1, args.rounds + 1):
            for name, step in steps.items():
                runs[name].append(measure(step, work, args.batches, args.batch))
                cpu, wall = runs[name][-1]
                say(f"round {round_}: {name}: {cpu:.1f} µs CPU, {wall:.1f} µs wall per delivery")
    finally:
        cluster.shutdown()
        delete_keys(client, keys.pattern(), batch=5000)
        client.close()
        drop_keyspace(stack.cql, keyspace)

    results: dict[str, Any] = {"deliveries_per_round": args.batches * args.batch,
                               "batch": args.batch, "rounds": args.rounds}
    for name, pairs in runs.items():
        results[f"{name}_cpu_us"] = statistics.median(cpu for cpu, _ in pairs)
        results[f"{name}_wall_us"] = statistics.median(wall for _, wall in pairs)
        results[f"{name}_cpu_us_runs"] = [round(cpu, 2) for cpu, _ in pairs]
    results["redis_saved_cpu_us"] = (results["redis_cpu_us"]
                                     - results["redis_one_call_per_chunk_cpu_us"])
    results["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["machine"] = (f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
                          f"Python {platform.python_version()}")
    results["command"] = "python -m bench.writer " + " ".join(
        sys.argv[1:] if argv is None else argv)
    return emit(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
