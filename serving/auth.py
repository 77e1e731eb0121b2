"""Bearer tokens: HS256 JWTs whose ``sub`` claim is the user id.

``verify_token`` checks, under a ``TokenPolicy``: the size (before anything is decoded), the
signature (HS256 only: ``alg`` confusion and ``none`` are refused), the expiry (required) and
the token's lifetime (bounded, so an absurd ``exp`` is refused), ``iss``/``aud`` when the
policy names them, and that ``sub`` is a valid user id. Anything malformed (nested or
non-object JSON, claims of the wrong type or out of range) is an ``InvalidToken``, never
another exception. Verified tokens are cached until they expire, so a client reusing its
token costs a dict lookup.
"""

from __future__ import annotations

import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from feedline.settings import ApiSettings

#: Ids of users, posts, comments and media (the event schemas' pattern).
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class InvalidToken(ValueError):
    """The bearer token cannot be trusted; the message says why."""


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What a bearer token must satisfy besides its signature (``ApiSettings.jwt_*``)."""

    max_bytes: int = 4096
    """Longest token accepted; checked before anything is decoded."""
    max_lifetime_s: int = 30 * 24 * 3600
    """Longest a token may stay valid: ``exp`` at most this far ahead (and past ``iat``)."""
    issuer: str | None = None
    """Required ``iss`` claim; None: not checked."""
    audience: str | None = None
    """Required ``aud`` claim (one of); None: a token with an ``aud`` claim is refused."""
    leeway_s: int = 5
    """Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""


DEFAULT_POLICY = TokenPolicy()


def token_policy(api: ApiSettings) -> TokenPolicy:
    """The policy the API's settings describe."""
    return TokenPolicy(max_bytes=api.jwt_max_bytes, max_lifetime_s=api.jwt_max_lifetime_s,
                       issuer=api.jwt_issuer, audience=api.jwt_audience)


@contextmanager
def _short_key_tolerated(secret: str) -> Iterator[None]:
    """The development secret is shorter than RFC 7518's 32 bytes: don't warn per call."""
    if len(secret.encode()) >= 32:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


def issue_token(secret: str, user_id: str, *, ttl_s: int, now: float | None = None,
                issuer: str | None = None, audience: str | None = None) -> str:
    """A signed token for ``user_id`` valid for ``ttl_s`` seconds (``iss``/``aud`` if given)."""
    if not _ID.match(user_id):
        raise ValueError(f"invalid user id {user_id!r}: use 1-64 of A-Z a-z 0-9 _ -")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user_id, "iat": issued, "exp": issued + ttl_s}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    with _short_key_tolerated(secret):
        return jwt.encode(claims, secret, algorithm="HS256")


_WHAT = {"sub": "the user id", "exp": "its expiry time", "iss": "its issuer",
         "aud": "its audience"}


def _decode(secret: str, token: str, policy: TokenPolicy) -> dict[str, Any]:
    required = ["sub", "exp", *(["iss"] if policy.issuer else []),
                *(["aud"] if policy.audience else [])]
    try:
        with _short_key_tolerated(secret):
            claims: dict[str, Any] = jwt.decode(
                token, secret, algorithms=["HS256"], options={"require": required},
                leeway=policy.leeway_s, issuer=policy.issuer, audience=policy.audience)
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.MissingRequiredClaimError as error:
        what = _WHAT.get(error.claim, error.claim)
        raise InvalidToken(f"the token has no {error.claim!r} claim ({what})") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("the token's signature does not verify") from None
    except jwt.InvalidAlgorithmError:
        raise InvalidToken("the token must be signed with HS256") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("the token's 'iss' is not this API's issuer") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("the token's 'aud' is not this API's audience") from None
    except jwt.InvalidTokenError as error:
        raise InvalidToken(f"the token is not a valid JWT: {error}") from None
    except (RecursionError, ValueError, TypeError, OverflowError) as error:
        # Whatever the JSON or the claims are, a malformed token is a 401, not a crash.
        raise InvalidToken(f"the token is not a valid JWT: {type(error).__name__}") from None
    return claims


def verify_token(secret: str, token: str, policy: TokenPolicy = DEFAULT_POLICY,
                 now: float | None = None) -> tuple[str, float]:
    """The user id of a valid token and its expiry (epoch seconds); ``exp`` is required."""
    if len(token) > policy.max_bytes:
        raise InvalidToken(f"the token is longer than {policy.max_bytes} bytes")
    claims = _decode(secret, token, policy)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _ID.match(subject):
        raise InvalidToken("the token's 'sub' must be a user id (1-64 of A-Z a-z 0-9 _ -)")
    # PyJWT has checked that exp/iat are numbers; bound them with exact (int or float)
    # comparisons before any conversion, so a 400-digit exp cannot overflow.
    exp, issued = claims["exp"], claims.get("iat")
    current = time.time() if now is None else now
    longest = policy.max_lifetime_s + policy.leeway_s
    if exp > current + longest or (issued is not None and exp > issued + longest):
        raise InvalidToken(f"the token's lifetime exceeds {policy.max_lifetime_s} s")
    return subject, float(exp)


class TokenVerifier:
    """``verify_token`` with a bounded cache of tokens already verified."""

    def __init__(self, secret: str, *, policy: TokenPolicy = DEFAULT_POLICY,
                 cache_size: int = 50_000) -> None:
        self.secret = secret
        self.policy = policy
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def user_of(self, token: str, now: float | None = None) -> str:
        """The user id of ``token``; raises ``InvalidToken``."""
        cached = self._cache.get(token)
        if cached is not None:
            user_id, exp = cached
            if exp > (time.time() if now is None else now):
                return user_id
            del self._cache[token]
        user_id, exp = verify_token(self.secret, token, self.policy, now)
        self._cache[token] = (user_id, exp)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return user_id


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; raises ``InvalidToken``."""
    if not authorization:
        raise InvalidToken("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()
