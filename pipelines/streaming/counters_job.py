"""Counters job: engagements, follows and uploads -> post and user counters.

    engagements (key post) ─parse─┐                ┌─ dead letters -> engagements.dlq
    follows ───────────────parse─┼─ key by post:ID / user:ID ─ counter state ─ write
    uploads ───────────────parse─┘

Dead letters of ``uploads`` and ``follows`` are the fan-out job's to write (once); here
a broken record on those topics is counted in the ``skipped_invalid`` metric.
Deployed with ``feedctl jobs deploy counters``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def counter_records(event: Any) -> Iterator[tuple[str, Any]]:
    """(``post:ID`` | ``user:ID``, event) for every counter state an event changes."""
    from feedline.rules.keys import Job, rule_keys

    for key in rule_keys(event, Job.COUNTERS):
        yield key.text, event


def run(argv: Sequence[str] | None = None) -> None:
    """Build and execute the counters job."""
    from pyflink.common import Types

    from feedline.rules.fanout import RulesConfig
    from feedline.rules.keys import Job
    from pipelines.streaming.job_graph import (
        build_environment,
        parse_job_args,
        parsed_events,
        write_and_end,
    )
    from pipelines.streaming.operators import CounterOperator

    args = parse_job_args("counters_job", argv)
    settings = args.settings
    env, t_env = build_environment(args)
    kafka = settings.kafka
    job = Job.COUNTERS
    engagements = parsed_events(
        t_env, settings, job, "engagements", kafka.engagements_topic, args.group_id
    )
    follows = parsed_events(
        t_env, settings, job, "follows", kafka.follows_topic, args.group_id, dead_letters=False
    )
    uploads = parsed_events(
        t_env, settings, job, "uploads", kafka.uploads_topic, args.group_id, dead_letters=False
    )
    effects = (
        engagements.union(follows, uploads)
        .flat_map(counter_records, output_type=Types.PICKLED_BYTE_ARRAY())
        .name("counter-targets")
        .uid("counter-targets")
        .key_by(lambda record: record[0], key_type=Types.STRING())
        .process(CounterOperator(RulesConfig.from_settings(settings.feed), args.dedup_window_s),
                 output_type=Types.PICKLED_BYTE_ARRAY())
        .name("counter-state")
        .uid("counter-state")
    )
    write_and_end(effects, t_env, settings, "counters")
    env.execute(args.job_name)


if __name__ == "__main__":
    run()
