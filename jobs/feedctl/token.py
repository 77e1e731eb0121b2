"""feedctl token — print a bearer token for a user of the API (development and tests).

The token is an HS256 JWT signed with api.jwt_secret whose `sub` is the user id; the last
line of the output is the token alone, e.g.

    curl -H "Authorization: Bearer $(feedctl token u00042 | tail -n1)" localhost:8000/v1/feed

The token is for the local stack's API, so it is minted for the stack's environment (dev
unless FEEDLINE_ENVIRONMENT says otherwise); outside dev and test the placeholder secret is
refused (set FEEDLINE_API__JWT_SECRET).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from feedline.settings import ServingSettings, SettingsError, StackSettings
from serving.auth import issue_token

DAY_S = 24 * 3600


def register(nouns: Any) -> None:
    """Add `token`."""
    parser = nouns.add_parser("token", help="print a bearer token for a user",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user_id", help="the user id (1-64 of A-Z a-z 0-9 _ -)")
    parser.add_argument("--ttl-days", type=float, default=30.0,
                        help="lifetime of the token in days (default 30)")
    parser.set_defaults(run=_token)


def _token(args: argparse.Namespace) -> int:
    if args.ttl_days <= 0:
        print("feedctl token: --ttl-days must be positive", file=sys.stderr)
        return 2
    try:
        settings = ServingSettings(environment=StackSettings().environment)
    except SettingsError as error:
        print(f"feedctl token: refused: {error}", file=sys.stderr)
        return 2  # a configuration error
    ttl_s = int(args.ttl_days * DAY_S)
    if ttl_s > settings.api.jwt_max_lifetime_s:
        print(f"feedctl token: --ttl-days exceeds the API's longest token lifetime "
              f"({settings.api.jwt_max_lifetime_s} s, FEEDLINE_API__JWT_MAX_LIFETIME_S)",
              file=sys.stderr)
        return 2
    try:
        token = issue_token(settings.api.jwt_secret, args.user_id, ttl_s=ttl_s,
                            issuer=settings.api.jwt_issuer, audience=settings.api.jwt_audience)
    except ValueError as error:
        print(f"feedctl token: {error}", file=sys.stderr)
        return 2
    expires = datetime.fromtimestamp(datetime.now(UTC).timestamp() + ttl_s, UTC)
    print(f"bearer token for {args.user_id} ({settings.environment}), "
          f"expires {expires.isoformat(timespec='seconds')}:")
    print(token)
    return 0
