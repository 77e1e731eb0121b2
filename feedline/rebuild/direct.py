"""Recompute a few users' timelines, counters and notifications in-process, from the archive.

For one user (``feedctl backfill --user``) or a sample (``feedctl verify``) a Beam job
is more machinery than work: the archive's upload and follow records are indexed by
fan-out key with a plain JSON decode, then only the authors the users follow (and the
users' own counter keys) are parsed and run through the rules — the same per-key rules,
over the same per-key events, as streaming and the rebuild jobs. Notifications
(``recompute_notifications``) need every post key, since a mention may be anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from feedline.archive.store import Archive
from feedline.rebuild.image import StoreImage, apply_groups
from feedline.rebuild.notifications import (
    NotificationImage,
    RecipientPart,
    derive_parts,
    derive_post_key,
)
from feedline.rebuild.source import in_window, list_parts
from feedline.rebuild.tail import mentions_in
from feedline.rules.fanout import RulesConfig
from feedline.rules.keys import Job, KeyKind, RuleKey, record_keys
from feedline.rules.retention import bound_ms
from feedline.settings import BatchSettings
from schemas.event_contracts import parse_event


@dataclass
class ArchiveIndex:
    """Raw upload and follow records of a window, by fan-out key (author / followee)."""

    since: datetime | None
    until: datetime | None
    records: dict[RuleKey, list[tuple[str, bytes]]] = field(default_factory=dict)
    followees: dict[str, set[str]] = field(default_factory=dict)
    """follower -> everyone they followed or unfollowed in the window."""
    parts: int = 0
    _parsed: dict[RuleKey, list[Any]] = field(default_factory=dict, repr=False)
    """Events of a key, parsed once (a sample's users share followed authors)."""

    def users(self) -> set[str]:
        """Every user the window's uploads and follows mention."""
        return {key.ident for key in self.records} | set(self.followees)

    def _events(self, key: RuleKey, keep: Callable[[Any], bool] | None = None) -> list[Any]:
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
        followed = [RuleKey.author(author) for author in authors]
        apply_groups(image, {key: self._events(key) for key in followed})
        if counters:
            groups: dict[RuleKey, list[Any]] = {}
            for user in wanted:
                own = list(self._events(RuleKey.author(user)))  # uploads, who followed them
                for followee in self.followees.get(user, set()):
                    own += self._events(RuleKey.author(followee), _by_follower(user))
                groups[RuleKey.user(user)] = own
            apply_groups(image, groups)
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
    lateness = bound_ms(settings.feed.lateness_bound_s)
    index = ArchiveIndex(since, until)
    bar = progress_bar("read archive", len(parts), "part", iterable=parts)
    for n, part in enumerate(bar, 1):
        for line in archive.admitted_lines(part.object_name, lateness)[0]:
            record = json.loads(line)
            for key in record_keys(record, Job.FANOUT):
                index.records.setdefault(key, []).append((part.role, line))
                if part.role == "follows":
                    index.followees.setdefault(str(record["follower_id"]), set()).add(key.ident)
        index.parts += 1
        if progress is not None and bar.disable and (n % 10 == 0 or n == len(parts)):
            progress(f"read {n}/{len(parts)} archive parts")
    return index


def recompute_notifications(settings: BatchSettings, since: datetime | None,
                            until: datetime | None, users: Iterable[str],
                            progress: Callable[[str], Any] | None = None,
                            post_mentions: dict[str, set[str]] | None = None,
                            ) -> NotificationImage:
    """The users' notification groups, recomputed from the window's archive.

    Every post key is run (a mention of a user may sit in any caption or comment), one at
    a time, keeping only the named users' share; of the recipient keys only theirs. The
    same two hops as the rebuild (``feedline.rebuild.notifications``). ``post_mentions``,
    when given, receives every post's mentioned users (for `feedline.rebuild.tail`).
    """
    wanted = set(users)
    archive = Archive.open(settings.storage, settings.archive_prefix)
    roles = {t: r for t, r in settings.kafka.topic_roles().items()
             if r in ("uploads", "follows", "engagements")}
    parts = list_parts(archive, roles, since, until)
    lateness = bound_ms(settings.feed.lateness_bound_s)
    records: dict[RuleKey, list[tuple[str, bytes]]] = {}
    for n, part in enumerate(parts, 1):
        for line in archive.admitted_lines(part.object_name, lateness)[0]:
            record = json.loads(line)
            for key in record_keys(record, Job.NOTIFICATIONS):
                if key.kind is KeyKind.NOTIFIED_POST or key.ident in wanted:
                    records.setdefault(key, []).append((part.role, line))
                if key.kind is KeyKind.NOTIFIED_POST and post_mentions is not None:
                    mentioned = mentions_in(record)
                    if mentioned:
                        post_mentions.setdefault(key.ident, set()).update(mentioned)
        if progress is not None and (n % 10 == 0 or n == len(parts)):
            progress(f"notifications: read {n}/{len(parts)} archive parts")
    shares = {user: RecipientPart() for user in wanted}
    for key in sorted(records):
        events = [event for event in (parse_event(role, line) for role, line in records.pop(key))
                  if in_window(event, since, until)]
        if key.kind is KeyKind.NOTIFIED_POST:
            for user, share in derive_post_key(key.ident, events).items():
                if user in wanted:
                    shares[user].merge(share)
        else:
            shares[key.ident].events.extend(events)
    return derive_parts(shares, wanted)
