"""Recompute a few users' timelines and counters in-process, straight from the archive.

For one user (``feedctl backfill --user``) or a sample (``feedctl verify``) a Beam job
is more machinery than work: the archive's upload and follow records are indexed by
fan-out key with a plain JSON decode, then only the authors the users follow (and the
users' own counter keys) are parsed and run through the rules — the same per-key rules,
over the same per-key events, as streaming and the rebuild jobs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from feedline.archive.store import Archive
from feedline.rebuild.image import StoreImage, apply_authors, apply_counters
from feedline.rebuild.source import in_window, list_parts
from feedline.rules.fanout import RulesConfig
from feedline.settings import BatchSettings
from schemas.event_contracts import parse_event


@dataclass
class ArchiveIndex:
    """Raw upload and follow records of a window, by fan-out key (author / followee)."""

    since: datetime | None
    until: datetime | None
    records: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    followees: dict[str, set[str]] = field(default_factory=dict)
    """follower -> everyone they followed or unfollowed in the window."""
    parts: int = 0
    _parsed: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    """Events of a key, parsed once (a sample's users share followed authors)."""

    def users(self) -> set[str]:
        """Every user the window's uploads and follows mention."""
        return set(self.records) | set(self.followees)

    def _events(self, key: str, keep: Callable[[Any], bool] | None = None) -> list[Any]:
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self._parsed[key] = [
                event for event in (parse_event(role, line)
                                    for role, line in self.records.get(key, []))
                if in_window(event, self.since, self.until)]
        return parsed if keep is None else [e for e in parsed if keep(e)]

    def recompute(self, users: Iterable[str], config: RulesConfig, *,
                  counters: bool = True) -> StoreImage:
        """Image of the users' timelines, followed celebrities and (optionally) counters."""
        wanted = set(users)
        authors = set().union(*(self.followees.get(u, set()) for u in wanted))
        image = StoreImage(config)
        apply_authors(image, {a: self._events(a) for a in authors})
        if counters:
            groups: dict[str, list[Any]] = {}
            for user in wanted:
                own = self._events(user)  # their uploads and who followed them
                for followee in self.followees.get(user, set()):
                    own += self._events(followee, _by_follower(user))
                groups[f"user:{user}"] = own
            apply_counters(image, groups)
        return image


def _by_follower(user: str) -> Callable[[Any], bool]:
    def keep(event: Any) -> bool:
        return getattr(event, "follower_id", None) == user

    return keep


def load_index(settings: BatchSettings, since: datetime | None, until: datetime | None,
               progress: Callable[[str], Any] | None = None) -> ArchiveIndex:
    """Read the upload and follow parts of the window into an index.

    On a terminal a progress bar shows the parts read; elsewhere ``progress`` gets a line
    every ten parts.
    """
    from feedline.cli import progress_bar

    archive = Archive.open(settings.storage, settings.archive_prefix)
    roles = {t: r for t, r in settings.kafka.topic_roles().items()
             if r in ("uploads", "follows")}
    parts = list_parts(archive, roles, since, until)
    index = ArchiveIndex(since, until)
    bar = progress_bar("read archive", len(parts), "part", iterable=parts)
    for n, part in enumerate(bar, 1):
        for line in archive.read_lines(part.object_name):
            record = json.loads(line)
            if part.role == "uploads":
                index.records.setdefault(str(record["author_id"]), []).append((part.role, line))
            else:
                followee = str(record["followee_id"])
                index.records.setdefault(followee, []).append((part.role, line))
                index.followees.setdefault(str(record["follower_id"]), set()).add(followee)
        index.parts += 1
        if progress is not None and bar.disable and (n % 10 == 0 or n == len(parts)):
            progress(f"read {n}/{len(parts)} archive parts")
    return index
