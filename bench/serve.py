"""Benchmark: home-feed reads per second and latency over HTTP.

    .venv/bin/python -m bench.serve [--workers 1 2] [--duration 20] [--out FILE]

(the stack must be up: `feedctl local up`; wrk from Debian: `apt-get install -y wrk`).

1. seed an isolated Redis prefix (and an empty throwaway keyspace for the API's fallbacks)
   with 10,000 users' home timelines of up to 800 entries (log-normal sizes), hydrated
   post hashes and counters, and a few followed celebrities per user (outboxes merged
   at read time), like the streaming jobs write them;
2. start uvicorn with the real app (``serving.main:create_app``, production settings: JWT
   auth, per-user rate limit, metrics, JSON access log) in a separate process;
3. with wrk on the same machine, each request carrying the token of a random seeded
   user: ``GET /v1/feed?limit=25`` flat out, ``GET /healthz`` flat out (the trivial
   endpoint of the same app), and feed reads paced at ~1,000/s for the latency target.

Prints JSON (and writes it to --out). Targets: >= 3,000 feed reads/s; p99 <= 10 ms at
1,000 reads/s; feed throughput >= 50% of /healthz's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

from bench.common import emit
from feedline.rules.effects import MediaRef, PostUpsert
from feedline.settings import ApiSettings, CqlSettings, RedisSettings, get_stack_settings
from feedline.stores.cluster_writes import delete_keys
from feedline.stores.cql import drop_keyspace, migrate
from jobs.localstack.base import free_port
from schemas.redis_hashes import encode_post, encode_post_counters, encode_user_counters
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys
from serving.auth import issue_token

USERS = 10_000
CAP = 800
POSTS = 200_000
CELEBRITIES = 50
TOKENS = 2_000
NOW_MS = 1_795_000_000_000


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seed(client: redis.Redis, keys: RedisKeys, rng: random.Random) -> dict[str, Any]:
    """Timelines, outboxes, post hashes and counters, written with pipelines."""
    started = time.monotonic()
    created = [NOW_MS - rng.randint(0, 30 * 86_400_000) for _ in range(POSTS)]
    authors = [f"u{rng.randrange(USERS):05d}" for _ in range(POSTS)]
    pipe = client.pipeline(transaction=False)
    for n in range(POSTS):
        post_id = f"bp{n:06d}"
        media = tuple(MediaRef(f"m{n:06d}{k}", "image/jpeg",
                               f"gs://feedline-media/media/m{n:06d}{k}")
                      for k in range(1 + (n % 3 == 0)))
        caption = f"caption of post {n} " + "lorem ipsum " * rng.randint(0, 8)
        post = PostUpsert(post_id, authors[n], created[n], caption, media, f"bench{n:06d}")
        pipe.hset(keys.post(post_id), mapping=encode_post(post))
        pipe.hset(keys.post_counters(post_id),
                  mapping=encode_post_counters(rng.randint(0, 500), rng.randint(0, 40)))
        if n % 5000 == 4999:
            pipe.execute()
    celebrity_posts = {}
    for c in range(CELEBRITIES):
        author = f"celeb{c:02d}"
        picks = rng.sample(range(POSTS), 300)
        celebrity_posts[author] = picks
        pipe.zadd(keys.outbox(author), {f"bp{n:06d}": created[n] for n in picks})
        pipe.hset(keys.user_counters(author), mapping=encode_user_counters({"posts": 300}))
    pipe.execute()
    entries = 0
    for u in range(USERS):
        user = f"u{u:05d}"
        size = min(CAP, max(20, int(rng.lognormvariate(5.6, 0.7))))
        picks = rng.sample(range(POSTS), size)
        entries += size
        pipe.zadd(keys.timeline(user), {f"bp{n:06d}": created[n] for n in picks})
        followed = rng.sample(range(CELEBRITIES), rng.choice((0, 0, 1, 2, 3)))
        # As a reader leaves the set once it has completed it from the CQL store.
        pipe.sadd(keys.followed_celebrities(user), COMPLETE_MEMBER,
                  *(f"celeb{c:02d}" for c in followed))
        if u % 200 == 199:
            pipe.execute()
    pipe.execute()
    return {"users": USERS, "timeline_entries": entries, "mean_timeline": entries / USERS,
            "posts": POSTS, "celebrities": CELEBRITIES,
            "seconds": round(time.monotonic() - started, 1)}


def start_api(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "uvicorn", "serving.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--no-access-log"]
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"), start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the API did not start; see {log}")


def stop_api(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_WRK_SCRIPT = """
local tokens = {%(tokens)s}
local path = "%(path)s"
local pause = %(pause_ms)s
math.randomseed(%(seed)s)
request = function()
  local token = tokens[math.random(#tokens)]
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end
if pause > 0 then delay = function() return pause end end
local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %%d, "seconds": %%.3f, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "non_2xx": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def wrk(url: str, path: str, tokens: list[str], *, connections: int, duration_s: int,
        pause_ms: int = 0, threads: int = 1) -> dict[str, Any]:
    """One wrk run; returns throughput and latency percentiles (ms)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % {"tokens": ",".join(f'"{t}"' for t in tokens),
                                    "path": path, "pause_ms": pause_ms, "seed": 7})
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s",
                              "--timeout", "5s", "-s", script.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"WRK_JSON (\{.*\})", out)
    if not match:
        raise RuntimeError(f"no wrk summary in:\n{out}")
    raw = json.loads(match.group(1))
    return {"requests": raw["requests"], "rps": round(raw["requests"] / raw["seconds"], 1),
            "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000,
            "non_2xx": raw["non_2xx"], "socket_errors": raw["socket_errors"],
            "connections": connections, "pause_ms": pause_ms}


def check_page(url: str, token: str) -> int:
    """A real page comes back: 25 hydrated posts."""
    request = urllib.request.Request(f"{url}/v1/feed?limit=25",  # noqa: S310 (http only)
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        page = json.loads(response.read())
    assert len(page["items"]) == 25 and page["next_cursor"], page
    assert all(item["media"] and item["created_at"] for item in page["items"])
    return len(page["items"])


def measure(url: str, tokens: list[str], duration_s: int, connections: int) -> dict[str, Any]:
    """Feed flat out, /healthz flat out, feed paced near 1,000/s."""
    wrk(url, "/v1/feed?limit=25", tokens, connections=connections, duration_s=3)  # warm-up
    feed = wrk(url, "/v1/feed?limit=25", tokens, connections=connections,
               duration_s=duration_s)
    say(f"  feed flat out: {feed['rps']:,.0f}/s p50 {feed['p50_ms']:.2f} ms "
        f"p99 {feed['p99_ms']:.2f} ms")
    trivial = wrk(url, "/healthz", tokens, connections=connections, duration_s=duration_s)
    say(f"  /healthz flat out: {trivial['rps']:,.0f}/s p99 {trivial['p99_ms']:.2f} ms")
    # Closed loop with think time: c connections pausing p ms after each answer make
    # c / (p + latency) requests/s; a short run measures the latency to pick p for 1,000/s.
    connections, target = 20, 1000.0
    probe = wrk(url, "/v1/feed?limit=25", tokens, connections=connections, pause_ms=17,
                duration_s=5)
    latency_ms = max(0.0, connections / probe["rps"] * 1000 - 17)
    pause_ms = max(1, round(connections / target * 1000 - latency_ms))
    paced = wrk(url, "/v1/feed?limit=25", tokens, connections=connections, pause_ms=pause_ms,
                duration_s=duration_s)
    say(f"  feed paced: {paced['rps']:,.0f}/s p50 {paced['p50_ms']:.2f} ms "
        f"p99 {paced['p99_ms']:.2f} ms")
    return {"feed": feed, "healthz": trivial, "feed_paced": paced,
            "feed_vs_healthz": round(feed["rps"] / trivial["rps"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.serve: wrk is required (apt-get install -y wrk)", file=sys.stderr)
        return 2
    began = time.monotonic()
    stack = get_stack_settings()
    tag = uuid.uuid4().hex[:8]
    keys = RedisKeys(f"bserve{tag}")
    keyspace = f"bserve_{tag}"
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    rng = random.Random(args.seed)
    results: dict[str, Any] = {"benchmark": "serve", "host": platform.node(),
                               "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        say("seeding Redis ...")
        results["seed"] = seed(client, keys, rng)
        results["redis_used_memory_mb"] = round(
            int(client.info("memory")["used_memory"]) / 2**20, 1)
        migrate(stack.cql, keyspace=keyspace)
        api = ApiSettings(rate_limit_per_minute=1_000_000)
        env = {"FEEDLINE_ENVIRONMENT": "dev",
               "FEEDLINE_KAFKA": stack.kafka.model_dump_json(),
               "FEEDLINE_CQL": CqlSettings(**{**stack.cql.model_dump(),
                                              "keyspace": keyspace}).model_dump_json(),
               "FEEDLINE_REDIS": RedisSettings(url=stack.redis.url,
                                               key_prefix=keys.prefix).model_dump_json(),
               "FEEDLINE_STORAGE": stack.storage.model_dump_json(),
               "FEEDLINE_FEED": stack.feed.model_dump_json(),
               "FEEDLINE_API": api.model_dump_json()}
        users = rng.sample(range(USERS), TOKENS)
        tokens = [issue_token(api.jwt_secret, f"u{u:05d}", ttl_s=3600) for u in users]
        results["runs"] = []
        for workers in args.workers:
            port = free_port()
            with tempfile.TemporaryDirectory() as metrics_dir:
                log = Path(tempfile.gettempdir()) / f"bench-serve-api-{tag}-{workers}.log"
                proc = start_api({**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}, port,
                                 workers, log)
                try:
                    url = f"http://127.0.0.1:{port}"
                    check_page(url, tokens[0])
                    say(f"uvicorn with {workers} worker(s) on :{port}")
                    run = measure(url, tokens, args.duration, args.connections)
                finally:
                    stop_api(proc)
            results["runs"].append({"workers": workers, **run})
        best = max(results["runs"], key=lambda r: r["feed"]["rps"])
        results["targets"] = {
            "feed_reads_per_s>=3000": best["feed"]["rps"] >= 3000,
            "p99_ms<=10_at_1000_per_s": best["feed_paced"]["p99_ms"] <= 10
            and best["feed_paced"]["rps"] >= 950,
            "feed>=50%_of_healthz": best["feed_vs_healthz"] >= 0.5,
        }
        results["best_workers"] = best["workers"]
    finally:
        delete_keys(client, keys.pattern(), batch=5000)
        client.close()
        drop_keyspace(stack.cql, keyspace)
    results["seconds"] = math.ceil(time.monotonic() - began)
    return emit(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
