"""Recently seen event ids of one key, bounded by event time and by count.

Kept inside the key's rules state (one state object per key), so checking for a
duplicate costs no extra state access. Events older than the window, or pushed out by
the count bound, are not recognised as duplicates — the rules are idempotent, so that
only costs the work of applying them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecentEvents:
    """Event ids seen within ``window_ms`` of the newest event, at most ``max_ids``."""

    window_ms: int
    max_ids: int = 2048
    ids: dict[str, int] = field(default_factory=dict)
    """event_id -> event_time_ms, in insertion order."""
    newest_ms: int = 0

    def check_and_add(self, event_id: str, event_time_ms: int) -> bool:
        """True when ``event_id`` was seen recently (a duplicate); else remember it."""
        if event_id in self.ids:
            return True
        self.ids[event_id] = event_time_ms
        self.newest_ms = max(self.newest_ms, event_time_ms)
        if len(self.ids) > self.max_ids:
            self._prune()
        return False

    def _prune(self) -> None:
        horizon = self.newest_ms - self.window_ms
        kept = {e: t for e, t in self.ids.items() if t >= horizon}
        # Still too many: keep the most recently inserted half of the bound.
        if len(kept) > self.max_ids:
            kept = dict(list(kept.items())[-(self.max_ids // 2):])
        self.ids = kept
