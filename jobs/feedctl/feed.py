"""feedctl feed — show a user's home feed as the API serves it (its reader: Redis first)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import redis

from feedline.settings import StackSettings, get_stack_settings
from feedline.stores.cluster_cache import async_cache_client, feed_cache
from feedline.stores.cluster_writes import cache_client, cache_keys
from feedline.stores.cql_client import CqlClient
from feedline.stores.feed_items import PostView
from feedline.stores.feed_reader import FeedReader
from feedline.stores.post_store import PostStore
from jobs.feedctl import deps
from jobs.feedctl.errors import Unreachable
from schemas.redis_keys import RedisKeys
from serving.auth import issue_token


def register(nouns: Any) -> None:
    """Add `feed`."""
    parser = nouns.add_parser("feed", help="show a user's home feed", description=__doc__)
    parser.add_argument("user_id", nargs="?", help="whose feed (or use --sample)")
    parser.add_argument("--sample", action="store_true",
                        help="pick a user with a well-filled timeline")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--api", action="store_true",
                        help="then print the API URL, a token for the user and a curl of "
                             "the same feed through the API (checked to answer 200)")
    parser.set_defaults(run=_feed)


def _feed(args: argparse.Namespace) -> int:
    settings = get_stack_settings()
    if not args.user_id and not args.sample:
        print("feedctl feed: give a USER_ID or --sample", file=sys.stderr)
        return 2
    deps.require(deps.redis(settings.redis), deps.cql(settings.cql))
    client = cache_client(settings.redis, decode_responses=True,
                          socket_connect_timeout=deps.PROBE_TIMEOUT_S)
    keys = cache_keys(settings.redis)
    if args.sample:
        args.user_id = fullest_owner(client, keys, "tl")
    if not args.user_id:
        print("feedctl feed: no cached timeline to sample (nothing delivered yet?)",
              file=sys.stderr)
        return 1
    print(f"home feed of {args.user_id}:")
    items = asyncio.run(_read_feed(settings, args.user_id, args.limit))
    if not items:
        print(f"{args.user_id}: empty feed (nothing delivered yet)")
        return 1
    for item in items:
        when = datetime.fromtimestamp(item.created_ms / 1000, tz=UTC).isoformat(timespec="seconds")
        print(f"{when}  {item.post_id:<14} by {item.author_id:<8} "
              f"{item.likes:>3} likes {item.comments:>3} comments  {item.caption}")
    return _api_hint(args.user_id, args.limit) if args.api else 0


async def _read_feed(settings: StackSettings, user_id: str, limit: int) -> list[PostView]:
    """The first page of the user's home feed, read as the API reads it (``FeedReader``)."""
    client = async_cache_client(settings.redis, decode_responses=True, socket_timeout=10.0,
                                socket_connect_timeout=deps.PROBE_TIMEOUT_S)
    cql = CqlClient(settings.cql, timeout_s=10.0)
    cap = settings.feed.timeline_cap
    try:
        reader = FeedReader(feed_cache(client, cache_keys(settings.redis), timeline_cap=cap),
                            PostStore(cql), timeline_cap=cap)
        return (await reader.home(user_id, None, limit)).items
    finally:
        await client.aclose()
        await asyncio.to_thread(cql.close)


def _api_hint(user_id: str, limit: int) -> int:
    """Print how to read the same feed over HTTP, after checking that it answers."""
    settings = get_stack_settings()
    base = f"http://{settings.api.host}:{settings.api.port}"
    token = issue_token(settings.api.jwt_secret, user_id, ttl_s=7 * 24 * 3600,
                        issuer=settings.api.jwt_issuer, audience=settings.api.jwt_audience)
    url = f"{base}/v1/feed?limit={limit}"
    request = urllib.request.Request(  # noqa: S310 (an http URL built from settings)
        url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (local URL)
            served = len(json.load(response)["items"])
    except urllib.error.HTTPError as error:
        print(f"feedctl feed: the API at {base} did not serve the feed: HTTP {error.code}",
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(deps.api(settings.api), deps.cause_of(error)) from error
    except (ValueError, KeyError) as error:
        print(f"feedctl feed: the API at {base} did not serve the feed: {error}",
              file=sys.stderr)
        return 1
    print(f"\nThe API at {base} serves it ({served} items on the first page).")
    print(f"Token for {user_id} (valid 7 days):\n{token}")
    print(f"Try:\n  curl -s -H 'Authorization: Bearer {token}' '{url}'")
    return 0


def fullest_owner(client: redis.Redis, keys: RedisKeys, kind: str,
                  scan: int = 500) -> str | None:
    """The owner of the fullest among up to ``scan`` cached sorted sets of one ``kind``.

    ``tl``: home timelines (`feedctl feed --sample`); ``nz``: notification lists
    (`feedctl notifications --sample`). Either key layout.
    """
    best, size = None, 0
    for n, key in enumerate(client.scan_iter(match=keys.kind_pattern(kind), count=500)):
        card: int = client.zcard(key)  # type: ignore[assignment]  # sync client
        if card > size:
            best, size = keys.owner(key), card
        if n >= scan:
            break
    return best
