"""The keeper resumes a job on a Redis the stack runs: a job deployed on the Redis Cluster
does not come back pointing at masters the stack stopped running (nor the other way round)."""

from __future__ import annotations

import pytest

from feedline.settings import RedisSettings, StackSettings, StreamingSettings
from jobs.keeper import on_this_stack, runs_cache
from jobs.localstack.redis_cluster import cluster_urls

SINGLE = "redis://feedline:pw@127.0.0.1:6379/0"


def stack(*, cluster: bool = False, beside: bool = False) -> StackSettings:
    """A stack whose cache is the single Redis, or the local cluster (``cluster``), with the
    cluster started beside a single cache (``beside``)."""
    base = StackSettings(_env_file=None)  # type: ignore[call-arg]
    url = cluster_urls(base)[0] if cluster else SINGLE
    return base.model_copy(update={
        "redis": base.redis.model_copy(update={"url": url, "cluster": cluster}),
        "local": base.local.model_copy(update={"redis_cluster": beside})})


def job_on(stack_of: StackSettings, *, master: int | None) -> StreamingSettings:
    """A job's settings on the single Redis (``master`` None) or a cluster master."""
    redis = RedisSettings(url=SINGLE, key_prefix="sbx") if master is None else RedisSettings(
        url=cluster_urls(stack_of)[master], cluster=True, key_prefix="sbx")
    return StreamingSettings(redis=redis)


@pytest.mark.parametrize(("cluster", "beside", "master", "runs"), [
    (False, False, None, True),   # single stack, single job
    (False, False, 0, False),     # single stack, job deployed on the cluster: the trap
    (False, True, 1, True),       # the cluster runs beside the single cache (the tests' stack)
    (False, True, None, True),
    (True, False, 2, True),       # cluster stack, a job on any master
    (True, False, None, False),   # cluster stack, a job deployed on the single Redis
])
def test_which_caches_the_stack_runs(cluster: bool, beside: bool, master: int | None,
                                     runs: bool) -> None:
    here = stack(cluster=cluster, beside=beside)
    assert runs_cache(here, job_on(here, master=master).redis) is runs


def test_a_job_on_a_redis_the_stack_runs_resumes_as_recorded() -> None:
    here = stack(beside=True)
    job = job_on(here, master=0)
    assert on_this_stack(here, job) == (job, None)


@pytest.mark.parametrize("cluster", [False, True])
def test_a_job_on_a_redis_the_stack_stopped_moves_to_the_stacks_cache(cluster: bool) -> None:
    here = stack(cluster=cluster)
    job = job_on(here, master=None if cluster else 0)
    moved, why = on_this_stack(here, job)
    assert (moved.redis.url, moved.redis.cluster) == (here.redis.url, here.redis.cluster)
    # Only the Redis changes: its key prefix and every other setting stay as deployed.
    assert moved.redis.key_prefix == "sbx"
    assert moved.model_dump(exclude={"redis"}) == job.model_dump(exclude={"redis"})
    assert why is not None and "does not run" in why
    assert "pw" not in why and "feedline-development" not in why  # credentials redacted
    assert runs_cache(here, moved.redis)
