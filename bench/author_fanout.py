"""Benchmark: one post's fan-out for an author with many followers, in process.

    .venv/bin/python -m bench.author_fanout [--followers 100000] [--out PATH]

An author gets ``--followers`` follows (the celebrity threshold raised above that, so the
author stays fanned out on write) and has ``--posts`` older posts, then posts. Measured
the way the fan-out job keeps the author's state, in two layouts, with the shared rules
(``feedline.rules.fanout``):

* ``map_state`` (the job's layout, ``pipelines.streaming.fanout_state``): the summary
  pickled in a value, one pickled entry per follower in a map state. A post unpickles the
  summary, walks the entries once (each unpickled, as a map state read from the state
  backend is), applies the rules and pickles the summary back; a follow reads and writes
  its follower's entry.
* ``one_object`` (the layout before): the whole ``AuthorState`` in one value, pickled
  back after each event (PyFlink pickles a touched value once per bundle, which for one
  author's events, minutes apart, is once per event). Measured: the rules on the object
  held in memory plus that pickle.

Per layout: seconds for the post (median of ``--rounds`` posts), the peak of memory
allocated during one post (tracemalloc, a separate post), the bytes stored per event, and
the median seconds of a follow. ``deliveries`` is the post's timeline adds. Prints JSON
and writes it to ``--out``. No services are needed.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedline.rules.effects import Effect, TimelineAdd
from feedline.rules.fanout import (
    AuthorState,
    PostState,
    RulesConfig,
    apply_follow_change,
    apply_post_created,
)
from pipelines.streaming.fanout_state import attach_edges, detach_edges

BASE_MS = 1_780_000_000_000
AUTHOR = "author"


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class PickledMapState:
    """A map state holding pickles, like a state backend's entries (no read cache)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.gets = 0
        self.puts = 0
        self.put_bytes = 0

    def get(self, key: str) -> Any:
        """One entry, unpickled."""
        self.gets += 1
        raw = self.data.get(key)
        return None if raw is None else pickle.loads(raw)  # noqa: S301  # pickled here

    def put(self, key: str, value: Any) -> None:
        """Store one entry."""
        self.puts += 1
        self.data[key] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self.put_bytes += len(self.data[key])

    def remove(self, key: str) -> None:
        """Drop one entry."""
        self.data.pop(key, None)

    def keys(self) -> Iterator[str]:
        """The entries' keys."""
        return iter(self.data)

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every entry, unpickled."""
        for key, raw in self.data.items():
            yield key, pickle.loads(raw)  # noqa: S301  # pickled here


def add_old_posts(rules: AuthorState, count: int) -> None:
    """Put ``count`` posts from before the follows in the state (directly: their fan-out
    is not what is measured)."""
    for i in range(count):
        post_id = f"old{i:06d}"
        version = (BASE_MS - (count - i) * 60_000, f"post-{post_id}")
        rules.posts[post_id] = PostState(created=version)
        rules.order.append((version[0], post_id))


class MapLayout:
    """The author as the fan-out job keeps it: pickled summary + map state of edges."""

    def __init__(self) -> None:
        self.summary = pickle.dumps(AuthorState(AUTHOR))
        self.edges = PickledMapState()
        self.stored_bytes = 0
        """Bytes written to state by the last event (the summary and changed entries)."""

    def event(self, apply: Callable[[AuthorState], list[Effect]]) -> list[Effect]:
        """One event: read the summary, attach the edges, apply, write back."""
        written = self.edges.put_bytes
        rules = pickle.loads(self.summary)  # noqa: S301  # pickled here
        view, _ = attach_edges(rules, self.edges)
        effects = apply(rules)
        detach_edges(rules, view)
        self.summary = pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL)
        self.stored_bytes = len(self.summary) + self.edges.put_bytes - written
        return effects


class OneObjectLayout:
    """The author as one object, pickled whole after each event."""

    def __init__(self) -> None:
        self.rules = AuthorState(AUTHOR)
        self.stored_bytes = 0

    def event(self, apply: Callable[[AuthorState], list[Effect]]) -> list[Effect]:
        """One event on the object in memory, then the pickle its ValueState stores."""
        effects = apply(self.rules)
        self.stored_bytes = len(pickle.dumps(self.rules, protocol=pickle.HIGHEST_PROTOCOL))
        return effects


def follow(follower: str, second: int, config: RulesConfig) -> Callable[[AuthorState], list]:
    """A follow of the author as a rules call."""
    def apply(rules: AuthorState) -> list[Effect]:
        return apply_follow_change(rules, follower_id=follower, version=(
            BASE_MS + second * 1000, f"follow-{follower}"), follow=True, config=config)
    return apply


def post(post_id: str, second: int, config: RulesConfig) -> Callable[[AuthorState], list]:
    """A post by the author as a rules call."""
    def apply(rules: AuthorState) -> list[Effect]:
        return apply_post_created(rules, post_id=post_id, version=(
            BASE_MS + second * 1000, f"post-{post_id}"), caption="", media=(), config=config)
    return apply


def measure(layout: Any, followers: int, posts: int, rounds: int, follow_samples: int,
            config: RulesConfig) -> dict[str, Any]:
    """Build the author, then time posts and follows and take one post's memory peak."""
    started = time.monotonic()
    if isinstance(layout, OneObjectLayout):  # built in memory: pickling 100,000 times is
        for i in range(followers):           # what this layout costs, not what we measure
            follow(f"u{i:07d}", 0, config)(layout.rules)
    else:
        for i in range(followers):
            layout.event(follow(f"u{i:07d}", 0, config))

    def old_posts(rules: AuthorState) -> list[Effect]:
        add_old_posts(rules, posts)
        return []

    layout.event(old_posts)
    say(f"{type(layout).__name__}: {followers:,} followers in {time.monotonic() - started:.1f}s")
    post_s, deliveries = [], 0
    for r in range(rounds):
        t0 = time.perf_counter()
        effects = layout.event(post(f"p{r}", 10 + r, config))
        post_s.append(time.perf_counter() - t0)
        deliveries = sum(1 for e in effects if isinstance(e, TimelineAdd))
        del effects
    post_bytes = layout.stored_bytes
    tracemalloc.start()
    effects = layout.event(post("p-mem", 100, config))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del effects
    follow_s = []
    for i in range(follow_samples):
        t0 = time.perf_counter()
        layout.event(follow(f"new{i:05d}", 200 + i, config))
        follow_s.append(time.perf_counter() - t0)
    out: dict[str, Any] = {
        "post_s": round(statistics.median(post_s), 4),
        "post_s_runs": [round(s, 4) for s in post_s],
        "post_peak_mib": round(peak / 2**20, 1),
        "post_stored_bytes": post_bytes,
        "follow_s": round(statistics.median(follow_s), 5),
        "follow_stored_bytes": layout.stored_bytes,
        "deliveries": deliveries,
    }
    if isinstance(layout, MapLayout):
        out["edge_entries"] = len(layout.edges.data)
        out["edge_entry_bytes"] = sum(len(v) for v in layout.edges.data.values())
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints and optionally writes JSON."""
    parser = argparse.ArgumentParser(prog="bench.author_fanout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="posts timed per layout")
    parser.add_argument("--follow-samples", type=int, default=20)
    parser.add_argument("--posts", type=int, default=1000,
                        help="older posts the author has already (kept in the summary)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    config = RulesConfig(celebrity_threshold=args.followers + 1)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "followers": args.followers,
        "celebrity_threshold": config.celebrity_threshold,
        "older_posts": args.posts,
    }
    for name, layout in (("map_state", MapLayout()), ("one_object", OneObjectLayout())):
        results[name] = measure(layout, args.followers, args.posts, args.rounds,
                                args.follow_samples, config)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
