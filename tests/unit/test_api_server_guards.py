"""Guards before authentication, with Redis down (nothing listens on port 1).

The per-worker fallback rate limiter, the per-client-IP limit of unauthenticated traffic
(bad tokens, ``/readyz``), the concurrency cap (503) and the per-request deadline (504).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from feedline.settings import ApiSettings
from feedline.stores.errors import Breaker
from feedline.stores.request_guards import LocalRateLimiter, RateLimiter, RateLimits
from schemas.redis_keys import RedisKeys
from serving.auth import issue_token
from serving.main import create_app
from serving.middleware import RequestContextMiddleware, ServerGuardMiddleware
from serving.resources import Resources
from tests.support.unreachable import UNREACHABLE

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

WINDOW = 60


# --- the in-process limiter --------------------------------------------------------------


def test_local_limiter_counts_a_sliding_window() -> None:
    limiter = LocalRateLimiter(per_minute=3, window_s=WINDOW)
    start = 600.0  # the start of window 10
    decisions = [limiter.check("alice", start + i) for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert 1 <= decisions[3].retry_after_s <= 2 * WINDOW
    assert limiter.check("bob", start + 4).allowed  # a budget per subject
    # Half-way through the next window the previous one weighs about 3 * 0.5 = 1.5: two
    # more fit (1.5 + 0, 1.5 + 1 < 3), the third does not (1.5 + 2).
    later = [limiter.check("alice", start + WINDOW * 1.5 + i).allowed for i in range(3)]
    assert later == [True, True, False]
    assert limiter.check("alice", start + WINDOW * 4).allowed  # long idle: fresh


@given(st.integers(1, 20), st.lists(st.floats(0, 300), min_size=1, max_size=60))
def test_local_limiter_never_allows_more_than_the_limit_per_window(
        limit: int, offsets: list[float]) -> None:
    limiter = LocalRateLimiter(per_minute=limit, window_s=WINDOW)
    allowed_in: dict[int, int] = {}
    for now in sorted(offsets):
        if limiter.check("u", now).allowed:
            allowed_in[int(now // WINDOW)] = allowed_in.get(int(now // WINDOW), 0) + 1
    assert all(count <= limit for count in allowed_in.values())


def test_local_limiter_forgets_the_oldest_subjects_past_its_bound() -> None:
    limiter = LocalRateLimiter(per_minute=1, max_subjects=2)
    for subject in ("a", "b", "c"):
        assert limiter.check(subject, 0.0).allowed
    assert not limiter.check("c", 1.0).allowed
    assert limiter.check("a", 1.0).allowed  # forgotten: starts afresh


def test_rate_limits_fall_back_to_the_process_when_redis_is_down() -> None:
    async def scenario() -> list[bool]:
        client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        breaker = Breaker(30)
        limits = RateLimits(RateLimiter(client, RedisKeys("t"), per_minute=2), breaker,
                            what="test")
        allowed = [(await limits.check("alice", 0.0)).allowed for _ in range(3)]
        assert not breaker.allows()  # Redis was tried once, then skipped
        await client.aclose()
        return allowed

    assert asyncio.run(scenario()) == [True, True, False]


# --- the app with Redis down -------------------------------------------------------------


def settings(**api: object) -> object:
    return UNREACHABLE.model_copy(update={"api": ApiSettings(
        access_log=False, gc_freeze=False, **api)})  # type: ignore[arg-type]


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_token(UNREACHABLE.api.jwt_secret, user,
                                                     ttl_s=600)}


@pytest.fixture
def limited_client(held_rate_clock: float) -> Iterator[TestClient]:
    app = create_app(settings(rate_limit_per_minute=3,  # type: ignore[arg-type]
                              anonymous_rate_limit_per_minute=4))
    with TestClient(app, raise_server_exceptions=False, client=("10.0.0.1", 4000)) as c:
        yield c


def test_user_limit_holds_while_redis_is_down(limited_client: TestClient) -> None:
    codes = [limited_client.get("/v1/users/bob", headers=bearer("alice")).status_code
             for _ in range(5)]
    assert 429 not in codes[:3] and codes[3:] == [429, 429]
    refused = limited_client.get("/v1/users/bob", headers=bearer("alice"))
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert limited_client.get("/v1/users/bob", headers=bearer("carol")).status_code != 429


def test_a_flood_of_bad_tokens_gets_429_per_client_ip(limited_client: TestClient) -> None:
    bad = {"Authorization": "Bearer not-a-jwt"}
    codes = [limited_client.get("/v1/feed", headers=bad).status_code for _ in range(6)]
    assert codes == [401] * 4 + [429] * 2
    refused = limited_client.get("/v1/feed", headers=bad)
    assert "from this client without a valid token" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    # A valid token from the same address is still served (the user has its own budget).
    assert limited_client.get("/v1/users/bob", headers=bearer("alice")).status_code != 429
    # Another address has its own budget of unauthenticated requests.
    other = TestClient(limited_client.app, raise_server_exceptions=False,
                       client=("10.0.0.2", 4000))
    assert other.get("/v1/feed", headers=bad).status_code == 401


def test_readyz_counts_against_the_client_ip_but_healthz_does_not(
        limited_client: TestClient) -> None:
    codes = [limited_client.get("/readyz").status_code for _ in range(5)]
    assert 429 not in codes[:4] and codes[4] == 429
    assert limited_client.get("/metrics").status_code == 429  # the same budget
    assert all(limited_client.get("/healthz").status_code == 200 for _ in range(10))


# --- concurrency cap and deadline --------------------------------------------------------


def guarded_app(*, max_concurrent: int, deadline_s: float,
                release: asyncio.Event | None = None) -> tuple[object, list[int]]:
    entered: list[int] = []

    async def wait(_request: Request) -> PlainTextResponse:
        entered.append(1)
        await (release or asyncio.Event()).wait()  # without `release`: never
        return PlainTextResponse("done")

    async def inner_timeout(_request: Request) -> PlainTextResponse:
        raise TimeoutError("a dependency's own timeout")

    async def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/wait", wait), Route("/inner-timeout", inner_timeout),
                            Route("/healthz", healthz)])
    resources = Resources(UNREACHABLE)
    guarded = ServerGuardMiddleware(app, resources=resources, max_concurrent=max_concurrent,
                                    deadline_s=deadline_s)
    return RequestContextMiddleware(guarded, max_body_bytes=4096,
                                    access_log_enabled=False), entered


def test_requests_past_the_concurrency_cap_get_503() -> None:
    async def scenario() -> list[int]:
        release = asyncio.Event()
        app, entered = guarded_app(max_concurrent=2, deadline_s=3600, release=release)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            held = [asyncio.create_task(client.get("/wait")) for _ in range(2)]
            while len(entered) < 2:  # both are inside the app
                await asyncio.sleep(0.01)
            refused = await client.get("/wait")
            assert (await client.get("/healthz")).status_code == 200  # liveness is exempt
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == "1"
            release.set()
            codes = [refused.status_code, *[(await task).status_code for task in held]]
            codes.append((await client.get("/wait")).status_code)  # room again
        return codes

    assert asyncio.run(scenario()) == [503, 200, 200, 200]


def test_a_request_past_its_deadline_gets_504_and_an_inner_timeout_stays_500() -> None:
    app, _ = guarded_app(max_concurrent=10, deadline_s=0.2)
    with TestClient(app, raise_server_exceptions=False) as client:  # type: ignore[arg-type]
        late = client.get("/wait")  # never finishes by itself
        assert late.status_code == 504
        assert late.headers["content-type"] == "application/problem+json"
        assert late.json()["type"].endswith("/deadline-exceeded")
        assert client.get("/inner-timeout").status_code == 500
