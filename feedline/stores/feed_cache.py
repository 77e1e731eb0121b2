"""The serving cache's read side: one Lua call per feed page, plus guarded repairs.

``page`` runs one script that, inside Redis, reads the home timeline after a cursor,
merges the outboxes of the celebrities the reader follows, and hydrates each post with its
hash and counters — one round trip for the common case. It tells the caller when Redis
cannot answer alone: the timeline is not cached (``miss``), a followed celebrity's outbox
is not cached (``outbox_miss``), a slice was cut short (``continue``: call again from the
last position), or a set that may not hold its whole listing ran out (``deep``: older
entries live only in the CQL store). Posts whose hash is missing come back as bare
positions: deleted, or evicted — the caller asks the CQL store which.

The script builds post and counter keys from prefixes passed in (the layout stays declared
once, in ``schemas.redis_keys``), so it needs a non-cluster Redis, as Memorystore's
standard tier is. Ids are compared byte-wise in Lua, never with ``<`` (which uses the
server's locale collation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from feedline.rules.effects import MediaRef
from feedline.stores.feed_items import Position, PostView
from feedline.stores.request_guards import SLIDING_WINDOW_LUA, RateLimited, RateWindow
from schemas.redis_hashes import (
    POST_COUNTER_FIELDS,
    USER_COUNTER_FIELDS,
    decode_media,
    decode_post,
    decode_user_counters,
)
from schemas.redis_keys import COMPLETE_MEMBER, RedisKeys

_PAGE = SLIDING_WINDOW_LUA + """
if ARGV[11] ~= '' then  -- count the request against the reader's rate limit first
  local rate = rate_check(KEYS[3], KEYS[4], ARGV[11], ARGV[12], ARGV[13])
  if rate[1] == 0 then return {'limited', rate[2], rate[3]} end
end
local outbox_prefix, post_prefix, counters_prefix = ARGV[1], ARGV[2], ARGV[3]
local limit, fetch, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local has_cursor = ARGV[7] ~= ''
local cursor_score, cursor_id = tonumber(ARGV[7]), ARGV[8]

local function lt(a, b)
  if a == b then return false end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function precedes(s1, id1, s2, id2)
  if s1 ~= s2 then return s1 > s2 end
  return lt(id2, id1)
end

if redis.call('EXISTS', KEYS[1]) == 0 then return {'miss'} end
-- The followed-celebrity set counts only when marked complete (rebuilt by a reader).
if redis.call('SISMEMBER', KEYS[2], ARGV[14]) == 0 then return {'celebrities_miss'} end
local sources, authors, absent = {KEYS[1]}, {false}, {}
for _, author in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = outbox_prefix .. author
  if author == ARGV[14] then
    -- the completeness marker, not a celebrity
  elseif redis.call('EXISTS', key) == 1 then
    sources[#sources + 1] = key
    authors[#authors + 1] = author
  elseif ARGV[9] ~= '1' then
    -- Not cached, unless the author has no posts (then there is no outbox): a counters
    -- hash without a posts field means none; no hash at all means we cannot tell.
    local counts = ARGV[10] .. author
    local posts = redis.call('HGET', counts, 'posts')
    if (posts and posts ~= '0') or (not posts and redis.call('EXISTS', counts) == 0) then
      absent[#absent + 1] = author
    end
  end
end
if #absent > 0 then return {'outbox_miss', absent} end

-- Does a set hold its whole listing? A timeline below the cap does (the writer refills a
-- full one that loses an entry); an outbox does when it holds as many posts as the
-- author's live-post counter says (deletions shrink outboxes without a refill).
local function whole(i, key)
  local size = redis.call('ZCARD', key)
  if i == 1 then return size < cap end
  local posts = redis.call('HGET', ARGV[10] .. authors[i], 'posts')
  return posts ~= false and size >= tonumber(posts)
end

local function after(key)
  local ids, scores, rest = {}, {}, nil
  if has_cursor then
    local tied = redis.call('ZRANGEBYSCORE', key, ARGV[7], ARGV[7])
    for i = #tied, 1, -1 do
      if lt(tied[i], cursor_id) then
        ids[#ids + 1], scores[#scores + 1] = tied[i], cursor_score
        if #ids >= fetch then return ids, scores, true end
      end
    end
    rest = redis.call('ZREVRANGEBYSCORE', key, '(' .. ARGV[7], '-inf', 'WITHSCORES',
                      'LIMIT', 0, fetch - #ids)
  else
    rest = redis.call('ZREVRANGE', key, 0, fetch - 1, 'WITHSCORES')
  end
  for i = 1, #rest, 2 do
    local n = #ids + 1
    ids[n], scores[n] = rest[i], tonumber(rest[i + 1])
  end
  return ids, scores, #ids >= fetch
end

-- Each source: {ids, scores, next index, size}, newest first. Past ``bound`` some source
-- may hold entries not fetched (or not cached): the walk stops there and says why.
local sources_read, bound = {}, nil
local function tighten(score, id, status)
  if bound == nil or precedes(score, id, bound[1], bound[2]) then
    bound = {score, id, status}
  end
end
for i, key in ipairs(sources) do
  local ids, scores, truncated = after(key)
  local n = #ids
  if n > 0 then sources_read[#sources_read + 1] = {ids, scores, 1, n} end
  if truncated then
    tighten(scores[n], ids[n], 'continue')
  elseif not whole(i, key) then
    if n > 0 then tighten(scores[n], ids[n], 'deep')
    elseif has_cursor then tighten(cursor_score, cursor_id, 'deep') end
  end
end

-- Merge the sorted sources (a k-way merge: no sort), hydrating as we go.
local out = {'', '', ''}
local status, hydrated, seen, last_score, last_id = nil, 0, {}, nil, nil
while true do
  local best, score, id = nil, nil, nil
  for i = 1, #sources_read do
    local source = sources_read[i]
    local p = source[3]
    if p <= source[4] then
      local s, m = source[2][p], source[1][p]
      if best == nil or s > score or (s == score and lt(id, m)) then
        best, score, id = source, s, m
      end
    end
  end
  if best == nil then break end
  if bound ~= nil and precedes(bound[1], bound[2], score, id) then status = bound[3]; break end
  if hydrated >= limit then status = 'more'; break end
  best[3] = best[3] + 1
  if not seen[id] then
    seen[id] = true
    local post = redis.call('HMGET', post_prefix .. id, 'author_id', 'caption', 'media')
    if not post[1] then
      out[#out + 1] = {id, score}
    else
      local n = redis.call('HMGET', counters_prefix .. id, 'likes', 'comments')
      out[#out + 1] = {id, score, post[1], post[2] or '', post[3] or '[]', n[1] or '0',
                       n[2] or '0'}
      hydrated = hydrated + 1
    end
  end
  last_score, last_id = score, id
end
if status == nil then status = bound and bound[3] or 'end' end
out[1] = status
if last_id then out[2], out[3] = last_score, last_id end
return out
"""

# Writes a timeline only where none is cached (a concurrent writer that rebuilt the key
# meanwhile wins), and completes the reader's followed-celebrity set unless it is marked
# complete already: the celebrities read from the CQL store are added with the marker (a
# union, so a celebrity the writer added meanwhile stays).
_REPAIR = """
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local wrote = 0
if n > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 3, 2 + 2 * n, 400 do
    redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 399, 2 + 2 * n)))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(cap + 1))
  wrote = 1
end
if redis.call('SISMEMBER', KEYS[2], ARGV[3 + 2 * n]) == 0 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 3 + 2 * n))
end
return wrote
"""

# Rebuilds a celebrity's outbox when it is not cached and the author still is one.
_REPAIR_OUTBOX = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 then return 0 end
for i = 3, #ARGV, 400 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
"""


@dataclass(frozen=True, slots=True)
class CachePage:
    """What the page script found.

    ``status``: ``end`` (nothing follows), ``more`` (the page is full), ``continue`` (call
    again after ``last``), ``deep`` (the rest is only in the CQL store), ``miss`` (no
    timeline cached), ``celebrities_miss`` (the followed-celebrity set is not known to be
    complete) or ``outbox_miss`` (``absent`` celebrities' outboxes not cached).
    ``entries`` hold a ``PostView`` per hydrated post and a bare ``Position`` per post
    without a hash, in feed order.
    """

    status: str
    entries: tuple[PostView | Position, ...] = ()
    last: Position | None = None
    absent: tuple[str, ...] = ()


class FeedCache:
    """Feed reads and repairs on one key prefix (async client, ``decode_responses=True``)."""

    def __init__(self, client: Redis, keys: RedisKeys, *, timeline_cap: int) -> None:
        self.redis = client
        self.keys = keys
        self.cap = timeline_cap
        self._page = client.register_script(_PAGE)
        self._repair = client.register_script(_REPAIR)
        self._repair_outbox = client.register_script(_REPAIR_OUTBOX)

    async def page(self, user_id: str, after: Position | None, limit: int, *,
                   fetch: int, lenient_outboxes: bool = False,
                   rate: RateWindow | None = None) -> CachePage:
        """One feed page from Redis; see ``CachePage`` for what can come back.

        With ``rate``, the request is first counted against the reader's rate limit in the
        same call; over it, ``RateLimited`` is raised and nothing is read.
        """
        k = self.keys
        args: list[Any] = [k.outbox(""), k.post(""), k.post_counters(""), limit, fetch, self.cap,
                           "" if after is None else after.created_ms,
                           "" if after is None else after.post_id,
                           "1" if lenient_outboxes else "0", k.user_counters("")]
        keys = [k.timeline(user_id), k.followed_celebrities(user_id)]
        if rate is None:
            args.extend(("", "", ""))
        else:
            keys.extend(rate.keys)
            args.extend(rate.args())
        args.append(COMPLETE_MEMBER)
        reply = await self._page(keys=keys, args=args)
        status = reply[0]
        if status == "limited":
            assert rate is not None
            raise RateLimited(rate.decision(False, int(reply[1]), int(reply[2])))
        if status in ("miss", "celebrities_miss"):
            return CachePage(status)
        if status == "outbox_miss":
            return CachePage("outbox_miss", absent=tuple(reply[1]))
        last = Position(int(reply[1]), reply[2]) if reply[2] else None
        entries: list[PostView | Position] = []
        for item in reply[3:]:
            if len(item) == 2:
                entries.append(Position(int(item[1]), item[0]))
            else:
                post_id, created_ms, author_id, caption, media, likes, comments = item
                entries.append(PostView(post_id, author_id, caption, _media(media),
                                        int(created_ms), int(likes), int(comments)))
        return CachePage(status, tuple(entries), last)

    async def repair(self, user_id: str, timeline: Sequence[Position],
                     celebrities: Sequence[str]) -> bool:
        """Cache a timeline read from the CQL store, and complete the followed-celebrity set.

        No timeline is written where one was cached meanwhile (True when it was); an
        empty ``timeline`` only completes the set.
        """
        newest = timeline[: self.cap]
        args: list[Any] = [self.cap, len(newest)]
        for p in newest:
            args.extend((p.created_ms, p.post_id))
        args.append(COMPLETE_MEMBER)
        args.extend(celebrities)
        k = self.keys
        wrote = await self._repair(
            keys=[k.timeline(user_id), k.followed_celebrities(user_id)], args=args)
        return bool(wrote)

    async def repair_outbox(self, author_id: str, posts: Sequence[Position]) -> bool:
        """Cache a celebrity's outbox read from the CQL store (guarded like ``repair``)."""
        if not posts:
            return False
        args: list[Any] = [self.cap, author_id]
        for p in posts[: self.cap]:
            args.extend((p.created_ms, p.post_id))
        k = self.keys
        return bool(await self._repair_outbox(keys=[k.outbox(author_id), k.celebrities()],
                                              args=args))

    async def post_views(self, post_ids: Sequence[str]) -> dict[str, PostView]:
        """Cached posts among ``post_ids`` with their counters (one pipelined round trip)."""
        if not post_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for post_id in post_ids:
            pipe.hgetall(self.keys.post(post_id))
            pipe.hmget(self.keys.post_counters(post_id), list(POST_COUNTER_FIELDS))
        replies = await pipe.execute()
        views = {}
        for post_id, post, counts in zip(post_ids, replies[::2], replies[1::2], strict=True):
            if post:
                views[post_id] = view_from_hash(post, counts[0], counts[1])
        return views

    async def user_counts(self, user_id: str) -> dict[str, int] | None:
        """The user's counters hash, or None when it is not cached."""
        pending = cast(Awaitable[dict[str, str]],
                       self.redis.hgetall(self.keys.user_counters(user_id)))
        found = await pending
        if not found:
            return None
        counts = decode_user_counters(found)
        return {name: counts.get(name, 0) for name in USER_COUNTER_FIELDS}

    async def ping(self) -> bool:
        """PING answered."""
        return bool(await self.redis.ping())


def _refs(media: list[dict[str, str]]) -> tuple[MediaRef, ...]:
    return tuple([MediaRef(m["media_id"], m["content_type"], m["uri"]) for m in media])


def _media(text: str) -> tuple[MediaRef, ...]:
    return _refs(decode_media(text))


def view_from_hash(post: dict[str, str], likes: str | None, comments: str | None) -> PostView:
    """A ``PostView`` from a post hash (``schemas.redis_hashes``) and counter values."""
    decoded = decode_post(post)
    return PostView(decoded.post_id, decoded.author_id, decoded.caption, _refs(decoded.media),
                    decoded.created_ms, int(likes or 0), int(comments or 0))
