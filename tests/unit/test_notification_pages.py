"""Notification pages over a newest-first list (the CQL path): keyset order with ties on
the time, the per-recipient cap, unread flags."""

from __future__ import annotations

from feedline.stores.feed_items import Position
from feedline.stores.notification_reader import _Group, page_of


def groups(n: int) -> list[_Group]:
    # Newest first by (latest_ms DESC, group_key DESC); pairs share a time.
    out = [_Group(f"like:p{i:03d}", "like", f"p{i:03d}", 1, ("a",), 1_000 + i // 2)
           for i in range(n)]
    return sorted(out, key=lambda g: (g.latest_ms, g.group_key.encode()), reverse=True)


def walk(all_groups: list[_Group], limit: int, cap: int) -> list[str]:
    seen: list[str] = []
    after = None
    for _ in range(1000):
        page, more = page_of(all_groups, after, limit, cap)
        seen.extend(g.group_key for g in page)
        if not more:
            return seen
        after = Position(page[-1].latest_ms, page[-1].group_key)
    raise AssertionError("no end")


def test_paging_visits_every_group_once_in_order() -> None:
    everything = groups(23)
    for limit in (1, 2, 5, 23, 50):
        assert walk(everything, limit, cap=500) == [g.group_key for g in everything]


def test_nothing_past_the_cap_is_served() -> None:
    everything = groups(30)
    for limit in (1, 4, 7, 10, 11):
        assert walk(everything, limit, cap=10) == [g.group_key for g in everything[:10]]
    last_visible = everything[9]
    after = Position(last_visible.latest_ms, last_visible.group_key)
    assert page_of(everything, after, 5, cap=10) == ([], False)


def test_unread_is_newer_than_the_marker() -> None:
    group = _Group("follow:2026-11-30", "follow", None, 2, ("b", "a"), 5_000)
    assert group.item(None).unread and group.item(4_999).unread
    assert not group.item(5_000).unread and not group.item(9_000).unread
