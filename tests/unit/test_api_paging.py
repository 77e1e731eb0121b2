"""Keyset paging over merged newest-first listings, with plain data."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from feedline.stores import feed_reader
from feedline.stores.feed_items import (
    Position,
    PostView,
    SourcePage,
    merge_sources,
    newest_first,
)
from feedline.stores.feed_reader import FeedReader
from tests.support.fake_store import FakeStore


def test_order_is_time_then_id_bytes_descending() -> None:
    listing = newest_first([Position(1, "a"), Position(2, "c"), Position(1, "b"),
                            Position(1, "B"), Position(1, "a")])  # "a" twice: listed once
    assert listing == [Position(2, "c"), Position(1, "b"), Position(1, "a"), Position(1, "B")]
    assert Position(2, "a").precedes(Position(1, "z"))
    assert Position(1, "b").precedes(Position(1, "a"))
    assert not Position(1, "a").precedes(Position(1, "a"))


def test_a_truncated_source_bounds_the_merge() -> None:
    full = SourcePage([Position(10, "a"), Position(5, "b"), Position(1, "c")], complete=True)
    cut = SourcePage([Position(9, "x"), Position(6, "y")], complete=False)
    merged, more = merge_sources([full, cut])
    # Past (6, y) the cut source may hold entries that sort between: stop there.
    assert merged == [Position(10, "a"), Position(9, "x"), Position(6, "y")]
    assert more


def test_complete_sources_merge_whole_and_dedupe() -> None:
    a = SourcePage([Position(3, "p3"), Position(1, "p1")], complete=True)
    b = SourcePage([Position(3, "p3"), Position(2, "p2")], complete=True)
    assert merge_sources([a, b]) == ([Position(3, "p3"), Position(2, "p2"),
                                      Position(1, "p1")], False)


def _read_all(reader: FeedReader, user: str, limit: int,
              between_pages: Callable[[], None]) -> list[str]:
    seen: list[str] = []
    after: Position | None = None
    for _ in range(1000):
        page = asyncio.run(reader.home(user, after, limit))
        assert len(page.items) <= limit
        assert page.degraded == "redis"  # no cache in this reader
        seen.extend(item.post_id for item in page.items)
        between_pages()
        after = page.next
        if after is None:
            return seen
    raise AssertionError("paging did not end")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3), st.integers(0, 80), st.integers(1, 12), st.sampled_from([0, 1, 10]),
       st.integers(0, 2**32))
def test_store_feed_pages_have_no_gaps_no_duplicates_and_no_deleted_posts(
        n_celebrities: int, n_posts: int, limit: int, slack: int, seed: int) -> None:
    rng = random.Random(seed)
    store = FakeStore()
    celebrities = [f"c{n}" for n in range(n_celebrities)]
    store.celebrity_ids = set(celebrities) | {"c-not-followed"}
    store.following["me"] = {*celebrities, "c-not-followed-either", "friend"}
    authors = ["friend", *celebrities, "c-not-followed"]
    counter = iter(range(10**6))

    def publish(created_ms: int) -> None:
        n = next(counter)
        author = rng.choice(authors)
        p = Position(created_ms, f"p{n:05d}")
        store.user_posts.setdefault(author, []).append(p)
        if author == "friend" or (author in celebrities and rng.random() < 0.3):
            store.timelines.setdefault("me", []).append(p)  # fanned out (maybe before fame)
        if rng.random() < 0.15:
            return  # deleted: in the listings, not live
        store.live[p.post_id] = PostView(p.post_id, author, "", (), created_ms)

    for _ in range(n_posts):
        publish(rng.randint(0, 30))  # many equal timestamps: ties are decided by id
    visible = {p.post_id for a in ["friend", *celebrities] for p in store.user_posts.get(a, [])
               if p.post_id in store.live}
    expected = [p.post_id for p in newest_first(
        p for a in ["friend", *celebrities] for p in store.user_posts.get(a, [])
        if p.post_id in visible)]
    clock = iter(range(1000, 10**6))
    reader = FeedReader(None, store, timeline_cap=800)  # type: ignore[arg-type]
    saved, feed_reader.SLACK = feed_reader.SLACK, slack  # small slack: more cut-short slices
    try:
        seen = _read_all(reader, "me", limit, lambda: publish(next(clock)))
    finally:
        feed_reader.SLACK = saved
    assert seen == expected  # everything present at the start, once, newest first
