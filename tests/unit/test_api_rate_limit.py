from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedline.stores.request_guards import retry_after, window_position

WINDOW = 60


def allowed(limit: int, current: int, previous: int, elapsed: float) -> bool:
    """The script's decision (sliding-window estimate below the limit)."""
    return previous * (1 - elapsed / WINDOW) + current < limit


def state_after(wait: float, current: int, previous: int, elapsed: float) -> tuple[int, int,
                                                                                   float]:
    """Counters seen after waiting ``wait`` seconds with no requests."""
    t = elapsed + wait
    if t < WINDOW:
        return current, previous, t
    if t < 2 * WINDOW:
        return 0, current, t - WINDOW
    return 0, 0, t % WINDOW


def test_window_position() -> None:
    assert window_position(125.5, 60) == (2, pytest.approx(5.5))


@given(st.integers(1, 1000), st.integers(0, 3000), st.integers(0, 3000),
       st.floats(0, WINDOW - 1e-6))
def test_retry_after_is_long_enough_and_not_much_longer(limit: int, current: int,
                                                         previous: int, elapsed: float) -> None:
    if allowed(limit, current, previous, elapsed):
        return
    wait = retry_after(limit, current, previous, elapsed, WINDOW)
    assert wait >= 1
    assert allowed(limit, *state_after(wait, current, previous, elapsed))
    if wait > 1:  # one second less would still be refused (the hint is tight)
        assert not allowed(limit, *state_after(wait - 1.01, current, previous, elapsed))


def test_examples() -> None:
    # 10/min, 10 requests in this window: wait until just past the window's end.
    assert retry_after(10, 10, 0, 15.0, WINDOW) == 46  # 45 s on, the estimate is still 10
    # 10/min, 6 now and 10 last window at 30 s in: estimate 11; at 36+ s it is below 10.
    assert retry_after(10, 6, 10, 30.0, WINDOW) == 7
