from __future__ import annotations

from feedline.rules.dedup import RecentEvents


def test_repeated_id_is_a_duplicate_and_new_ids_are_not() -> None:
    recent = RecentEvents(window_ms=1000)
    assert recent.check_and_add("a", 100) is False
    assert recent.check_and_add("a", 100) is True
    assert recent.check_and_add("b", 101) is False


def test_window_and_count_bound_the_memory() -> None:
    recent = RecentEvents(window_ms=1000, max_ids=10)
    for i in range(100):
        recent.check_and_add(f"e{i}", i * 500)  # 500 ms apart: only ~2 fit the window
    assert len(recent.ids) <= 10
    assert recent.check_and_add("e99", 99 * 500) is True  # the newest is remembered
    assert recent.check_and_add("e0", 0) is False  # long gone: treated as new


def test_count_bound_holds_when_everything_is_inside_the_window() -> None:
    recent = RecentEvents(window_ms=10**9, max_ids=8)
    for i in range(50):
        recent.check_and_add(f"e{i}", i)
    assert len(recent.ids) <= 8
    assert recent.check_and_add("e49", 49) is True
