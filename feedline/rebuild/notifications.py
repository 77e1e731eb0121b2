"""The notifications a set of events leaves in the stores, derived per rules key. Pure.

The notifications job (``Job.NOTIFICATIONS``) has two hops, and so has the derivation:

1. each ``npost:POST`` key runs the post rules over its events in
   ``(event_time_ms, event_id)`` order (``image.ordered``). Its like and comment groups
   are final once its events are done: the last effect per slot is what the writer left.
   Its mention items are *candidates* for their recipient's gate, kept in emission order
   (a few per caption or comment, never per like).
2. each ``recipient:USER`` key runs its own events (follow groups; the user becomes known)
   and the mention candidates addressed to it through the gate
   (``notification_recipients.apply_mention_candidate``), merged in the order a stream in
   event-time order would bring them: by the causing event's ``(time, id)``, the event
   itself before the candidates it caused, candidates of one group in revision order.

A recipient's groups are the post keys' groups addressed to them plus what their gate
let through. The rules make this independent of arrival order (``feedline.rules.
notifications`` states the one exception: more than ``group_cap`` mentions held for a
user not yet known). Memory per key is what the rules keep for it: one post's registers
and summary at a time, one recipient's gate and follow registers at a time.

``derive_notifications`` runs both hops over one event set (``feedctl verify``, tests);
the Beam job (``pipelines.batch.rebuild_notifications``) runs ``derive_post_key`` per post
key, regroups by recipient and runs ``derive_recipient`` per recipient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from feedline.rebuild.image import key_groups, ordered
from feedline.rules.effects import NotificationDelete, NotificationEffect, NotificationUpsert
from feedline.rules.keys import Job, KeyKind
from feedline.rules.notification_recipients import (
    apply_mention_candidate,
    apply_recipient_event,
    recipient_state,
)
from feedline.rules.notifications import (
    DEFAULT_PARAMS,
    Group,
    NotificationParams,
    apply_post_notification,
    is_mention,
    post_state,
)

#: A recipient's groups: group_key -> Group.
Groups = dict[str, Group]


@dataclass
class RecipientPart:
    """What one recipient's derivation needs: its own events, the post keys' share."""

    events: list[Any] = field(default_factory=list)
    """Events of the ``recipient:USER`` key."""
    groups: Groups = field(default_factory=dict)
    """Final like and comment groups addressed to the user by post keys."""
    candidates: list[NotificationEffect] = field(default_factory=list)
    """Mention candidates for the user's gate, each post key's in emission order."""

    def merge(self, other: RecipientPart) -> None:
        """Add another source's share (post keys own disjoint groups)."""
        self.events.extend(other.events)
        self.groups.update(other.groups)
        self.candidates.extend(other.candidates)


def apply_effects(groups: dict[str, Groups], effects: Iterable[NotificationEffect]) -> None:
    """Apply effects in order to recipients' groups (what a writer leaves: the last write)."""
    for e in effects:
        if isinstance(e, NotificationUpsert):
            groups.setdefault(e.recipient_id, {})[e.group_key] = Group(
                e.type, e.post_id, e.count, e.actors, e.latest_ms)
        elif isinstance(e, NotificationDelete):
            groups.get(e.recipient_id, {}).pop(e.group_key, None)
        else:
            raise TypeError(f"not a notification effect: {e!r}")


def derive_post_key(post_id: str, events: Iterable[Any],
                    params: NotificationParams = DEFAULT_PARAMS) -> dict[str, RecipientPart]:
    """One post key over its events: its groups and mention candidates, by recipient."""
    state = post_state(post_id, params)
    final: dict[str, Groups] = {}
    parts: dict[str, RecipientPart] = {}
    for event in ordered(events):
        direct = []
        for effect in apply_post_notification(state, event):
            if is_mention(effect):
                parts.setdefault(effect.recipient_id, RecipientPart()).candidates.append(effect)
            else:
                direct.append(effect)
        apply_effects(final, direct)
    for recipient, groups in final.items():
        if groups:
            parts.setdefault(recipient, RecipientPart()).groups.update(groups)
    return parts


def _arrival(item: Any) -> tuple[int, str, int, str, int]:
    """Where an event or a candidate comes in a stream in event-time order."""
    if isinstance(item, NotificationUpsert | NotificationDelete):
        return (item.event_time_ms, item.event_id, 1, item.group_key, item.revision)
    return (int(item.event_time_ms), str(item.event_id), 0, "", 0)


def derive_recipient(user_id: str, part: RecipientPart,
                     params: NotificationParams = DEFAULT_PARAMS) -> Groups:
    """A recipient's final groups: the post keys' ones, then its follows and gated mentions."""
    state = recipient_state(user_id, params)
    gated: dict[str, Groups] = {}
    items: list[Any] = [*ordered(part.events), *part.candidates]
    for item in sorted(items, key=_arrival):
        if isinstance(item, NotificationUpsert | NotificationDelete):
            apply_effects(gated, apply_mention_candidate(state, item))
        else:
            apply_effects(gated, apply_recipient_event(state, item))
    return {**part.groups, **gated.get(user_id, {})}


@dataclass
class NotificationImage:
    """Recipients' derived groups, and every recipient the derivation speaks for."""

    groups: dict[str, Groups] = field(default_factory=dict)
    """recipient -> their live groups (absent or empty: none)."""
    recipients: set[str] = field(default_factory=set)
    """Users whose stored notifications a rebuild replaces (with no groups, it clears them)."""


def recipient_parts(events: Iterable[Any],
                    params: NotificationParams = DEFAULT_PARAMS) -> dict[str, RecipientPart]:
    """Hop one over an event set: every post key run, every recipient's part gathered."""
    parts: dict[str, RecipientPart] = {}
    groups = key_groups(events, Job.NOTIFICATIONS)
    for key in sorted(groups):
        if key.kind is KeyKind.NOTIFIED_POST:
            for user, share in derive_post_key(key.ident, groups[key], params).items():
                parts.setdefault(user, RecipientPart()).merge(share)
        else:
            parts.setdefault(key.ident, RecipientPart()).events.extend(groups[key])
    return parts


def derive_parts(parts: Mapping[str, RecipientPart], users: Iterable[str] | None = None,
                 params: NotificationParams = DEFAULT_PARAMS) -> NotificationImage:
    """Hop two: each recipient's groups (only ``users``' when given)."""
    wanted = set(parts) if users is None else set(users)
    image = NotificationImage(recipients=set(wanted))
    for user in sorted(wanted & set(parts)):
        groups = derive_recipient(user, parts[user], params)
        if groups:
            image.groups[user] = groups
    return image


def derive_notifications(events: Iterable[Any], params: NotificationParams = DEFAULT_PARAMS,
                         users: Iterable[str] | None = None) -> NotificationImage:
    """Both hops over one event set, in one process."""
    return derive_parts(recipient_parts(events, params), users, params)
