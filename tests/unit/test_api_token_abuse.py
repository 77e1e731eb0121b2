"""Malformed and hostile bearer tokens: each is a 401 problem, never a 500.

Tokens are forged byte by byte (header and payload JSON as given, signed with the right
secret), so the checks after the signature are what is exercised.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from feedline.settings import ApiSettings
from serving.auth import InvalidToken, TokenPolicy, issue_token, verify_token
from serving.main import create_app
from tests.support.unreachable import UNREACHABLE

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

SECRET = "unit-test-secret-unit-test-secret-0123"
HEADER = b'{"alg":"HS256","typ":"JWT"}'
DAY_S = 24 * 3600


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(payload: bytes, header: bytes = HEADER, secret: str = SECRET) -> str:
    """A token with exactly these header and payload bytes, correctly signed."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**values: object) -> bytes:
    return json.dumps({"sub": "u1", "exp": int(time.time()) + 600, **values}).encode()


def nested(depth: int) -> bytes:
    """JSON nested deeper than Python's recursion limit, still under the 4 KiB token cap."""
    return b"[" * depth + b"]" * depth


#: (forged token, what the 401 says), each built when the test runs.
MALFORMED: dict[str, tuple[Callable[[], str], str]] = {
    "nested-header": (lambda: forge(claims(), b'{"alg":"HS256","x":' + nested(1200) + b"}"),
                      "not a valid JWT"),
    "nested-payload": (lambda: forge(b'{"sub":"u1","x":' + nested(1200) + b"}"),
                       "not a valid JWT"),
    "header-not-object": (lambda: forge(claims(), b"[1]"), "not a valid JWT"),
    "payload-not-object": (lambda: forge(b"[1, 2]"), "not a valid JWT"),
    "exp-string": (lambda: forge(claims(exp="tomorrow")), "not a valid JWT"),
    "exp-list": (lambda: forge(claims(exp=[1])), "not a valid JWT"),
    "exp-infinite": (lambda: forge(b'{"sub":"u1","exp":1e400}'), "not a valid JWT"),
    "exp-400-digits": (lambda: forge(b'{"sub":"u1","exp":1' + b"0" * 400 + b"}"),
                       "lifetime exceeds"),
    "exp-year-9999": (lambda: forge(claims(exp=253402300799)), "lifetime exceeds"),
    "exp-long-after-iat": (lambda: forge(claims(iat=int(time.time()) - 400 * DAY_S)),
                           "lifetime exceeds"),
    "nbf-string": (lambda: forge(claims(nbf="now")), "not a valid JWT"),
    "nbf-nan": (lambda: forge(b'{"sub":"u1","exp":%d,"nbf":NaN}' % (time.time() + 600)),
                "not a valid JWT"),
    "iat-string": (lambda: forge(claims(iat="then")), "not a valid JWT"),
    "iat-future": (lambda: forge(claims(iat=int(time.time()) + 3600)), "not a valid JWT"),
    "sub-number": (lambda: forge(claims(sub=42)), "not a valid JWT"),
    "sub-not-an-id": (lambda: forge(claims(sub="../u1")), "must be a user id"),
    "kid-object": (lambda: forge(claims(), b'{"alg":"HS256","kid":{"a":1}}'),
                   "not a valid JWT"),
    "megabyte": (lambda: forge(claims(pad="x" * 1_000_000)), "longer than 4096 bytes"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_token_is_an_invalid_token(case: str) -> None:
    build, reason = MALFORMED[case]
    with pytest.raises(InvalidToken, match=reason):
        verify_token(SECRET, build())


def test_the_forger_makes_tokens_that_verify() -> None:
    # The cases above fail for what they change, not because forge() is wrong.
    assert verify_token(SECRET, forge(claims())) == ("u1", pytest.approx(time.time() + 600, abs=5))


def test_size_is_checked_before_decoding() -> None:
    token = issue_token(SECRET, "u1", ttl_s=60)
    assert verify_token(SECRET, token, TokenPolicy(max_bytes=len(token)))[0] == "u1"
    with pytest.raises(InvalidToken, match="longer than"):
        verify_token(SECRET, token, TokenPolicy(max_bytes=len(token) - 1))


def test_lifetime_bound() -> None:
    policy = TokenPolicy(max_lifetime_s=DAY_S)
    assert verify_token(SECRET, issue_token(SECRET, "u1", ttl_s=DAY_S), policy)[0] == "u1"
    with pytest.raises(InvalidToken, match=f"lifetime exceeds {DAY_S} s"):
        verify_token(SECRET, issue_token(SECRET, "u1", ttl_s=DAY_S + 60), policy)


def test_issuer_and_audience_checked_when_configured() -> None:
    policy = TokenPolicy(issuer="https://id.feedline.example", audience="feedline-api")
    good = issue_token(SECRET, "u1", ttl_s=60, issuer=policy.issuer, audience=policy.audience)
    assert verify_token(SECRET, good, policy)[0] == "u1"
    for token, reason in [
        (issue_token(SECRET, "u1", ttl_s=60), "no 'iss' claim"),
        (issue_token(SECRET, "u1", ttl_s=60, issuer=policy.issuer), "no 'aud' claim"),
        (issue_token(SECRET, "u1", ttl_s=60, issuer="https://evil.example",
                     audience=policy.audience), "'iss' is not"),
        (issue_token(SECRET, "u1", ttl_s=60, issuer=policy.issuer, audience="other"),
         "'aud' is not"),
    ]:
        with pytest.raises(InvalidToken, match=reason):
            verify_token(SECRET, token, policy)
    # Off unless configured: a token without iss/aud verifies under the default policy.
    assert verify_token(SECRET, issue_token(SECRET, "u1", ttl_s=60))[0] == "u1"


APP_SETTINGS = UNREACHABLE.model_copy(update={"api": ApiSettings(
    jwt_secret=SECRET, access_log=False, gc_freeze=False)})


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(APP_SETTINGS), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_token_gets_a_401_problem(client: TestClient, case: str) -> None:
    build, reason = MALFORMED[case]
    response = client.get("/v1/feed", headers={"Authorization": f"Bearer {build()}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert reason in response.json()["detail"]
