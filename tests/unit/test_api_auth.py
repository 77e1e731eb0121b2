from __future__ import annotations

import time

import jwt
import pytest

from serving import auth
from serving.auth import InvalidToken, TokenVerifier, bearer_token, issue_token, verify_token

SECRET = "unit-test-secret-unit-test-secret-0123"


def test_issued_token_verifies_to_its_user() -> None:
    token = issue_token(SECRET, "u00042", ttl_s=60)
    user, exp = verify_token(SECRET, token)
    assert user == "u00042"
    assert exp is not None and 0 < exp - time.time() <= 61


def test_expired_token_is_refused() -> None:
    token = issue_token(SECRET, "u1", ttl_s=10, now=time.time() - 3600)
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SECRET, token)


def test_wrong_secret_is_refused() -> None:
    token = issue_token("another-secret-another-secret-0123", "u1", ttl_s=60)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(SECRET, token)


def test_alg_none_and_other_algorithms_are_refused() -> None:
    unsigned = jwt.encode({"sub": "u1"}, key=None, algorithm="none")
    with pytest.raises(InvalidToken, match="HS256"):
        verify_token(SECRET, unsigned)
    hs512 = jwt.encode({"sub": "u1"}, SECRET * 2, algorithm="HS512")
    with pytest.raises(InvalidToken, match="HS256"):
        verify_token(SECRET * 2, hs512)


@pytest.mark.parametrize(("claims", "reason"), [
    ({}, "no 'sub'"),
    ({"sub": "bad id!"}, "must be a user id"),
    ({"sub": "x" * 65}, "must be a user id"),
])
def test_subject_must_be_a_user_id(claims: dict, reason: str) -> None:
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match=reason):
        verify_token(SECRET, token)


def test_token_without_expiry_is_refused() -> None:
    token = jwt.encode({"sub": "u7"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="no 'exp' claim"):
        verify_token(SECRET, token)
    lasting = jwt.encode({"sub": "u7", "exp": 4_000_000_000}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="lifetime exceeds"):
        verify_token(SECRET, lasting)
    long_lived = auth.TokenPolicy(max_lifetime_s=4_000_000_000)
    assert verify_token(SECRET, lasting, long_lived) == ("u7", 4_000_000_000.0)


def test_issue_refuses_invalid_user_ids() -> None:
    with pytest.raises(ValueError, match="invalid user id"):
        issue_token(SECRET, "no spaces", ttl_s=60)


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc.def.ghi", "abc.def.ghi"),
    ("bearer   abc.def.ghi ", "abc.def.ghi"),
])
def test_bearer_header_parsing(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpw", "Bearer", "Bearer   "])
def test_bearer_header_problems(header: str | None) -> None:
    with pytest.raises(InvalidToken):
        bearer_token(header)


def test_verifier_caches_until_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    checked: list[str] = []

    def verify(secret: str, token: str, *_policy_and_now: object) -> tuple[str, float]:
        checked.append(token)
        return "u1", now + 100

    monkeypatch.setattr(auth, "verify_token", verify)
    verifier = TokenVerifier(SECRET)
    assert verifier.user_of("t", now=now) == "u1"
    assert verifier.user_of("t", now=now + 50) == "u1"
    assert checked == ["t"]  # the second call was a cache hit
    verifier.user_of("t", now=now + 200)  # past the cached expiry: verified again
    assert checked == ["t", "t"]


def test_verifier_cache_is_bounded() -> None:
    verifier = TokenVerifier(SECRET, cache_size=2)
    for n in range(5):
        verifier.user_of(issue_token(SECRET, f"u{n}", ttl_s=100))
    assert len(verifier._cache) == 2


def test_bad_tokens_are_not_cached() -> None:
    verifier = TokenVerifier(SECRET)
    with pytest.raises(InvalidToken):
        verifier.user_of("not.a.token")
    assert not verifier._cache
