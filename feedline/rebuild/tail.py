"""Who the events past the archive may have changed: the users a live verify must skip.

On a running stack the stores move on while verify reads them: the streaming jobs apply
events the archive does not hold yet (archiver lag), and the archive holds events a job
has not applied yet (consumer lag). A user whose stored data one of those events changed
would show as drift although nothing is wrong. `touched_users` names, for such a *tail* of
raw event records, every user whose timeline, followed celebrities, counters or
notification groups one of them can change, by the rules' routes:

- the users an event names (author, follower, followee, actor, the post's author);
- a post's or a follow's fan-out: everyone who follows the author (a post reaches their
  timelines; a follow can move the author across the celebrity threshold, which moves the
  author's posts between their timelines and the pull path);
- notifications: everyone mentioned in the event's text and in any caption or comment of
  its post (a post's deletion drops the mention groups of its comments).

The answer errs towards skipping: a user named here may well be unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from feedline.rules.keys import RuleKey
from feedline.rules.notifications import mentioned_users

if TYPE_CHECKING:
    from feedline.rebuild.direct import ArchiveIndex

#: Record fields naming a user.
USER_FIELDS = ("author_id", "follower_id", "followee_id", "user_id", "post_author_id")
#: Record fields whose user's followers an event reaches (fan-out, celebrity threshold).
FANOUT_FIELDS = ("author_id", "followee_id")
#: Record fields that can mention users.
TEXT_FIELDS = ("caption", "text")
#: No cap on the mentions read from one text: every mention may have made a group.
ALL_MENTIONS = 1 << 30


def mentions_in(record: Mapping[str, Any]) -> set[str]:
    """Users mentioned in a record's caption or comment text."""
    found: set[str] = set()
    for name in TEXT_FIELDS:
        text = record.get(name)
        if isinstance(text, str):
            found.update(mentioned_users(text, ALL_MENTIONS))
    return found


def archived_followers(index: ArchiveIndex, author: str) -> set[str]:
    """Everyone who followed or unfollowed ``author`` in the index's archive."""
    followers: set[str] = set()
    for role, line in index.records.get(RuleKey.author(author), []):
        if role == "follows":
            follower = json.loads(line).get("follower_id")
            if isinstance(follower, str):
                followers.add(follower)
    return followers


def touched_users(tail: Iterable[Mapping[str, Any]], index: ArchiveIndex,
                  post_mentions: Mapping[str, set[str]]) -> set[str]:
    """Every user an event of ``tail`` can have changed (module docstring).

    ``post_mentions`` maps a post id to the users mentioned in the archive's captions and
    comments of that post (`feedline.rebuild.direct.recompute_notifications` collects it);
    the tail's own mentions are added here.
    """
    records = [r for r in tail if isinstance(r, Mapping)]
    followers: dict[str, set[str]] = {}
    mentions: dict[str, set[str]] = {}
    for record in records:  # the tail's own follows and mentions count as well
        if record.get("event_type") in ("follow", "unfollow"):
            followee, follower = record.get("followee_id"), record.get("follower_id")
            if isinstance(followee, str) and isinstance(follower, str):
                followers.setdefault(followee, set()).add(follower)
        post = record.get("post_id")
        if isinstance(post, str):
            mentions.setdefault(post, set()).update(mentions_in(record))
    touched: set[str] = set()
    reached: set[str] = set()  # authors whose followers are in already
    for record in records:
        touched.update(v for v in (record.get(name) for name in USER_FIELDS)
                       if isinstance(v, str))
        for name in FANOUT_FIELDS:
            author = record.get(name)
            if isinstance(author, str) and author not in reached:
                reached.add(author)  # each author's archived follows parsed once
                touched |= archived_followers(index, author) | followers.get(author, set())
        post = record.get("post_id")
        if isinstance(post, str):
            touched |= mentions.get(post, set()) | post_mentions.get(post, set())
    return touched
