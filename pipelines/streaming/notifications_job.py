"""Notifications job: likes, comments, follows and mentions -> each recipient's groups.

    uploads ─────parse─┐                ┌─ key npost:POST ─ post groups ──────────────┐
    engagements ─parse─┼─ rule keys ────┤        └─ mention candidates ─┐             │
    follows ─────parse─┘                └─ key recipient:USER ──────────┴─ follow groups,
                                                                          mention gate ─┤
                                  key by recipient ─ write CQL + Redis ◀────────────────┘

Keyed through ``feedline.rules.keys`` (``Job.NOTIFICATIONS``), the same keys
``NotificationEngine`` runs in one process: a post's events go to its ``npost`` key, every
event to the ``recipient`` key of each user taking part; a post key's mention items go on
to the mentioned user's ``recipient`` key (``apply_mention_candidate``). Effects are
written by a writer keyed by recipient, the owner of the rows.

Dead letters of the three topics are the fan-out job's (uploads, follows) and the counters
job's (engagements) to write, once; here a broken record is counted in the
``skipped_invalid`` metric. Deployed with ``feedctl jobs deploy notifications``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def post_targets(event: Any) -> Iterator[tuple[str, Any]]:
    """(``npost:ID``, event) for the post key an event changes (none for a follow)."""
    from feedline.rules.keys import Job, KeyKind, rule_keys

    for key in rule_keys(event, Job.NOTIFICATIONS):
        if key.kind is KeyKind.NOTIFIED_POST:
            yield key.text, event


def recipient_targets(event: Any) -> Iterator[tuple[str, Any]]:
    """(``recipient:ID``, event) for every user taking part in an event."""
    from feedline.rules.keys import Job, KeyKind, rule_keys

    for key in rule_keys(event, Job.NOTIFICATIONS):
        if key.kind is KeyKind.RECIPIENT:
            yield key.text, event


def by_recipient(effects: Sequence[Any]) -> Iterator[tuple[str, list[Any]]]:
    """An event's effects split by recipient, each recipient's in their order."""
    split: dict[str, list[Any]] = {}
    for effect in effects:
        split.setdefault(effect.recipient_id, []).append(effect)
    yield from split.items()


def _first(record: Any) -> str:
    return str(record[0])


def run(argv: Sequence[str] | None = None) -> None:
    """Build and execute the notifications job."""
    from pyflink.common import Types

    from feedline.rules.keys import Job
    from pipelines.streaming.job_graph import (
        build_environment,
        discarding_sink,
        parse_job_args,
        parsed_events,
    )
    from pipelines.streaming.notification_operators import (
        MENTION_CANDIDATES,
        NotificationWriteOperator,
        PostNotificationOperator,
        RecipientNotificationOperator,
    )

    args = parse_job_args("notifications_job", argv)
    settings = args.settings
    env, t_env = build_environment(args)
    kafka, job, group = settings.kafka, Job.NOTIFICATIONS, args.group_id
    pickled = Types.PICKLED_BYTE_ARRAY()
    sources = [
        parsed_events(t_env, settings, job, role, topic, group, dead_letters=False)
        for role, topic in (("uploads", kafka.uploads_topic),
                            ("engagements", kafka.engagements_topic),
                            ("follows", kafka.follows_topic))
    ]
    events = sources[0].union(*sources[1:])
    posts = (
        events.flat_map(post_targets, output_type=pickled)
        .name("npost-targets").uid("npost-targets")
        .key_by(_first, key_type=Types.STRING())
        .process(PostNotificationOperator(args.dedup_window_s), output_type=pickled)
        .name("npost-state").uid("npost-state")
    )
    candidates = posts.get_side_output(MENTION_CANDIDATES)
    recipients = (
        events.flat_map(recipient_targets, output_type=pickled)
        .name("recipient-targets").uid("recipient-targets")
        .union(candidates)
        .key_by(_first, key_type=Types.STRING())
        .process(RecipientNotificationOperator(args.dedup_window_s), output_type=pickled)
        .name("recipient-state").uid("recipient-state")
    )
    (
        posts.union(recipients)
        .flat_map(by_recipient, output_type=pickled)
        .name("notification-owners").uid("notification-owners")
        .key_by(_first, key_type=Types.STRING())
        .process(NotificationWriteOperator(settings.model_dump_json()),
                 output_type=Types.LONG())
        .name("write-notifications").uid("write-notifications")
        .sink_to(discarding_sink())
        .name("end-notifications").uid("end-notifications")
    )
    env.execute(args.job_name)


if __name__ == "__main__":
    run()
