"""page.lua's walk in Python (``feedline.stores.page_walk``), on plain windows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from feedline.stores.feed_items import Position
from feedline.stores.page_walk import Bound, Hash, Window, bound_of, precedes, walk, walk_order


def w(shape: str, *entries: tuple[float, str]) -> Window:
    return Window(tuple(entries), shape)  # type: ignore[arg-type]


class Hashes:
    """A hydrate callable over a dict; records each call's ids."""

    def __init__(self, missing: Sequence[str] = ()) -> None:
        self.missing = set(missing)
        self.calls: list[list[str]] = []

    async def __call__(self, post_ids: Sequence[str]) -> dict[str, Hash | None]:
        self.calls.append(list(post_ids))
        return {p: None if p in self.missing else ("a", "", "[]", "0", "0") for p in post_ids}


def test_a_reply_becomes_a_window() -> None:
    window = Window.from_reply("part", ["p2", "20", "p1", "10"])
    assert window == w("part", (20.0, "p2"), (10.0, "p1"))
    with pytest.raises(ValueError, match="shape"):
        Window.from_reply("odd", [])


def test_ids_compare_as_bytes_at_one_score() -> None:
    assert precedes((1.0, "é"), (1.0, "z"))  # 0xC3 > 0x7A, whatever the locale says
    assert precedes((2.0, "a"), (1.0, "z"))
    order = walk_order([w("whole", (1.0, "é"), (1.0, "a")), w("whole", (1.0, "z"))], None)
    assert [m for _, m in order] == ["é", "z", "a"]


def test_the_tightest_bound_wins_and_the_first_window_on_a_tie() -> None:
    windows = [w("truncated", (30.0, "t3"), (20.0, "t2")), w("part", (25.0, "o1"))]
    assert bound_of(windows, None) == Bound(25.0, "o1", "deep")  # the walk stops first there
    tied = [w("truncated", (30.0, "t3"), (20.0, "t2")), w("part", (20.0, "t2"))]
    assert bound_of(tied, None) == Bound(20.0, "t2", "continue")
    assert bound_of(tied[::-1], None) == Bound(20.0, "t2", "deep")
    assert bound_of([w("part")], Position(5, "c")) == Bound(5.0, "c", "deep")
    assert bound_of([w("part")], None) is None
    assert bound_of([w("whole", (1.0, "x"))], None) is None


def test_the_walk_stops_at_the_bound_with_its_status() -> None:
    windows = [w("whole", (30.0, "t3"), (10.0, "t1")), w("part", (20.0, "o2"))]
    walked = asyncio.run(walk(windows, None, 10, Hashes(), batch=10))
    assert [e[0][1] for e in walked.entries] == ["t3", "o2"]
    assert walked.status == "deep" and walked.last == (20.0, "o2")


def test_more_once_the_limit_is_hydrated_and_hashless_posts_do_not_count() -> None:
    windows = [w("whole", (5.0, "p5"), (4.0, "p4"), (3.0, "p3"), (2.0, "p2"), (1.0, "p1"))]
    hashes = Hashes(missing=["p4"])
    walked = asyncio.run(walk(windows, None, 2, hashes, batch=3))
    assert [(e[0][1], e[1] is None) for e in walked.entries] == [
        ("p5", False), ("p4", True), ("p3", False)]
    assert walked.status == "more" and walked.last == (3.0, "p3")
    assert hashes.calls == [["p5", "p4", "p3"]]  # one batch in walk order


def test_a_duplicate_is_walked_once_and_a_short_batch_asks_again() -> None:
    windows = [w("whole", (3.0, "p3"), (2.0, "p2")), w("whole", (3.0, "p3"), (1.0, "p1"))]
    hashes = Hashes(missing=["p3"])
    walked = asyncio.run(walk(windows, None, 2, hashes, batch=1))
    assert [e[0][1] for e in walked.entries] == ["p3", "p2", "p1"]
    assert walked.status == "end" and walked.last == (1.0, "p1")
    assert hashes.calls == [["p3", "p2"], ["p1"]]


def test_nothing_walked_ends_without_a_last_entry() -> None:
    walked = asyncio.run(walk([w("whole")], None, 3, Hashes(), batch=3))
    assert walked.status == "end" and walked.last is None and walked.entries == ()
