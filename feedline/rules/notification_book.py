"""The recipients' notification lists in memory, and the notification keys in one process.

``NotificationBook`` holds what the stores hold after the writers applied the effects
(every live group of every recipient) and shows the capped, newest-first list;
``NotificationEngine`` runs the notifications job's keys over events in a dictionary,
mention candidates through their recipient's gate, as the streaming job will with keyed
state. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from feedline.rules.effects import (
    Effect,
    NotificationDelete,
    NotificationEffect,
    NotificationUpsert,
)
from feedline.rules.notification_recipients import (
    RecipientNotificationState,
    apply_mention_candidate,
    apply_recipient_event,
    recipient_state,
)
from feedline.rules.notifications import (
    DEFAULT_PARAMS,
    Group,
    NotificationParams,
    PostNotificationState,
    apply_post_notification,
    is_mention,
    post_state,
)


def newest_groups(groups: dict[str, Group], cap: int) -> list[tuple[str, Group]]:
    """A recipient's visible list: the newest ``cap`` groups by (latest_at, group_key)."""
    ranked = sorted(groups.items(), key=lambda kv: (kv[1].latest_ms, kv[0]), reverse=True)
    return ranked[:cap]


@dataclass
class NotificationBook:
    """Notification effects applied to dictionaries: every recipient's live groups."""

    groups: dict[str, dict[str, Group]] = field(default_factory=dict)

    def apply(self, effects: Iterable[Effect]) -> None:
        """Apply notification effects in order (any other effect is a mistake)."""
        for e in effects:
            if isinstance(e, NotificationUpsert):
                self.groups.setdefault(e.recipient_id, {})[e.group_key] = Group(
                    e.type, e.post_id, e.count, e.actors, e.latest_ms)
            elif not isinstance(e, NotificationDelete):
                raise TypeError(f"not a notification effect: {e!r}")
            else:
                owned = self.groups.get(e.recipient_id, {})
                owned.pop(e.group_key, None)
                if not owned:
                    self.groups.pop(e.recipient_id, None)

    def visible(self, recipient_id: str, cap: int = DEFAULT_PARAMS.group_cap
                ) -> list[tuple[str, Group]]:
        """What the recipient sees, newest first."""
        return newest_groups(self.groups.get(recipient_id, {}), cap)


@dataclass
class NotificationEngine:
    """The notification keys in one process: events in, the recipients' groups out.

    What the notifications job does with keyed state, in a dictionary: each event goes to
    its keys (``feedline.rules.keys``, ``Job.NOTIFICATIONS``), and mention candidates go
    on to their recipient's gate. Tests, dry runs and a rebuild can use it.
    """

    params: NotificationParams = DEFAULT_PARAMS
    states: dict[Any, PostNotificationState | RecipientNotificationState] = field(
        default_factory=dict)
    book: NotificationBook = field(default_factory=NotificationBook)

    def apply(self, event: Any) -> list[NotificationEffect]:
        """The effects of one event, gated; also applied to ``book``."""
        from feedline.rules.keys import Job, KeyKind, RuleKey, rule_keys

        out: list[NotificationEffect] = []
        for key in rule_keys(event, Job.NOTIFICATIONS):
            state = self._state(key)
            if isinstance(state, PostNotificationState):
                for effect in apply_post_notification(state, event):
                    if is_mention(effect):
                        gate = self._state(RuleKey(KeyKind.RECIPIENT, effect.recipient_id))
                        assert isinstance(gate, RecipientNotificationState)
                        out.extend(apply_mention_candidate(gate, effect))
                    else:
                        out.append(effect)
            else:
                out.extend(apply_recipient_event(state, event))
        self.book.apply(out)
        return out

    def _state(self, key: Any) -> PostNotificationState | RecipientNotificationState:
        from feedline.rules.keys import KeyKind

        state = self.states.get(key)
        if state is None:
            make = post_state if key.kind is KeyKind.NOTIFIED_POST else recipient_state
            state = self.states[key] = make(key.ident, self.params)
        return state
