"""Benchmark: fan-out throughput and freshness on the real local stack.

    .venv/bin/python -m bench.fanout            (the stack must be up: `make run` or
                                                 `feedctl local up`; `make bench-fanout`)

In an isolated sandbox (own topics, keyspace, Redis prefix), with only the fan-out job
deployed on the local Flink cluster:

1. graph: the standard social graph (10,000 users, ~750,000 follows) is produced and
   processed (reported as follow events per second);
2. throughput: 5,000 posts are produced at once; deliveries per second = timeline
   deliveries (computed with the shared rules from the same events) divided by the time
   from the first send until the writer reports every effect written to both stores;
3. freshness: more posts at a rate giving half the target delivery rate; for each, the
   time from send until it is in one follower's Redis timeline (p50, p99);
4. Redis: round-trip time of PING in the same run, and memory per timeline entry
   (MEMORY USAGE over sampled timelines / their entries).

During phase 2 it also reads the CPU time of the pipeline's own processes (the TaskManagers
and their Python workers) and of the stores (Cassandra, Redis) and Kafka:
``deliveries_per_core_s`` is deliveries per CPU-second of the pipeline, the figure that
predicts a cluster; ``store_cpu_us_per_delivery`` the stores' CPU per delivery.
``--parallelism`` sets the job's (the local cluster spreads it over its TaskManagers).

Prints a summary and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import CpuMeter, StackMemory
from feedline.rules.effects import TimelineAdd
from feedline.rules.engine import RulesEngine
from feedline.rules.fanout import RulesConfig
from feedline.settings import FeedSettings, get_stack_settings
from feedline.workload import ProducedEvent, Workload, WorkloadSpec
from jobs import flink_rest
from jobs.load import produce
from jobs.localstack import stack as local_stack
from jobs.sandbox import Sandbox, open_sandbox


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_metric(sb: Sandbox, job_id: str, operator: str, metric: str, target: float,
                timeout_s: float, poll_s: float = 0.05) -> float:
    """Poll an operator metric until it reaches ``target``; returns when (monotonic)."""
    rest = sb.stack.flink.rest_url
    deadline = time.monotonic() + timeout_s
    last_note = 0.0
    while True:
        value = flink_rest.operator_metric(rest, job_id, operator, metric)
        now = time.monotonic()
        if value >= target:
            return now
        if now > deadline:
            raise TimeoutError(f"{operator}.{metric} = {value:,.0f} < {target:,.0f}")
        if now - last_note > 10:
            say(f"  {operator}.{metric}: {value:,.0f} / {target:,.0f}")
            last_note = now
            sb.assert_jobs_alive()
        time.sleep(poll_s)


def settled(rest: str, job_id: str, operator: str, metric: str, quiet_s: float = 2.0) -> float:
    """The metric's value once it has stopped changing for ``quiet_s`` (buffers drained)."""
    value = flink_rest.operator_metric(rest, job_id, operator, metric)
    since = time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.2)
        current = flink_rest.operator_metric(rest, job_id, operator, metric)
        if current != value:
            value, since = current, time.monotonic()
    return value


def posts_only(
    spec: WorkloadSpec, workload: Workload, count: int, seed: int
) -> list[ProducedEvent]:
    """``count`` post_created events on the workload's graph (no engagements)."""
    quiet = replace(spec, posts=count, likes_per_post=0, comments_per_post=0,
                    post_delete_share=0, seed=seed)
    posts = Workload(quiet)
    posts.followers = workload.followers
    posts.clock = workload.clock
    posts.serial = workload.serial
    return [p for p in posts.activity() if p.event.event_type == "post_created"]


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the results."""
    parser = argparse.ArgumentParser(prog="bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=5_000)
    parser.add_argument("--mean-followers", type=float, default=75.0)
    parser.add_argument("--max-followers", type=int, default=5_000)
    parser.add_argument("--freshness-rate", type=float, default=5_000.0,
                        help="deliveries per second during the freshness phase")
    parser.add_argument("--freshness-posts", type=int, default=600)
    parser.add_argument("--parallelism", type=int, default=None,
                        help="the fan-out job's parallelism (default: flink.parallelism)")
    parser.add_argument("--out", type=Path, default=Path(".local/bench/fanout.json"))
    args = parser.parse_args(argv)

    stack = get_stack_settings()
    if not all(s.healthy for s in local_stack.status(stack) if s.essential):
        raise SystemExit("the local stack is not healthy: run `make run` or `feedctl local up`")
    spec = WorkloadSpec(users=args.users, posts=args.posts, mean_followers=args.mean_followers,
                        max_followers=args.max_followers, likes_per_post=0, comments_per_post=0,
                        post_delete_share=0, unfollow_share=0)
    feed = FeedSettings()
    config = RulesConfig.from_settings(feed)

    say("generating the workload ...")
    workload = Workload(spec)
    graph = list(workload.graph())
    posts = posts_only(spec, workload, args.posts, seed=spec.seed + 1)
    engine = RulesEngine(config)
    graph_effects = sum(len(engine.fanout(item.event)) for item in graph)
    post_effects = [e for item in posts for e in engine.fanout(item.event)]
    deliveries = sum(isinstance(e, TimelineAdd) for e in post_effects)
    fresh = posts_only(spec, workload, args.freshness_posts, seed=spec.seed + 2)
    probes: dict[str, str] = {}  # post_id -> a follower whose timeline receives it
    fresh_deliveries = 0
    for item in fresh:
        effects = [e for e in engine.fanout(item.event) if isinstance(e, TimelineAdd)]
        fresh_deliveries += len(effects)
        if effects:
            probes[item.event.post_id] = effects[0].user_id
    say(f"graph {len(graph):,} follows; {len(posts):,} posts -> {deliveries:,} deliveries")

    parallelism = args.parallelism or stack.flink.parallelism
    flink = stack.flink.model_copy(update={"parallelism": parallelism})
    sb = open_sandbox(stack, feed, flink, partitions=max(3, parallelism))
    results: dict[str, Any] = {"parallelism": parallelism}
    services = {row.name: row.pid for row in local_stack.status(stack) if row.pid}
    cpu = CpuMeter({
        "pipeline": [pid for name, pid in services.items()
                     if name.startswith("flink-taskmanager")],
        "stores": [services[name] for name in ("cassandra", "redis") if name in services],
        "kafka": [services[name] for name in ("kafka",) if name in services],
    })
    with StackMemory(list(services.values())) as memory:
        try:
            results.update(measure(sb, args, graph, graph_effects, posts, post_effects,
                                   deliveries, fresh, probes, fresh_deliveries, cpu))
        finally:
            sb.close()
    results["stack_peak_rss_mb"] = memory.peak_mb
    results["service_peak_rss_mb"] = {
        name: memory.per_service_mb.get(pid, 0.0) for name, pid in services.items()
    }
    results.update({
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {_cpus()} cores, Python "
                   f"{platform.python_version()}",
        "command": "python -m bench.fanout " + " ".join(argv or sys.argv[1:]),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return results


def measure(sb: Sandbox, args: argparse.Namespace, graph: list[ProducedEvent],
            graph_effects: int, posts: list[ProducedEvent], post_effects: list[Any],
            deliveries: int,
            fresh: list[ProducedEvent], probes: dict[str, str],
            fresh_deliveries: int, cpu: CpuMeter) -> dict[str, Any]:
    """The three phases on a deployed fan-out job."""
    stack = sb.stack
    results: dict[str, Any] = {}
    job = sb.deploy("fanout")
    say("phase 1: graph")
    started = time.monotonic()
    produce(sb.streaming.kafka, graph)
    done = wait_metric(sb, job, "fan-out-state", "events", len(graph), timeout_s=3600,
                       poll_s=0.5)
    results["graph_follows"] = len(graph)
    results["graph_follows_per_s"] = len(graph) / (done - started)
    # Phase 2 starts once the writer wrote every effect of the graph (the rules' count):
    # its counter moves only as bundles finish, so a pause of it alone is no proof (a 2 s
    # pause started phase 2 early in three of eight runs on 2026-12-01).
    wait_metric(sb, job, "write-fan-out", "effects_written", graph_effects, timeout_s=3600,
                poll_s=0.5)
    written_before = settled(stack.flink.rest_url, job, "write-fan-out", "effects_written")
    results["graph_effects"] = graph_effects
    results["graph_effects_written"] = written_before
    if written_before != graph_effects:
        say(f"  the writer reports {written_before:,.0f} effects for the graph's "
            f"{graph_effects:,} (phase 2 counts from what it reports)")
    say(f"  {results['graph_follows_per_s']:,.0f} follows/s")

    say("phase 2: throughput")
    cpu.start()
    started = time.monotonic()
    produce(sb.streaming.kafka, posts)
    done = wait_metric(sb, job, "write-fan-out", "effects_written",
                       written_before + len(post_effects), timeout_s=3600)
    used = cpu.stop()
    results["cpu_seconds"] = used
    # The pipeline's CPU split: the TaskManagers' JVMs against their Python workers.
    results["pipeline_cpu_seconds"] = {"jvm": cpu.split["pipeline"]["roots"],
                                       "python": cpu.split["pipeline"]["descendants"]}
    results["pipeline_python_us_per_delivery"] = (
        1e6 * cpu.split["pipeline"]["descendants"] / max(deliveries, 1))
    results["deliveries_per_core_s"] = deliveries / max(used["pipeline"], 1e-9)
    results["store_cpu_us_per_delivery"] = 1e6 * used["stores"] / max(deliveries, 1)
    results["cores_busy"] = {name: s / (done - started) for name, s in used.items()}
    results["posts"] = len(posts)
    results["deliveries"] = deliveries
    results["throughput_seconds"] = done - started
    results["deliveries_per_s"] = deliveries / (done - started)
    say(f"  {results['deliveries_per_s']:,.0f} deliveries/s")

    say("phase 3: freshness")
    results.update(freshness(sb, fresh, probes, fresh_deliveries, args.freshness_rate))
    results.update(redis_figures(sb))
    return results


def freshness(sb: Sandbox, fresh: list[ProducedEvent], probes: dict[str, str],
              fresh_deliveries: int, rate: float) -> dict[str, Any]:
    """Send posts at ``rate`` deliveries/s; time each until it shows in a probe timeline."""
    per_post = fresh_deliveries / max(1, len(fresh))
    posts_per_s = rate / max(per_post, 1e-9)
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    stop = threading.Event()

    failed: list[BaseException] = []

    def poll() -> None:
        try:
            watch()
        except BaseException as error:  # reported by the caller: no figure from a dead poller
            failed.append(error)

    def watch() -> None:
        while not stop.is_set() or len(seen_at) < len(sent_at):
            # A copy: the producer adds to sent_at while this thread reads it.
            pending = [p for p in list(sent_at) if p not in seen_at and p in probes]
            if pending:
                pipe = sb.redis.pipeline(transaction=False)
                for post_id in pending:
                    pipe.zscore(sb.keys.timeline(probes[post_id]), post_id)
                now = time.monotonic()
                for post_id, score in zip(pending, pipe.execute(), strict=True):
                    if score is not None:
                        seen_at[post_id] = now
            if stop.is_set() and time.monotonic() > stop_deadline[0]:
                return
            time.sleep(0.002)

    stop_deadline = [float("inf")]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    produce(sb.streaming.kafka, fresh, rate=posts_per_s,
            on_send=lambda item, t: sent_at.__setitem__(item.event.post_id, t))
    stop_deadline[0] = time.monotonic() + 60
    stop.set()
    poller.join()
    if failed:
        raise RuntimeError(f"the freshness poller failed: {failed[0]!r}") from failed[0]
    latencies = [seen_at[p] - sent_at[p] for p in seen_at if p in sent_at]
    missing = len([p for p in sent_at if p in probes]) - len(latencies)
    return {
        "freshness_posts_per_s": posts_per_s,
        "freshness_target_deliveries_per_s": rate,
        "freshness_samples": len(latencies),
        "freshness_missing": missing,
        "freshness_p50_ms": 1000 * statistics.median(latencies),
        "freshness_p99_ms": 1000 * percentile(latencies, 99),
    }


def redis_figures(sb: Sandbox) -> dict[str, Any]:
    """PING round trip and memory per timeline entry, measured now."""
    rtts = []
    for _ in range(2000):
        t = time.perf_counter()
        sb.redis.ping()
        rtts.append(time.perf_counter() - t)
    keys = []
    for key in sb.redis.scan_iter(match=f"{sb.keys.prefix}:tl:*", count=1000):
        keys.append(key)
        if len(keys) >= 500:
            break
    pipe = sb.redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
        pipe.zcard(key)
    replies = pipe.execute()
    memory, entries = sum(replies[::2]), sum(replies[1::2])
    return {
        "redis_rtt_p50_us": 1e6 * statistics.median(rtts),
        "redis_rtt_p99_us": 1e6 * percentile(rtts, 99),
        "redis_timelines_sampled": len(keys),
        "redis_bytes_per_timeline_entry": memory / max(1, entries),
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _interrupt(signum: int, _frame: object) -> None:
    # Once: a second signal (a process group's TERM plus `timeout` passing it on) must not
    # cut the sandbox's clean-up short.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run it; SIGTERM or Ctrl-C stops it after dropping its sandbox (exit 130)."""
    for sig in (signal.SIGTERM, signal.SIGINT):  # a background shell job ignores SIGINT
        signal.signal(sig, _interrupt)
    try:
        run(argv)
    except KeyboardInterrupt as stopped:
        print(f"bench.fanout: stopped ({stopped or 'SIGINT'}); its sandbox was dropped",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
