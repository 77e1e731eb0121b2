"""Notification rules of a user as recipient: follow groups per UTC day, the mention gate.

The ``recipient:USER`` key (``feedline.rules.keys``) gets every event the user takes part
in: follows of the user make the follow groups; any event makes the user known, which
opens the gate for the mentions of them that post keys emit as candidates. The rules as a
whole are stated in ``feedline.rules.notifications``. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from feedline.rules.effects import NotificationDelete, NotificationEffect, NotificationUpsert
from feedline.rules.fanout import Edge
from feedline.rules.notifications import (
    DEFAULT_PARAMS,
    FOLLOW,
    Group,
    NotificationParams,
    Slot,
    Window,
    diff_groups,
    follow_key,
    utc_day,
)


@dataclass
class FollowerRegisters:
    """Per-follower follow registers of one followee (a keyed map in a streaming job)."""

    edges: dict[str, Edge] = field(default_factory=dict)


@dataclass
class FollowDay:
    """One UTC day's follow group: current followers since that day, newest follows."""

    count: int
    window: Window


@dataclass
class RecipientSummary:
    """The summary of a recipient's state: follow groups by day, the mention gate."""

    user_id: str
    params: NotificationParams = DEFAULT_PARAMS
    days: dict[str, FollowDay] = field(default_factory=dict)
    revision: int = 0
    known: bool = False
    """The user appeared in an event: mentions of them notify."""
    held: dict[str, NotificationUpsert] = field(default_factory=dict)
    """Mentions of the user held while unknown (the newest ``group_cap``), by group key."""


@dataclass
class RecipientNotificationState:
    """Keyed state of a user's follow groups and mention gate (key ``recipient:USER``)."""

    summary: RecipientSummary
    registers: FollowerRegisters = field(default_factory=FollowerRegisters)


def recipient_state(user_id: str,
                   params: NotificationParams = DEFAULT_PARAMS) -> RecipientNotificationState:
    """The state of a user's recipient key before its first event."""
    return RecipientNotificationState(RecipientSummary(user_id, params))


def _day_of(edge: Edge | None) -> str | None:
    return utc_day(edge.since_ms) if edge is not None and edge.following else None


def _follow_groups(s: RecipientSummary, r: FollowerRegisters,
                   days: Iterable[str]) -> dict[Slot, Group]:
    groups: dict[Slot, Group] = {}
    for day in days:
        group = s.days.get(day)
        if group is None or group.count <= 0:
            continue
        actors = [f for _, f in group.window.newest_first()
                  if _day_of(r.edges.get(f)) == day][: s.params.shown_actors]
        groups[(s.user_id, follow_key(day))] = Group(
            FOLLOW, None, group.count, tuple(actors), group.window.newest_ms())
    return groups


def apply_follow_notification(state: RecipientNotificationState,
                              event: Any) -> list[NotificationEffect]:
    """Apply a follow or unfollow of this user; returns the effects, in order."""
    s, r = state.summary, state.registers
    kind = event.event_type
    if kind not in ("follow", "unfollow"):
        raise ValueError(f"{kind} does not concern follow notifications")
    follower, version = event.follower_id, (int(event.event_time_ms), str(event.event_id))
    if follower == s.user_id:
        return []
    edge = r.edges.setdefault(follower, Edge())
    # Days whose group this event can change: the follower's day before and after (the
    # start may move to another follow it made), and the day of the event itself.
    days = {utc_day(v[0]) for v in edge.follows} | {utc_day(version[0])}
    before = _follow_groups(s, r, days)
    day_before = _day_of(edge)
    edge.apply(version, kind == "follow")
    day_after = _day_of(edge)
    if day_before != day_after:
        if day_before is not None:
            s.days[day_before].count -= 1
        if day_after is not None:
            s.days.setdefault(day_after, FollowDay(0, Window(s.params.window))).count += 1
    if kind == "follow":
        day = utc_day(version[0])
        s.days.setdefault(day, FollowDay(0, Window(s.params.window))).window.offer(
            version, follower)
    return diff_groups(s, before, _follow_groups(s, r, days), event)


def apply_recipient_event(state: RecipientNotificationState,
                          event: Any) -> list[NotificationEffect]:
    """An event this user takes part in: follow groups if it follows them; known from now."""
    s = state.summary
    effects: list[NotificationEffect] = []
    if event.event_type in ("follow", "unfollow") and event.followee_id == s.user_id:
        effects = apply_follow_notification(state, event)
    if not s.known:
        s.known = True
        held = sorted(s.held.values(), key=lambda e: (e.latest_ms, e.group_key))
        s.held = {}
        # Never written while held: each is new to the recipient's list.
        effects.extend(_restamp(s, replace(effect, previous_latest_ms=None)) for effect in held)
    return effects


def apply_mention_candidate(state: RecipientNotificationState,
                            effect: NotificationEffect) -> list[NotificationEffect]:
    """A mention of this user from a post key: passed on if the user is known, else held.

    Passed-on effects get this key's next revision: the gate is the one writer of its
    user's mention items, so their writes stay ordered by one key's revisions.
    """
    s = state.summary
    if s.known:
        return [_restamp(s, effect)]
    if isinstance(effect, NotificationDelete):
        s.held.pop(effect.group_key, None)
        return []
    s.held[effect.group_key] = effect
    if len(s.held) > s.params.group_cap:
        oldest = min(s.held.values(), key=lambda e: (e.latest_ms, e.group_key))
        del s.held[oldest.group_key]
    return []


def _restamp(s: RecipientSummary, effect: NotificationEffect) -> NotificationEffect:
    s.revision += 1
    return replace(effect, revision=s.revision)
