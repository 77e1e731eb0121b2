"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from feedline.stores.errors import StoreUnavailable
from serving.deps import ResourcesDep
from serving.observability import metrics_payload
from serving.problems import problem_response
from serving.responses import JsonResponse, problem_doc

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

#: How long each readiness probe may take.
PROBE_TIMEOUT_S = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> Response:
    """Always 200 while the process serves requests (no dependency is checked)."""
    return JsonResponse({"status": "ok"})


#: Per app: whether each dependency was up at the last check, so a change is logged once.
_was_up: weakref.WeakKeyDictionary[Any, dict[str, bool]] = weakref.WeakKeyDictionary()


async def _probe(name: str, check: Any) -> tuple[str, str | None]:
    """(name, None) when the dependency answers, else (name, why): the why is logged only."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S + 1):
            await check
    except StoreUnavailable as error:
        return name, error.detail
    except Exception as error:
        return name, f"{type(error).__name__}: {error}"[:300]
    return name, None


def _log_changes(resources: Any, results: dict[str, str | None]) -> None:
    """Log a dependency going down (with the reason) or coming back, once per change."""
    was_up = _was_up.setdefault(resources, {})
    for name, why in results.items():
        if was_up.get(name) == (why is None):
            continue
        if why is not None:
            log.warning("readiness: %s is down: %s", name, why)
        elif name in was_up:
            log.info("readiness: %s is up again", name)
        was_up[name] = why is None


@router.get("/readyz", summary="Every dependency answers",
            responses={503: problem_doc("Some dependency is down; `down` lists them.")})
async def readyz(resources: ResourcesDep) -> Response:
    """200 when Redis, Kafka and the CQL store all answer; 503 naming those that do not.

    Kafka counts as down while publishes fail (the breaker is open or probing) or the
    broker does not answer a metadata request (an answer is reused for a couple of
    seconds). Each dependency gets a status only; the reasons go to the server log.
    """
    results = dict(await asyncio.gather(
        _probe("redis", resources.cache.ping()),
        _probe("kafka", resources.publisher.ready(PROBE_TIMEOUT_S)),
        _probe("cql", resources.posts.ping()),
    ))
    _log_changes(resources, results)
    checks = {name: ("ok" if error is None else "down") for name, error in results.items()}
    down = sorted(name for name, error in results.items() if error is not None)
    if down:
        return problem_response(503, "not-ready", f"unavailable: {', '.join(down)}",
                                headers={"Retry-After": "5"}, down=down, checks=checks)
    return JsonResponse({"status": "ready", "checks": checks})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    """Request latency histograms, request and error counters, degraded reads."""
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)
