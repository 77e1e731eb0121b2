"""feedctl notifications — show a user's notification groups, newest first.

They are read as the stores hold them: Redis first, the CQL store when the list is not
cached.

Each line: when the group last changed, `*` if unread, its type, the post, the count and
the newest actors. Exit 0 with the list (an empty one too), 1 when --sample finds no
user, 2 on a bad USER or --limit, 3 when Redis or the CQL store is unreachable.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from typing import Any

from feedline.settings import get_stack_settings
from feedline.stores.cluster_writes import cache_client, cache_keys
from feedline.stores.cql import connect
from feedline.stores.notification_listing import NotificationListing, NotificationLookup
from jobs.feedctl import deps
from jobs.feedctl.errors import UsageError
from jobs.feedctl.feed import fullest_owner
from jobs.feedctl.output import add_json_flag, print_json
from schemas.cql_statements import prepare
from schemas.redis_notifications import NOTIFICATION_CAP

_USER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= NOTIFICATION_CAP:
        raise argparse.ArgumentTypeError(f"must be 1..{NOTIFICATION_CAP}, not {value}")
    return value


def register(nouns: Any) -> None:
    """Add `notifications`."""
    parser = nouns.add_parser("notifications", help="show a user's notifications",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user_id", nargs="?", metavar="USER", help="whose notifications")
    parser.add_argument("--sample", action="store_true",
                        help="pick the user with the most cached notification groups")
    parser.add_argument("--limit", type=_limit, default=20, metavar="N",
                        help=f"groups to show, 1..{NOTIFICATION_CAP} (default 20)")
    add_json_flag(parser)
    parser.set_defaults(run=_notifications)


def stored_recipient(session: Any) -> str | None:
    """A recipient with notification groups in the CQL store (the first by token), or None.

    For ``--sample`` when Redis caches no list: a Redis restarted empty (the local one keeps
    nothing) after the events were consumed — ``make run`` a second time: its events are
    the same ids, skipped as duplicates, so nothing fills the cache again.
    """
    row = session.execute(prepare(session, ["notification_some_recipient"])[
        "notification_some_recipient"]).one()
    return None if row is None else str(row.recipient_id)


def _notifications(args: argparse.Namespace) -> int:
    if bool(args.user_id) == bool(args.sample):
        raise UsageError("give a USER or --sample (not both)")
    if args.user_id and not _USER_ID.match(args.user_id):
        raise UsageError(f"not a user id: {args.user_id!r} (1-64 of A-Z a-z 0-9 _ -)")
    settings = get_stack_settings()
    deps.require(deps.redis(settings.redis), deps.cql(settings.cql))
    keys = cache_keys(settings.redis)
    client = cache_client(settings.redis, decode_responses=True,
                          socket_connect_timeout=deps.PROBE_TIMEOUT_S)
    cluster, session = connect(settings.cql, keyspace=settings.cql.keyspace)
    try:
        user = args.user_id or fullest_owner(client, keys, "nz") or stored_recipient(session)
        if user is None:
            print("feedctl notifications: no notifications to sample, cached or stored "
                  "(nothing delivered yet? deploy the notifications job)", file=sys.stderr)
            return 1
        listing = NotificationLookup(session, client, keys).read(user, args.limit)
    finally:
        cluster.shutdown()
        client.close()
    if args.json:
        print_json(_document(listing))
    else:
        _print(listing)
    return 0


def _document(listing: NotificationListing) -> dict[str, Any]:
    return {
        "user_id": listing.user_id, "source": listing.source,
        "unread_count": listing.unread_count, "read_through_ms": listing.read_through_ms,
        "items": [{"group_key": i.group_key, "type": i.type, "post_id": i.post_id,
                   "count": i.count, "actors": list(i.actors), "latest_ms": i.latest_ms,
                   "unread": i.unread} for i in listing.items],
    }


def _print(listing: NotificationListing) -> None:
    print(f"notifications of {listing.user_id} (from {listing.source}; "
          f"{listing.unread_count} unread):")
    if not listing.items:
        print("  none")
    for item in listing.items:
        when = datetime.fromtimestamp(item.latest_ms / 1000, tz=UTC).isoformat(
            timespec="seconds")
        actors = ", ".join(item.actors)
        more = item.count - len(item.actors)
        if more > 0:
            actors += f" and {more} more" if actors else f"{more} others"
        print(f"{when} {'*' if item.unread else ' '} {item.type:<8} "
              f"{item.post_id or '-':<14} {item.count:>5}  {actors}")
