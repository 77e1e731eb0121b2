"""Benchmark: realtime push and notifications, end to end (issue 13).

    .venv/bin/python -m bench.push [--rounds 30] [--background 0] [--streams 2000] [--out PATH]

Needs the running stack with its jobs (``make run``, or ``feedctl local up`` and ``feedctl
jobs deploy all``) and its media worker.

1. ``latency``: a follower F of an author A holds ``GET /v1/stream`` on the stack's API, and
   so does A. Each round A posts (a ready photo) and F's ``feed`` event for that post is
   timed from the moment the ``POST /v1/posts`` was sent; then a third user likes the post
   and A's ``notification`` event for ``like:POST`` is timed from the ``PUT .../like``.
   ``--rounds`` of each, one at a time; p50/p99. With ``--background N``, N posts a second
   of a workload (its follow graph produced first) go to Kafka meanwhile; the deliveries
   per second they cause are reported.
2. ``streams``: a separate API process (uvicorn, one worker, on the stack's stores) holds
   ``--streams`` streams of distinct users, opened over plain sockets; its resident memory
   before and after gives the memory per stream, and one stream past
   ``api.stream_max_per_worker`` must be refused (503).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse
from PIL import Image

from bench.common import StackApi, emit, percentile, say
from bench.procs import StackMemory
from bench.serve import free_port, start_api, stop_api
from feedline.settings import ApiSettings, StreamingSettings, get_stack_settings
from feedline.workload import Workload, WorkloadSpec
from jobs.load import produce
from serving.auth import issue_token


def summary(took: list[float]) -> dict[str, Any]:
    return {"n": len(took), "p50_s": round(percentile(took, 0.5), 3),
            "p99_s": round(percentile(took, 0.99), 3), "max_s": round(max(took), 3),
            "mean_s": round(statistics.fmean(took), 3)}


def ready_photo(client: StackApi, user: str) -> str:
    """Upload, complete and wait for a small photo; its media id."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(buffer, "JPEG")
    media_id = client.upload(user, buffer.getvalue())
    client.complete(user, media_id)
    client.wait_ready(user, media_id, timeout_s=120, poll_s=0.05)
    return media_id


class Listener:
    """One user's SSE stream in a thread: when each (event, key) was first seen."""

    def __init__(self, client: StackApi, user: str) -> None:
        self.client, self.user = client, user
        self.seen: dict[tuple[str, str], float] = {}
        self.opened = threading.Event()
        self.stop = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"sse-{user}")
        self.thread.start()
        if not self.opened.wait(30):
            raise RuntimeError(f"the stream of {user} did not open")

    def _run(self) -> None:
        with httpx.Client(base_url=self.client.base_url, timeout=httpx.Timeout(60, read=None)) \
                as http, connect_sse(http, "GET", "/v1/stream",
                                     headers=self.client.headers(self.user)) as source:
            source.response.raise_for_status()
            self.opened.set()
            for event in source.iter_sse():
                if self.stop:
                    return
                if not event.data:
                    continue
                data = orjson.loads(event.data)
                key = data.get("post_id") if event.event == "feed" else data.get("group_key")
                with self.cond:
                    self.seen.setdefault((event.event, str(key)), time.monotonic())
                    self.cond.notify_all()

    def wait(self, event: str, key: str, timeout_s: float = 120) -> float:
        """When (event, key) arrived; waits for it."""
        with self.cond:
            if not self.cond.wait_for(lambda: (event, key) in self.seen, timeout_s):
                raise RuntimeError(f"no {event} {key} at {self.user} within {timeout_s} s")
            return self.seen[(event, key)]


def wait_applied(client: StackApi, author: str, followers: int) -> None:
    deadline = time.monotonic() + 120
    while client.call("GET", f"/v1/users/{author}", author).get("followers", 0) < followers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the follow of {author} was not applied within 120 s")
        time.sleep(0.1)


class Background:
    """``rate`` workload posts a second to Kafka, in a thread; the deliveries they cause."""

    def __init__(self, streaming: StreamingSettings, rate: float, seed: int = 5) -> None:
        spec = WorkloadSpec(users=4000, posts=200_000, mean_followers=40, max_followers=400,
                            likes_per_post=0, comments_per_post=0, post_delete_share=0.0,
                            unfollow_share=0.0, seed=seed)
        workload = Workload(spec)
        self.follows = list(workload.graph())
        self.posts = [p for p in workload.activity() if p.event.event_type == "post_created"]
        self.followers = {author: len(fans) for author, fans in workload.followers.items()}
        self.kafka = streaming.kafka
        self.rate = rate
        self.sent = 0
        self.deliveries = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="background")

    def seed_graph(self) -> None:
        say(f"background: producing {len(self.follows):,} follows ...")
        produce(self.kafka, self.follows)
        subprocess.run([sys.executable, "-m", "jobs.feedctl.main", "jobs", "wait",
                        "--timeout", "900"], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self.began = time.monotonic()
        self.thread.start()

    def _run(self) -> None:
        def until_stopped() -> Any:
            for post in self.posts:
                if self.stop.is_set():
                    return
                yield post

        def sent(post: Any, _at: float) -> None:
            self.sent += 1
            self.deliveries += self.followers.get(post.key, 0)

        produce(self.kafka, until_stopped(), rate=self.rate, on_send=sent)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(timeout=30)
        took = time.monotonic() - self.began
        return {"posts_per_s": round(self.sent / took, 1),
                "deliveries_per_s": round(self.deliveries / took)}


def latency(client: StackApi, rounds: int, tag: str) -> dict[str, Any]:
    author, follower, fan = f"pa{tag}", f"pf{tag}", f"pl{tag}"
    client.call("PUT", f"/v1/users/{author}/follow", follower)
    wait_applied(client, author, 1)
    media = [ready_photo(client, author) for _ in range(rounds)]
    say(f"{rounds} photos ready; streams of {follower} and {author} open")
    at_follower, at_author = Listener(client, follower), Listener(client, author)
    feed, note = [], []
    try:
        for i, media_id in enumerate(media):
            sent = time.monotonic()
            post = client.call("POST", "/v1/posts", author,
                               json={"caption": f"round {i}", "media_ids": [media_id]})
            post_id = str(post["post_id"])
            feed.append(at_follower.wait("feed", post_id) - sent)
            sent = time.monotonic()
            client.call("PUT", f"/v1/posts/{post_id}/like", fan)
            note.append(at_author.wait("notification", f"like:{post_id}") - sent)
            say(f"round {i + 1}/{rounds}: feed event {feed[-1]:.3f} s, "
                f"notification {note[-1]:.3f} s")
            time.sleep(0.5)
    finally:
        at_follower.stop = at_author.stop = True
    return {"post_to_feed_event": summary(feed), "like_to_notification_event": summary(note)}


async def _open_stream(port: int, token: str) -> tuple[int, asyncio.StreamWriter | None]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        writer.close()
        return status, None
    asyncio.get_running_loop().create_task(_drain(reader))
    return status, writer


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):
        pass


async def _hold(port: int, tokens: list[str], extra: str, proc_pid: int) -> dict[str, Any]:
    memory_before = StackMemory._tree_rss_mb(proc_pid)
    writers = []
    statuses: dict[int, int] = {}
    for start in range(0, len(tokens), 100):
        opened = await asyncio.gather(*(_open_stream(port, t) for t in tokens[start:start + 100]))
        for status, writer in opened:
            statuses[status] = statuses.get(status, 0) + 1
            if writer is not None:
                writers.append(writer)
        if start % 500 == 0:
            say(f"streams open: {len(writers):,}")
    await asyncio.sleep(5)
    memory_after = StackMemory._tree_rss_mb(proc_pid)
    past, spare = await _open_stream(port, extra)
    if spare is not None:
        spare.close()
    for writer in writers:
        writer.close()
    held = len(writers)
    return {"requested": len(tokens), "held": held, "statuses": statuses,
            "one_more": past, "rss_before_mb": round(memory_before, 1),
            "rss_after_mb": round(memory_after, 1),
            "kb_per_stream": round((memory_after - memory_before) * 1024 / max(held, 1), 1)}


def streams(count: int) -> dict[str, Any]:
    stack = get_stack_settings()
    api = ApiSettings(stream_max_per_worker=count, rate_limit_per_minute=1_000_000)
    env = {"FEEDLINE_ENVIRONMENT": "dev", "FEEDLINE_KAFKA": stack.kafka.model_dump_json(),
           "FEEDLINE_CQL": stack.cql.model_dump_json(),
           "FEEDLINE_REDIS": stack.redis.model_dump_json(),
           "FEEDLINE_STORAGE": stack.storage.model_dump_json(),
           "FEEDLINE_FEED": stack.feed.model_dump_json(), "FEEDLINE_API": api.model_dump_json()}
    tag = uuid.uuid4().hex[:6]
    tokens = [issue_token(api.jwt_secret, f"s{tag}{i:05d}", ttl_s=3600, issuer=api.jwt_issuer,
                          audience=api.jwt_audience) for i in range(count + 1)]
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"bench-push-api-{tag}.log"
    with tempfile.TemporaryDirectory() as metrics_dir:
        proc = start_api({**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}, port, 1, log)
        try:
            return asyncio.run(_hold(port, tokens[:count], tokens[count], proc.pid))
        finally:
            stop_api(proc)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints and optionally writes JSON."""
    parser = argparse.ArgumentParser(prog="bench.push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--background", type=float, default=0.0, metavar="POSTS_PER_S",
                        help="workload posts a second produced meanwhile (0: none)")
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--skip", choices=["latency", "streams"], action="append", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    stack = get_stack_settings()
    results: dict[str, Any] = {"benchmark": "push", "host": platform.node(),
                               "cpus": os.cpu_count(), "python": platform.python_version(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    tag = uuid.uuid4().hex[:6]
    if "latency" not in args.skip:
        client = StackApi(stack.api)
        background = None
        if args.background > 0:
            from feedline.settings import get_streaming_settings

            background = Background(get_streaming_settings(), args.background)
            background.seed_graph()
            background.start()
        try:
            results["latency"] = latency(client, args.rounds, tag)
        finally:
            if background is not None:
                results["background"] = background.finish()
        say(f"latency: {results['latency']}")
    if "streams" not in args.skip:
        results["streams"] = streams(args.streams)
        say(f"streams: {results['streams']}")
    return emit(results, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
