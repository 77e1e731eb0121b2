-- requires: rate_check.lua byte_order.lua
-- page: one page of a home feed, read, merged and hydrated inside Redis in one call.
--
-- Reads the reader's timeline after a cursor, merges the outboxes of the celebrities the
-- reader follows (a k-way merge, newest first), and hydrates each post with its hash and
-- counters. Which sorted set holds its whole listing follows schemas.redis_sets (the
-- timeline: CAPPED; an outbox: COUNTED; the followed-celebrity set: MARKED). Keys of
-- posts, counters and outboxes are built from the prefixes passed in, so the script needs
-- a non-cluster Redis. Ids are compared byte-wise (never with `<`, which follows the
-- server's locale collation).
--
-- KEYS[1]  timeline ZSET of the reader                     (RedisKeys.timeline)
-- KEYS[2]  followed-celebrity SET of the reader            (RedisKeys.followed_celebrities)
-- KEYS[3]  rate-limit counter, current window  (optional; RedisKeys.rate_limit)
-- KEYS[4]  rate-limit counter, previous window (optional)
-- ARGV[1]  outbox key prefix                               (RedisKeys.outbox(""))
-- ARGV[2]  post hash key prefix                            (RedisKeys.post(""))
-- ARGV[3]  post counters key prefix                        (RedisKeys.post_counters(""))
-- ARGV[4]  limit: hydrated posts wanted
-- ARGV[5]  fetch: entries read per set in one go (limit plus slack)
-- ARGV[6]  timeline cap (a timeline below it is whole)
-- ARGV[7]  cursor score (created ms), '' for the first page
-- ARGV[8]  cursor post id
-- ARGV[9]  '1': lenient outboxes (skip the celebrities whose outbox is not cached)
-- ARGV[10] user counters key prefix                        (RedisKeys.user_counters(""))
-- ARGV[11] rate limit per window, '' for no rate limit (then KEYS[3..4] are absent)
-- ARGV[12] rate-limit weight of the previous window
-- ARGV[13] rate-limit counter TTL, ms
-- ARGV[14] the completeness marker of the followed-celebrity set (COMPLETE_MEMBER)
-- ARGV[15] user counters field counting an author's live posts ('posts')
--
-- Returns (statuses: feedline.stores.feed_cache.PageStatus):
--   {'limited', current, previous}   over the rate limit; nothing read
--   {'miss'}                         no timeline cached
--   {'celebrities_miss'}             the followed-celebrity set is not marked complete
--   {'outbox_miss', {author, ...}}   these celebrities' outboxes are not cached
--   {status, last_score, last_id, entry, ...} with status 'end' (nothing follows), 'more'
--     (the page is full), 'continue' (a set was cut short: call again after last) or
--     'deep' (the rest is only in the CQL store); last_* are '' when nothing was walked.
--     Each entry is {post_id, score, author_id, caption, media, likes, comments}, or
--     {post_id, score} for a post without a hash (deleted, or evicted).
if ARGV[11] ~= '' then  -- count the request against the reader's rate limit first
  local rate = rate_check(KEYS[3], KEYS[4], ARGV[11], ARGV[12], ARGV[13])
  if rate[1] == 0 then return {'limited', rate[2], rate[3]} end
end
local outbox_prefix, post_prefix, counters_prefix = ARGV[1], ARGV[2], ARGV[3]
local limit, fetch, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local has_cursor = ARGV[7] ~= ''
local cursor_score, cursor_id = tonumber(ARGV[7]), ARGV[8]
local lenient, user_counters_prefix = ARGV[9] == '1', ARGV[10]
local marker, posts_field = ARGV[14], ARGV[15]

local function precedes(s1, id1, s2, id2)
  if s1 ~= s2 then return s1 > s2 end
  return lt(id2, id1)
end

if redis.call('EXISTS', KEYS[1]) == 0 then return {'miss'} end
-- The followed-celebrity set counts only when marked complete (rebuilt by a reader).
if redis.call('SISMEMBER', KEYS[2], marker) == 0 then return {'celebrities_miss'} end
local sources, authors, absent = {KEYS[1]}, {false}, {}
for _, author in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = outbox_prefix .. author
  if author == marker then
    -- the completeness marker, not a celebrity
  elseif redis.call('EXISTS', key) == 1 then
    sources[#sources + 1] = key
    authors[#authors + 1] = author
  elseif not lenient then
    -- Not cached, unless the author has no posts (then there is no outbox): a counters
    -- hash without a posts field means none; no hash at all means we cannot tell.
    local counts = user_counters_prefix .. author
    local posts = redis.call('HGET', counts, posts_field)
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
  local posts = redis.call('HGET', user_counters_prefix .. authors[i], posts_field)
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
