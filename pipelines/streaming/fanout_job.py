"""Fan-out job: uploads and follows -> home timelines, posts, outboxes, follow graph.

    uploads (key author) ──parse──┐                 ┌─ dead letters -> uploads.dlq
                                   ├─ key by author ─ fan-out state ─ write CQL + Redis
    follows (key followee) ─parse─┘                 └─ dead letters -> follows.dlq

Deployed with ``feedctl jobs deploy fanout``; run directly with ``flink run -py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def author_key(event: Any) -> str:
    """The fan-out key an upload or follow event is keyed by (exactly one: its author)."""
    from feedline.rules.keys import Job, rule_keys

    (key,) = rule_keys(event, Job.FANOUT)
    return key.text


def run(argv: Sequence[str] | None = None) -> None:
    """Build and execute the fan-out job."""
    from pyflink.common import Types

    from feedline.rules.fanout import RulesConfig
    from feedline.rules.keys import Job
    from feedline.rules.retention import bound_ms
    from pipelines.streaming.job_graph import (
        build_environment,
        parse_job_args,
        parsed_events,
        write_and_end,
    )
    from pipelines.streaming.operators import FanoutOperator

    args = parse_job_args("fanout_job", argv)
    settings = args.settings
    env, t_env = build_environment(args)
    kafka = settings.kafka
    job = Job.FANOUT
    uploads = parsed_events(t_env, settings, job, "uploads", kafka.uploads_topic, args.group_id)
    follows = parsed_events(t_env, settings, job, "follows", kafka.follows_topic, args.group_id)
    effects = (
        uploads.union(follows)
        .key_by(author_key, key_type=Types.STRING())
        .process(FanoutOperator(RulesConfig.from_settings(settings.feed), args.dedup_window_s,
                                bound_ms(settings.feed.lateness_bound_s)),
                 output_type=Types.PICKLED_BYTE_ARRAY())
        .name("fan-out-state")
        .uid("fan-out-state")
    )
    write_and_end(effects, t_env, settings, "fan-out")
    env.execute(args.job_name)


if __name__ == "__main__":
    run()
