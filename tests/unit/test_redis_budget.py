"""The Redis time budget of a home feed read: a cache that does not answer costs the budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from feedline.stores.feed_items import Position, PostView
from feedline.stores.feed_reader import REDIS_DOWN, FeedReader, RedisBudget
from tests.support.fake_store import FakeStore


class HangingCache:
    """A cache whose every call waits forever (a Redis far slower than any budget)."""

    def __init__(self) -> None:
        self.calls = 0

    async def _hang(self, *_args: Any, **_kwargs: Any) -> Any:
        self.calls += 1
        await asyncio.Event().wait()

    page = repair = repair_outbox = post_views = _hang


def test_a_call_within_the_budget_returns_and_spends_it() -> None:
    budget = RedisBudget(30.0)

    async def answer(value: int) -> int:
        return value

    assert asyncio.run(budget.call(answer, 7)) == 7
    assert 0 < budget.left_s <= 30.0


def test_a_call_past_the_budget_is_a_redis_failure_and_the_rest_is_refused() -> None:
    budget = RedisBudget(0.05)
    cache = HangingCache()
    with pytest.raises(REDIS_DOWN):
        asyncio.run(budget.call(cache.page))
    assert budget.left_s <= 0
    with pytest.raises(TimeoutError):
        asyncio.run(budget.call(cache.page))
    assert cache.calls == 1  # a spent budget does not even start the call


def test_a_hanging_cache_gives_the_store_page_marked_degraded() -> None:
    store = FakeStore()
    store.following["me"] = {"friend"}
    posts = [Position(n, f"p{n}") for n in range(1, 6)]
    store.timelines["me"] = posts
    store.live = {p.post_id: PostView(p.post_id, "friend", "", (), p.created_ms)
                  for p in posts}
    cache = HangingCache()
    reader = FeedReader(cache, store, timeline_cap=800,  # type: ignore[arg-type]
                        redis_budget_s=0.05)
    page = asyncio.run(reader.home("me", None, 3))
    assert [item.post_id for item in page.items] == ["p5", "p4", "p3"]
    assert page.degraded == "redis"
    assert not reader.breaker.allows()  # the next reads skip Redis for a while
