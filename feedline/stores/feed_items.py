"""What the read path works with: positions in a newest-first listing and hydrated posts.

Feeds and profiles are ordered newest first by ``(created_ms, post_id)`` — the order of the
timeline ZSETs (score, then member bytes) and of the CQL clustering keys
``(created_at DESC, post_id DESC)``. Keyset paging resumes strictly after a position, so
posts arriving meanwhile cause neither duplicates nor gaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from feedline.rules.effects import MediaRef


@dataclass(frozen=True, slots=True)
class Position:
    """Where an entry sits in a newest-first listing."""

    created_ms: int
    post_id: str

    def key(self) -> tuple[int, bytes]:
        """Ascending sort key; listings are sorted by it in reverse (ids compare as bytes)."""
        return (self.created_ms, self.post_id.encode())

    def precedes(self, other: Position) -> bool:
        """True when ``self`` comes strictly before ``other`` (is newer) in a listing."""
        return self.key() > other.key()


@dataclass(frozen=True, slots=True)
class PostView:
    """One hydrated post: payload plus counters."""

    post_id: str
    author_id: str
    caption: str
    media: tuple[MediaRef, ...]
    created_ms: int
    likes: int = 0
    comments: int = 0

    @property
    def position(self) -> Position:
        """The post's place in listings."""
        return Position(self.created_ms, self.post_id)


@dataclass(frozen=True, slots=True)
class SourcePage:
    """A newest-first slice of one listing (a timeline or an author's posts) after a cursor."""

    entries: Sequence[Position]
    complete: bool
    """True when the listing holds nothing beyond ``entries``."""


def newest_first(positions: Iterable[Position]) -> list[Position]:
    """Positions sorted newest first, duplicates (same post id) dropped."""
    seen: set[str] = set()
    out = []
    for position in sorted(positions, key=Position.key, reverse=True):
        if position.post_id not in seen:
            seen.add(position.post_id)
            out.append(position)
    return out


def merge_sources(sources: Sequence[SourcePage]) -> tuple[list[Position], bool]:
    """Merge newest-first slices: the entries known complete, and whether more may follow.

    A slice that was cut short (``complete=False``) bounds the result: past its last entry
    another page of that listing could hold entries that belong in between.
    """
    bound: Position | None = None
    for source in sources:
        if not source.complete and source.entries:
            last = source.entries[-1]
            if bound is None or last.precedes(bound):
                bound = last
    merged = newest_first(p for source in sources for p in source.entries)
    if bound is not None:
        merged = [p for p in merged if not bound.precedes(p)]
    return merged, bound is not None
