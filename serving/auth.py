"""Bearer tokens: HS256 JWTs whose ``sub`` claim is the user id.

``verify`` checks the signature (HS256 only: ``alg`` confusion and ``none`` are refused),
the expiry when the token has one, and that ``sub`` is a valid user id. Verified tokens
are cached until they expire, so a client reusing its token costs a dict lookup.
"""

from __future__ import annotations

import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import jwt
from jwt.warnings import InsecureKeyLengthWarning

#: Ids of users, posts, comments and media (the event schemas' pattern).
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class InvalidToken(ValueError):
    """The bearer token cannot be trusted; the message says why."""


@contextmanager
def _short_key_tolerated(secret: str) -> Iterator[None]:
    """The development secret is shorter than RFC 7518's 32 bytes: don't warn per call."""
    if len(secret.encode()) >= 32:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


def issue_token(secret: str, user_id: str, *, ttl_s: int, now: float | None = None) -> str:
    """A signed token for ``user_id`` valid for ``ttl_s`` seconds."""
    if not _ID.match(user_id):
        raise ValueError(f"invalid user id {user_id!r}: use 1-64 of A-Z a-z 0-9 _ -")
    issued = int(time.time() if now is None else now)
    with _short_key_tolerated(secret):
        return jwt.encode({"sub": user_id, "iat": issued, "exp": issued + ttl_s}, secret,
                          algorithm="HS256")


def verify_token(secret: str, token: str) -> tuple[str, float]:
    """The user id of a valid token and its expiry (epoch seconds); ``exp`` is required."""
    try:
        with _short_key_tolerated(secret):
            claims = jwt.decode(token, secret, algorithms=["HS256"],
                                options={"require": ["sub", "exp"]}, leeway=5)
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.MissingRequiredClaimError as error:
        what = "the user id" if error.claim == "sub" else "its expiry time"
        raise InvalidToken(f"the token has no {error.claim!r} claim ({what})") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("the token's signature does not verify") from None
    except jwt.InvalidAlgorithmError:
        raise InvalidToken("the token must be signed with HS256") from None
    except jwt.InvalidTokenError as error:
        raise InvalidToken(f"the token is not a valid JWT: {error}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _ID.match(subject):
        raise InvalidToken("the token's 'sub' must be a user id (1-64 of A-Z a-z 0-9 _ -)")
    return subject, float(claims["exp"])


class TokenVerifier:
    """``verify_token`` with a bounded cache of tokens already verified."""

    def __init__(self, secret: str, *, cache_size: int = 50_000) -> None:
        self.secret = secret
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
        user_id, exp = verify_token(self.secret, token)
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
