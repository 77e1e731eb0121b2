"""One event through one notification key whose registers live in map state. Pure.

What the notifications job's keyed operators (``notification_operators``) do per element,
without PyFlink: the key's bounded summary comes in and goes out (the operator keeps it in
a ValueState); the per-actor registers stay in map state, read and written entry by entry
through ``StateMap``. The unit tests run these steps on dict-backed map states against
``NotificationEngine``.
"""

from __future__ import annotations

from typing import Any, cast

from feedline.rules.effects import NotificationDelete, NotificationEffect, NotificationUpsert
from feedline.rules.keys import Job, KeyKind, RuleKey, new_state
from feedline.rules.notification_recipients import (
    FollowerRegisters,
    RecipientNotificationState,
    RecipientSummary,
    apply_mention_candidate,
    apply_recipient_event,
)
from feedline.rules.notifications import (
    PostNotificationState,
    PostRegisters,
    PostSummary,
    apply_post_notification,
    is_mention,
)
from pipelines.streaming.state_map import MapStateLike, StateMap


def fresh_summary(key_text: str) -> Any:
    """A new key's summary, from the one rule-key module."""
    state = new_state(RuleKey.parse(key_text, Job.NOTIFICATIONS))
    assert isinstance(state, PostNotificationState | RecipientNotificationState)
    return state.summary


def is_candidate(item: Any) -> bool:
    """A mention candidate (an effect) rather than an event."""
    return isinstance(item, NotificationUpsert | NotificationDelete)


def leaves_recipient_unchanged(summary: RecipientSummary | None, item: Any) -> bool:
    """An event the recipient key need not look at (it would change nothing).

    The key's user is known already and the event is not a follow or unfollow of them, so
    ``apply_recipient_event`` would leave the state as it is. Most events reaching a
    ``recipient`` key are the user's own likes, comments and posts: skipping them spares a
    state write (and the duplicate check's) per event.
    """
    if summary is None or not summary.known or is_candidate(item):
        return False
    return not (item.event_type in ("follow", "unfollow")
                and item.followee_id == summary.user_id)


def post_step(summary: PostSummary, likes: MapStateLike, comments: MapStateLike,
              event: Any) -> tuple[list[NotificationEffect], list[tuple[str, NotificationEffect]],
                                   int, bool]:
    """Apply one event of a post; ``summary`` is changed in place.

    Returns the plain effects, the mention candidates as ``(recipient key text, effect)``,
    the register writes, and whether the registers are gone (the post was deleted: the
    caller clears its maps).
    """
    like_map, comment_map = StateMap(likes), StateMap(comments)
    registers = PostRegisters(likes=cast(dict, like_map), comments=cast(dict, comment_map))
    state = PostNotificationState(summary, registers)
    effects = apply_post_notification(state, event)
    cleared = state.registers is not registers
    writes = 0 if cleared else like_map.flush() + comment_map.flush()
    plain = [e for e in effects if not is_mention(e)]
    candidates = [(RuleKey(KeyKind.RECIPIENT, e.recipient_id).text, e)
                  for e in effects if is_mention(e)]
    return plain, candidates, writes, cleared


def recipient_step(summary: RecipientSummary, edges: MapStateLike,
                   item: Any) -> tuple[list[NotificationEffect], int]:
    """Apply an event of the user, or a mention candidate: (effects, register writes).

    ``summary`` is changed in place.
    """
    edge_map = StateMap(edges)
    state = RecipientNotificationState(summary, FollowerRegisters(cast(dict, edge_map)))
    if is_candidate(item):
        effects = apply_mention_candidate(state, item)
    else:
        effects = apply_recipient_event(state, item)
    return effects, edge_map.flush()
