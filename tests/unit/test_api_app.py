"""The app with every dependency unreachable (nothing listens on port 1): auth, problems,
limits, request ids, metrics and the 503 paths need no running service."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from feedline.settings import ApiSettings
from serving.auth import issue_token
from serving.main import create_app
from tests.support.unreachable import UNREACHABLE

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

NOWHERE = UNREACHABLE.model_copy(update={"api": ApiSettings(
    kafka_max_block_ms=300, kafka_delivery_timeout_ms=600, kafka_retry_after_s=7,
    max_body_bytes=4096, access_log=True, gc_freeze=False)})


def auth() -> dict[str, str]:
    """A fresh bearer header for alice: minted when a test runs, never at collection time
    (a token minted at import expired before the test ran on a slow machine)."""
    return {"Authorization": f"Bearer {issue_token(NOWHERE.api.jwt_secret, 'alice', ttl_s=600)}"}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(NOWHERE), raise_server_exceptions=False) as c:
        yield c


def problem(response) -> dict:
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("https://feedline.example/problems/")
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_healthz_needs_nothing(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers[
        "x-request-id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id!"}).headers[
        "x-request-id"]
    assert len(generated) == 32 and generated != "bad id"


@pytest.mark.parametrize(("headers", "reason"), [
    (lambda: {}, "missing Authorization header"),
    (lambda: {"Authorization": "Basic YTpi"}, "must be 'Bearer <token>'"),
    (lambda: {"Authorization": "Bearer not-a-jwt"}, "not a valid JWT"),
    (lambda: {"Authorization": "Bearer " + issue_token("x" * 40, "alice", ttl_s=600)},
     "signature"),
    (lambda: {"Authorization": "Bearer " + issue_token(NOWHERE.api.jwt_secret, "alice", ttl_s=1,
                                                       now=time.time() - 60)}, "expired"),
], ids=["missing", "basic", "not-jwt", "wrong-secret", "expired"])
def test_bad_credentials_get_401_saying_why(client: TestClient, headers: Callable[[], dict],
                                             reason: str) -> None:
    response = client.get("/v1/feed", headers=headers())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert reason in problem(response)["detail"]


def test_unknown_fields_and_bad_values_list_every_field(client: TestClient) -> None:
    response = client.post("/v1/posts", headers=auth(),
                           json={"caption": "x" * 2201, "media_ids": ["ok", "not ok"], "geo": 1})
    assert response.status_code == 422
    body = problem(response)
    fields = {(e["location"], e["field"]) for e in body["errors"]}
    assert fields == {("body", "caption"), ("body", "media_ids[1]"), ("body", "geo")}
    assert "3 fields are invalid" in body["detail"]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/v1/posts", headers={**auth(), "Content-Type": "application/json"},
                           content=b'{"caption": ')
    assert response.status_code == 400
    assert problem(response)["type"].endswith("/malformed-json")


def test_oversized_bodies_get_413_declared_or_streamed(client: TestClient) -> None:
    big = b'{"caption": "' + b"x" * 5000 + b'", "media_ids": ["m1"]}'
    declared = client.post("/v1/posts", headers={**auth(), "Content-Type": "application/json"},
                           content=big)
    assert declared.status_code == 413
    assert "4096 bytes" in problem(declared)["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    streamed = client.post("/v1/posts", headers={**auth(), "Content-Type": "application/json"},
                           content=chunks())
    assert streamed.status_code == 413
    problem(streamed)


def test_query_and_path_validation(client: TestClient) -> None:
    for url in ("/v1/feed?limit=0", "/v1/feed?limit=101", "/v1/feed?limit=x"):
        response = client.get(url, headers=auth())
        assert response.status_code == 422
        assert problem(response)["errors"][0] == {
            "location": "query", "field": "limit", "message": response.json()["errors"][0][
                "message"]}
    response = client.get("/v1/posts/not%20valid", headers=auth())
    assert response.status_code == 422
    assert problem(response)["errors"][0]["field"] == "post_id"


def test_forged_cursor_is_400(client: TestClient) -> None:
    response = client.get("/v1/feed?cursor=AAAAAAAAAAAAAAAAAAAAAAAAAAAA", headers=auth())
    assert response.status_code == 400
    assert problem(response)["type"].endswith("/invalid-cursor")


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert problem(client.get("/v2/nothing"))["status"] == 404
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    problem(response)


def test_self_follow_is_422(client: TestClient) -> None:
    response = client.put("/v1/users/alice/follow", headers=auth())
    assert response.status_code == 422
    assert problem(response)["type"].endswith("/self-follow")


def test_kafka_down_is_a_503_with_retry_after_then_the_breaker_answers(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = client.app.state.resources.publisher
    sends: list[object] = []
    real_send = publisher._send
    monkeypatch.setattr(publisher, "_send", lambda event: sends.append(event) or real_send(event))
    response = client.put("/v1/users/bob/follow", headers=auth())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert problem(response)["dependency"] == "kafka"
    assert len(sends) == 1  # this one tried the broker (bounded by max_block_ms + delivery)
    again = client.delete("/v1/users/bob/follow", headers=auth())
    assert again.status_code == 503 and problem(again)["dependency"] == "kafka"
    assert len(sends) == 1  # the breaker answered without trying the broker again
    assert 1 <= int(again.headers["retry-after"]) <= 7


def test_reads_with_every_store_down_are_503_not_500(client: TestClient) -> None:
    for url in ("/v1/feed", "/v1/users/bob/posts", "/v1/posts/p1", "/v1/users/bob"):
        response = client.get(url, headers=auth())
        assert response.status_code == 503, url
        assert response.headers["retry-after"]
        assert problem(response)["dependency"] == "cql"


def test_readyz_names_each_dependency_down(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    body = problem(response)
    assert body["down"] == ["cql", "kafka", "redis"]
    assert set(body["checks"]) == {"cql", "kafka", "redis"}


def test_metrics_expose_latency_histograms_and_error_counters(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/v1/feed")  # a 401
    text = client.get("/metrics").text
    assert 'feedline_http_request_duration_seconds_bucket{le="0.005",method="GET",' \
           'route="/healthz"}' in text
    assert 'feedline_http_errors_total{method="GET",route="/v1/feed",status="401"}' in text


def test_access_log_is_json_with_the_request_id(client: TestClient,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="serving.access")
    response = client.get("/healthz", headers={"X-Request-ID": "trace-me"})
    record = next(r for r in caplog.records if r.name == "serving.access")
    assert record.__dict__["status"] == 200 and record.__dict__["route"] == "/healthz"
    from serving.observability import JsonFormatter, reset_request_id, set_request_id

    token = set_request_id("trace-me")
    try:
        line = JsonFormatter().format(record)
    finally:
        reset_request_id(token)
    assert '"request_id":"trace-me"' in line and '"status":200' in line
    assert response.headers["x-request-id"] == "trace-me"


def test_openapi_documents_security_and_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    feed = spec["paths"]["/v1/feed"]["get"]
    assert feed["security"] == [{"bearerAuth": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert {"401", "422", "429", "503"} <= set(feed["responses"])
